//! What the walk sends, gathered into messages of up to 1 MiB: an archive of many small entries
//! would otherwise cost a message per header.

use bytes::{Bytes, BytesMut};
use hyperd_proto::CHUNK_SIZE;

use super::source::Source;
use super::{Output, Piece, Stopped};

pub(super) struct Outbox<'a> {
    out: Output<'a>,
    pending: BytesMut,
}

impl<'a> Outbox<'a> {
    pub(super) fn new(out: Output<'a>) -> Self {
        Outbox {
            out,
            pending: BytesMut::new(),
        }
    }

    pub(super) async fn bytes(&mut self, data: &[u8]) -> anyhow::Result<()> {
        if let Output::Look = self.out {
            return Ok(());
        }
        for part in data.chunks(CHUNK_SIZE) {
            if self.pending.len() + part.len() > CHUNK_SIZE {
                self.flush().await?;
            }
            self.pending.extend_from_slice(part);
        }
        Ok(())
    }

    /// A body's chunk: sent as it is when nothing is pending, without a copy.
    async fn chunk(&mut self, chunk: Bytes) -> anyhow::Result<()> {
        if self.pending.is_empty() && chunk.len() == CHUNK_SIZE {
            return self.send(Piece::Bytes(chunk)).await;
        }
        self.bytes(&chunk).await
    }

    pub(super) async fn elided(&mut self, n: u64) -> anyhow::Result<()> {
        self.flush().await?;
        self.send(Piece::Elided(n)).await
    }

    pub(super) async fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let bytes = self.pending.split().freeze();
        self.send(Piece::Bytes(bytes)).await
    }

    async fn send(&self, piece: Piece) -> anyhow::Result<()> {
        if let Output::Channel(out) = self.out {
            out.send(piece).await.map_err(|_| Stopped)?;
        }
        Ok(())
    }

    /// Sends up to `n` bytes of `source` in 1 MiB pieces (only skips them, when only looking);
    /// returns how many there were.
    pub(super) async fn copy(&mut self, source: &mut Source, n: u64) -> anyhow::Result<u64> {
        let mut left = n;
        while left > 0 {
            let want = usize::try_from(left).unwrap_or(usize::MAX).min(CHUNK_SIZE);
            let moved = match self.out {
                Output::Channel(_) => {
                    let chunk = source.read_up_to(want).await?;
                    let len = chunk.len() as u64;
                    self.chunk(chunk).await?;
                    len
                }
                Output::Look => source.skip(want as u64).await?,
            };
            if moved == 0 {
                break;
            }
            left -= moved;
        }
        Ok(n - left)
    }
}
