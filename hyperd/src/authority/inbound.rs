//! The client-to-server half of an HTTP/2 connection, read as frames. Everything passes untouched
//! except header blocks, which are decoded, given an `:authority` h2 accepts, and encoded again.

use std::io;

use bytes::BytesMut;
use loona_hpack::Decoder;

const PREFACE_LEN: usize = 24;
const FRAME_HEAD: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const PRIORITY_LEN: usize = 5;

/// The largest header block accepted, compressed as received and decoded (RFC 7541 sizes: name +
/// value + 32 per field). hyper advertises SETTINGS_MAX_HEADER_LIST_SIZE 16 KiB and h2 refuses
/// streams past it, so honest clients stay far below; past this bound the connection is closed.
/// At 64 KiB the re-encoded block needs at most 4 frames of 16 KiB, under the 5 CONTINUATION
/// frames h2 allows per block at hyperd's settings.
pub(crate) const MAX_BLOCK: usize = 64 << 10;

/// Every peer must accept frames of this size (SETTINGS_MAX_FRAME_SIZE's floor), whatever it
/// advertised.
pub(crate) const MAX_OUT_FRAME: usize = 16_384;

/// The largest frame a client may send, as hyperd advertises it (SETTINGS_MAX_FRAME_SIZE, h2's
/// default): h2 buffers a frame whole before it decodes it, so this bounds what a client that
/// stops mid-frame leaves in hyperd's memory. A header block frame past it is refused here, as h2
/// would refuse it.
pub(crate) const MAX_IN_FRAME: usize = 16_384;

/// h2's SETTINGS_HEADER_TABLE_SIZE: hyperd never changes it, so the client's encoder uses this.
const HEADER_TABLE_SIZE: usize = 4_096;

/// What h2 puts in place of an `:authority` it would refuse: grpc-go's and Kubernetes' choice.
pub(crate) const LOCALHOST: &[u8] = b"localhost";

#[derive(Clone, Copy, Debug)]
struct Head {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl Head {
    fn parse(b: &[u8]) -> Head {
        Head {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize,
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    fn write(self, out: &mut BytesMut) {
        out.extend_from_slice(&(self.len as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&[self.kind, self.flags]);
        out.extend_from_slice(&self.stream.to_be_bytes());
    }
}

struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    fragment: Vec<u8>,
}

/// Parser state of the client's byte stream.
pub(crate) struct Inbound {
    /// Bytes that still pass untouched: the rest of the preface or of a frame that is no header
    /// block. They may go straight from the socket to h2.
    passing: usize,
    /// Read but not yet passed on; starts at a frame header.
    held: BytesMut,
    /// Passed or rewritten bytes waiting for h2 to read them.
    ready: BytesMut,
    block: Option<Block>,
    hpack: Decoder<'static>,
    /// Frames (the preface counted as one) whose last byte arrived, and header blocks that ended:
    /// a connection's progress, which `Progress` reports to the stall deadline.
    frames: u64,
    blocks: u64,
}

/// Where a client's byte stream stands, for the deadline of a client that stalls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Frames complete so far (the preface counts as one).
    pub(crate) frames: u64,
    /// Whether some frame has begun and not ended.
    pub(crate) mid_frame: bool,
    /// Header blocks complete so far.
    pub(crate) blocks: u64,
    /// Whether a header block has begun and not ended.
    pub(crate) mid_block: bool,
}

impl Default for Inbound {
    fn default() -> Self {
        let mut hpack = Decoder::new();
        hpack.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        hpack.set_max_table_size(HEADER_TABLE_SIZE);
        Inbound {
            passing: PREFACE_LEN,
            held: BytesMut::new(),
            ready: BytesMut::new(),
            block: None,
            hpack,
            frames: 0,
            blocks: 0,
        }
    }
}

impl Inbound {
    /// How many bytes at the front of `bytes`, just read from the socket, h2 may have as they are.
    /// Stops before a frame header that is incomplete or starts a header block: the caller hands
    /// the rest to [`Inbound::hold`].
    pub(crate) fn passable(&mut self, bytes: &[u8]) -> usize {
        // Inside a header block only CONTINUATION may follow, and that is held anyway.
        if self.block.is_some() {
            return 0;
        }
        passable(&mut self.passing, &mut self.frames, bytes)
    }

    pub(crate) fn progress(&self) -> Progress {
        Progress {
            frames: self.frames,
            mid_frame: self.passing > 0 || !self.held.is_empty(),
            blocks: self.blocks,
            mid_block: self.block.is_some(),
        }
    }

    /// Whether bytes wait in `held`: then reads go there, not straight to h2.
    pub(crate) fn holding(&self) -> bool {
        !self.held.is_empty()
    }

    pub(crate) fn held_mut(&mut self) -> &mut BytesMut {
        &mut self.held
    }

    pub(crate) fn ready_mut(&mut self) -> &mut BytesMut {
        &mut self.ready
    }

    /// Keeps `bytes` (which start at a frame header) and processes what is complete.
    pub(crate) fn hold(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.held.extend_from_slice(bytes);
        self.drain()
    }

    /// Moves every complete frame in `held` to `ready`, rewriting header blocks; leaves a partial
    /// frame in `held` for the next read.
    pub(crate) fn drain(&mut self) -> io::Result<()> {
        loop {
            if self.block.is_none() {
                let n = passable(&mut self.passing, &mut self.frames, &self.held);
                let pass = self.held.split_to(n);
                self.ready.extend_from_slice(&pass);
            }
            if self.held.len() < FRAME_HEAD {
                return Ok(());
            }
            let head = Head::parse(&self.held);
            if head.len > MAX_IN_FRAME {
                return Err(invalid("header block frame over the size limit"));
            }
            if self.held.len() < FRAME_HEAD + head.len {
                self.held.reserve(FRAME_HEAD + head.len - self.held.len());
                return Ok(());
            }
            let frame = self.held.split_to(FRAME_HEAD + head.len);
            self.frames += 1;
            self.header_frame(head, &frame[FRAME_HEAD..])?;
        }
    }

    fn header_frame(&mut self, head: Head, payload: &[u8]) -> io::Result<()> {
        let (block, fragment) = match (head.kind, &mut self.block) {
            (HEADERS, None) if head.stream != 0 => {
                let (priority, fragment) = headers_payload(head.flags, payload)?;
                let block = self.block.insert(Block {
                    stream: head.stream,
                    end_stream: head.flags & END_STREAM != 0,
                    priority,
                    fragment: Vec::new(),
                });
                (block, fragment)
            }
            (CONTINUATION, Some(block)) if block.stream == head.stream => (block, payload),
            _ => return Err(invalid("frame out of place in a header block")),
        };
        if block.fragment.len() + fragment.len() > MAX_BLOCK {
            return Err(invalid("header block over the size limit"));
        }
        block.fragment.extend_from_slice(fragment);
        if head.flags & END_HEADERS != 0 {
            let block = self.block.take().expect("a block is open");
            let encoded = rewrite(&mut self.hpack, &block.fragment)?;
            emit(&block, &encoded, &mut self.ready);
            self.blocks += 1;
        }
        Ok(())
    }
}

/// Also counts in `frames` each frame that passes whole.
fn passable(passing: &mut usize, frames: &mut u64, bytes: &[u8]) -> usize {
    let mut at = 0;
    loop {
        let skip = (*passing).min(bytes.len() - at);
        *passing -= skip;
        at += skip;
        if skip > 0 && *passing == 0 {
            *frames += 1;
        }
        if *passing > 0 || bytes.len() - at < FRAME_HEAD {
            return at;
        }
        let head = Head::parse(&bytes[at..]);
        if head.kind == HEADERS || head.kind == CONTINUATION {
            return at;
        }
        *passing = FRAME_HEAD + head.len;
    }
}

/// The header block fragment of a HEADERS payload, without padding, and its priority fields
/// (deprecated by RFC 9113 but still checked by h2, so kept).
fn headers_payload(flags: u8, payload: &[u8]) -> io::Result<(Option<[u8; PRIORITY_LEN]>, &[u8])> {
    let mut p = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        let (&n, rest) = p
            .split_first()
            .ok_or_else(|| invalid("PADDED without length"))?;
        pad = usize::from(n);
        p = rest;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        let (fields, rest) = p
            .split_first_chunk::<PRIORITY_LEN>()
            .ok_or_else(|| invalid("PRIORITY fields missing"))?;
        priority = Some(*fields);
        p = rest;
    }
    if pad > p.len() {
        return Err(invalid("padding longer than the frame"));
    }
    Ok((priority, &p[..p.len() - pad]))
}

/// Decodes a whole header block, replaces an `:authority` h2 would refuse, and encodes the fields
/// again, each as a literal without indexing: h2's dynamic table then stays empty and can never
/// disagree with the client's, whatever the client indexed.
fn rewrite(hpack: &mut Decoder<'static>, fragment: &[u8]) -> io::Result<Vec<u8>> {
    let mut fields = Vec::new();
    let mut size = 0;
    hpack
        .decode_with_cb(fragment, |name, value| {
            size += name.len() + value.len() + 32;
            if size <= MAX_BLOCK {
                fields.push((name.into_owned(), value.into_owned()));
            }
        })
        .map_err(|e| invalid(&format!("HPACK: {e}")))?;
    if size > MAX_BLOCK {
        return Err(invalid("decoded header list over the size limit"));
    }
    let mut out = Vec::with_capacity(size);
    for (name, value) in &fields {
        let value = if name == b":authority" && http::uri::Authority::try_from(&value[..]).is_err()
        {
            LOCALHOST
        } else {
            value
        };
        literal(&mut out, name, value);
    }
    Ok(out)
}

/// RFC 7541 6.2.2, literal header field without indexing, new name; strings without Huffman.
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0);
    for s in [name, value] {
        loona_hpack::encoder::encode_integer_into(s.len(), 7, 0, out)
            .expect("writing to a Vec cannot fail");
        out.extend_from_slice(s);
    }
}

/// Frames `encoded` as one HEADERS and as many CONTINUATION frames as it takes.
fn emit(block: &Block, encoded: &[u8], out: &mut BytesMut) {
    let extra = if block.priority.is_some() {
        PRIORITY_LEN
    } else {
        0
    };
    let (first, mut rest) = encoded.split_at(encoded.len().min(MAX_OUT_FRAME - extra));
    let mut flags = if rest.is_empty() { END_HEADERS } else { 0 };
    if block.end_stream {
        flags |= END_STREAM;
    }
    if block.priority.is_some() {
        flags |= PRIORITY;
    }
    out.reserve(encoded.len() + FRAME_HEAD * (2 + encoded.len() / MAX_OUT_FRAME) + extra);
    Head {
        len: first.len() + extra,
        kind: HEADERS,
        flags,
        stream: block.stream,
    }
    .write(out);
    if let Some(priority) = &block.priority {
        out.extend_from_slice(priority);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_OUT_FRAME));
        let flags = if tail.is_empty() { END_HEADERS } else { 0 };
        Head {
            len: chunk.len(),
            kind: CONTINUATION,
            flags,
            stream: block.stream,
        }
        .write(out);
        out.extend_from_slice(chunk);
        rest = tail;
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("HTTP/2 from client: {what}"),
    )
}
