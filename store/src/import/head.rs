//! What an input that is not a tar archive is: its first bytes, after any decompression, kept as
//! the tar reader takes them, so that the refusal can say "text" or "empty" rather than repeat
//! the tar reader's complaint about a header block.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::decompress::Compression;
use crate::error::{Error, ended_early};

/// One tar header block: as much as it takes to tell what the input is.
const KEPT: usize = 512;

/// A reader that keeps the first [`KEPT`] bytes it passes on.
pub(super) struct Head<R> {
    inner: R,
    kept: Arc<Mutex<Vec<u8>>>,
}

/// The bytes a [`Head`] kept, readable while the reader is in use.
#[derive(Clone, Default)]
pub(super) struct Kept(Arc<Mutex<Vec<u8>>>);

impl<R> Head<R> {
    pub(super) fn new(inner: R) -> (Self, Kept) {
        let kept = Kept::default();
        let head = Head {
            inner,
            kept: kept.0.clone(),
        };
        (head, kept)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Head<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let mut kept = self.kept.lock().expect("kept bytes lock poisoned");
        let room = KEPT.saturating_sub(kept.len());
        let new = &buf.filled()[before..];
        kept.extend_from_slice(&new[..room.min(new.len())]);
        polled
    }
}

impl Kept {
    /// Whether nothing at all was read.
    pub(super) fn is_empty(&self) -> bool {
        self.0.lock().expect("kept bytes lock poisoned").is_empty()
    }

    /// The refusal for the tar reader's error `e`. What it says of its first header block is
    /// about tar: before any entry was read (`read_any`), the user learns what the input was
    /// instead; after one, that an input which ended early is a truncated archive.
    pub(super) fn refusal(&self, e: std::io::Error, read_any: bool, c: Compression) -> Error {
        let tar_header = is_tar_header(&self.0.lock().expect("kept bytes lock poisoned"));
        match (read_any || tar_header, ended_early(&e)) {
            (false, _) => Error::invalid(format!(
                "not a tar archive: the input is {}",
                self.describe(c)
            )),
            (true, true) => Error::invalid("the archive ends inside an entry: it is truncated"),
            (true, false) => Error::invalid(format!("reading tar: {e}")),
        }
    }

    /// The refusal for an input with no bytes at all, once decompressed.
    pub(super) fn empty(c: Compression) -> Error {
        Error::invalid(match c {
            Compression::None => "the archive is empty (0 bytes)",
            _ => "the archive decompresses to nothing",
        })
    }

    /// What the input is, in a few words: `empty`, `text`, `gzip-compressed text`, `binary data
    /// starting 7f 45 4c 46`.
    pub(super) fn describe(&self, compression: Compression) -> String {
        let kept = self.0.lock().expect("kept bytes lock poisoned");
        let what = describe(&kept);
        match compression {
            Compression::None => what,
            Compression::Gzip => format!("gzip-compressed {what}"),
            Compression::Zstd => format!("zstd-compressed {what}"),
        }
    }
}

/// Whether `head` starts with a tar header block whose checksum holds: then what went wrong is
/// in the archive (a refused extension, a header cut short), not in what the input is.
fn is_tar_header(head: &[u8]) -> bool {
    let Some(block) = head.get(..512) else {
        return false;
    };
    let field = String::from_utf8_lossy(&block[148..156]);
    let Ok(stored) = u32::from_str_radix(field.trim_matches(|c: char| c == '\0' || c == ' '), 8)
    else {
        return false;
    };
    // The checksum counts its own field as eight spaces.
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == stored
}

fn describe(head: &[u8]) -> String {
    if head.is_empty() {
        return "empty".into();
    }
    // A character cut at the end of the kept bytes still counts as text.
    let text = match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).expect("valid up to there")
        }
        Err(_) => "",
    };
    let printable = |c: char| !c.is_control() || c.is_ascii_whitespace();
    if !text.is_empty() && text.chars().all(printable) {
        return "text".into();
    }
    let start: Vec<String> = head.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("binary data starting {}", start.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_described_by_their_first_bytes() {
        assert_eq!(describe(b""), "empty");
        assert_eq!(describe(b"hello world\n"), "text");
        assert_eq!(describe("caf\u{e9}".as_bytes()), "text");
        assert_eq!(describe(&"caf\u{e9}".as_bytes()[..4]), "text");
        assert_eq!(
            describe(b"\x7fELF\x02\x01"),
            "binary data starting 7f 45 4c 46"
        );
        assert_eq!(describe(b"\0\0"), "binary data starting 00 00");
    }

    #[test]
    fn a_tar_header_is_told_by_its_checksum() {
        let mut block = [0u8; 512];
        block[..4].copy_from_slice(b"file");
        assert!(!is_tar_header(&block));
        let sum: u32 = block.iter().map(|b| u32::from(*b)).sum::<u32>() + 8 * 32;
        block[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        assert!(is_tar_header(&block));
        assert!(!is_tar_header(&block[..300]));
        assert!(!is_tar_header(&[b' '; 512]));
    }

    #[tokio::test]
    async fn a_head_keeps_the_first_block_it_passes_on() {
        use tokio::io::AsyncReadExt;
        let data = vec![b'a'; 2000];
        let (mut head, kept) = Head::new(&data[..]);
        let mut out = Vec::new();
        head.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, data);
        assert_eq!(kept.0.lock().unwrap().len(), KEPT);
        assert_eq!(kept.describe(Compression::Gzip), "gzip-compressed text");
    }
}
