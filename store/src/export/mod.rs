//! Export: images to an OCI image layout or docker-archive tar stream, blobs read straight from
//! their files. Deterministic: same images, same bytes (fixed order, mtime 0, uid/gid 0).

pub(crate) mod docker;
pub(crate) mod oci;
mod out;

pub(crate) use out::{Direct, Out, Streamed, blame};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_tar::{Builder, EntryType, Header};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::image::ImageRecord;
use crate::reference::ImageName;

/// One image to write and what to call it in the archive.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    pub(crate) record: ImageRecord,
    /// The name the archive gives it: `org.opencontainers.image.ref.name` for OCI, a RepoTag for
    /// docker.
    pub(crate) ref_name: Option<String>,
    /// The image's own full name, when it has one.
    pub(crate) name: Option<ImageName>,
}

const COPY_BUFFER: usize = 1 << 20;

pub(crate) struct TarWriter<W: Out> {
    builder: Builder<W>,
}

impl<W: Out> TarWriter<W> {
    pub(crate) fn new(writer: W) -> Self {
        // Not `Builder::new`: it writes the end-of-archive marker on drop, which would make a
        // save that failed halfway look like a complete archive.
        TarWriter {
            builder: Builder::new_non_terminated(writer),
        }
    }

    fn header(size: u64, mode: u32, entry_type: EntryType) -> Header {
        let mut h = Header::new_ustar();
        h.set_size(size);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(entry_type);
        h
    }

    pub(crate) async fn dir(&mut self, path: &str) -> Result<()> {
        let mut h = Self::header(0, 0o755, EntryType::Directory);
        self.builder
            .append_data(&mut h, path, tokio::io::empty())
            .await
            .context(|| format!("writing {path}"))
    }

    /// Appends a regular file. The body is copied with a 1 MiB buffer: tokio-tar's own `append`
    /// copies through `tokio::io::copy`, 8 KiB at a time, which halved save throughput.
    pub(crate) async fn file<R: AsyncRead + Unpin + Send>(
        &mut self,
        path: &str,
        size: u64,
        data: R,
    ) -> Result<()> {
        self.start_file(path, size).await?;
        let mut body = BufReader::with_capacity(COPY_BUFFER, data.take(size));
        let copied = tokio::io::copy_buf(&mut body, self.builder.get_mut())
            .await
            .context(|| format!("writing {path}"))?;
        self.end_file(path, size, copied).await
    }

    /// Appends a blob's file whole, as the destination copies files best.
    pub(crate) async fn blob(
        &mut self,
        path: &str,
        size: u64,
        blob: tokio::fs::File,
    ) -> Result<()> {
        self.start_file(path, size).await?;
        let copied = self
            .builder
            .get_mut()
            .append_file(blob, size)
            .await
            .context(|| format!("writing {path}"))?;
        self.end_file(path, size, copied).await
    }

    async fn start_file(&mut self, path: &str, size: u64) -> Result<()> {
        let mut h = Self::header(size, 0o644, EntryType::Regular);
        h.set_path(path).context(|| format!("naming {path}"))?;
        h.set_cksum();
        self.builder
            .get_mut()
            .write_all(h.as_bytes())
            .await
            .context(|| format!("writing {path}"))
    }

    async fn end_file(&mut self, path: &str, size: u64, copied: u64) -> Result<()> {
        if copied != size {
            return Err(Error::Io {
                context: format!("writing {path}"),
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{path} ended after {copied} of {size} bytes"),
                ),
            });
        }
        let padding = (512 - size % 512) % 512;
        self.builder
            .get_mut()
            .write_all(&[0u8; 512][..padding as usize])
            .await
            .context(|| format!("writing {path}"))
    }

    pub(crate) async fn bytes(&mut self, path: &str, data: &[u8]) -> Result<()> {
        self.file(path, data.len() as u64, data).await
    }

    pub(crate) async fn finish(self) -> Result<W> {
        let mut w = self
            .builder
            .into_inner()
            .await
            .context(|| "finishing archive".into())?;
        w.flush().await.context(|| "flushing archive".into())?;
        Ok(w)
    }
}

pub(crate) fn blob_path(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}
