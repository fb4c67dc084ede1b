//! hyperd's gRPC API, `hyperd.v1`, generated from `hyperd/v1/images.proto`,
//! `hyperd/v1/content.proto`, `hyperd/v1/registry.proto`, `hyperd/v1/events.proto` and
//! `hyperd/v1/errors.proto`, the reason a failed call carries, and a connector for hyperd's Unix
//! socket.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

mod errors;
mod text;

pub use errors::{ERROR_DOMAIN, reason_of, status_with_metadata, status_with_reason};
pub use text::escape_controls;
pub use {prost, tonic};

/// Generated messages, the `ImageService`, `ContentService`, `RegistryService` and
/// `EventService` clients and servers, and `ErrorReason`.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod v1 {
    tonic::include_proto!("hyperd.v1");
}

/// The encoded `FileDescriptorSet` of the API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/hyperd_descriptor.bin"));

/// Archive bytes travel in chunks of this size: under gRPC's default 4 MiB message limit (a
/// 4 MiB payload plus framing fails it), and the fastest size measured.
pub const CHUNK_SIZE: usize = 1 << 20;

/// The client's HTTP/2 receive windows, which bound a save's throughput: with the defaults (16 KiB
/// frames, small windows) a stream measured 1.1-1.2 GB/s, with these 2.2-3.0 GB/s. hyperd sets
/// its own, smaller per-stream window for loads.
const STREAM_WINDOW: u32 = 8 << 20;
/// See [`STREAM_WINDOW`].
const CONNECTION_WINDOW: u32 = 16 << 20;
/// Largest HTTP/2 frame a client accepts from hyperd: one 1 MiB chunk per frame (the default is
/// 16 KiB). hyperd accepts only 16 KiB frames from clients: it buffers a frame whole, so that is
/// all a client stalled mid-frame makes it hold (a 512 MiB load streamed as fast either way).
pub const MAX_FRAME: u32 = (1 << 20) - 1;

/// Caps glibc's per-thread arenas at two. Loads and saves move megabyte buffers between threads,
/// and glibc keeps what each thread frees in that thread's own arena (up to eight per core): at
/// 4 GiB images hyperd passed 64 MiB. Forcing large buffers to mmap instead halved throughput.
/// Call first thing in `main`, before any other thread exists.
pub fn bound_allocator_caching() {
    // SAFETY: mallopt only tunes glibc's allocator; the caller runs it before other threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Where hyperd listens unless told otherwise: `/run/hyperd/hyperd.sock` for root, else
/// `$XDG_RUNTIME_DIR/hyperd.sock`. There is no fallback into a shared directory such as `/tmp`:
/// another user could create it first and serve a socket of their own there, to which hyperctl
/// would send credentials and files.
pub fn default_socket() -> Result<PathBuf, NoDefaultSocket> {
    let uid = rustix::process::geteuid();
    if uid.is_root() {
        return Ok(PathBuf::from("/run/hyperd/hyperd.sock"));
    }
    // The XDG base directory specification makes a relative path invalid, to be ignored.
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => Ok(dir.join("hyperd.sock")),
        _ => Err(NoDefaultSocket { uid: uid.as_raw() }),
    }
}

/// A user other than root without a runtime directory has no default socket.
#[derive(Debug)]
pub struct NoDefaultSocket {
    uid: u32,
}

impl std::fmt::Display for NoDefaultSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no default socket for uid {}: XDG_RUNTIME_DIR is not set (or not an absolute path); \
             set it to a directory only you can write (systemd's /run/user/{}), \
             or name the socket with --socket or HYPERD_SOCKET",
            self.uid, self.uid
        )
    }
}

impl std::error::Error for NoDefaultSocket {}

/// The companion socket next to hyperd's socket `socket`, on which a client hands hyperd an open
/// file for LoadFile and SaveFile: `<socket>.fd`.
pub fn fd_socket(socket: &std::path::Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".fd");
    PathBuf::from(name)
}

/// Opens a channel to hyperd's Unix socket at `path`.
pub async fn connect(path: impl Into<PathBuf>) -> Result<Channel, tonic::transport::Error> {
    connect_checked(path, |_| Ok(())).await
}

/// Opens a channel to hyperd's Unix socket at `path`; `check` is given the uid serving each
/// connection the channel opens (SO_PEERCRED, reconnections too) and may refuse it, before
/// anything is sent on it.
pub async fn connect_checked<F>(
    path: impl Into<PathBuf>,
    check: F,
) -> Result<Channel, tonic::transport::Error>
where
    F: Fn(u32) -> std::io::Result<()> + Clone + Send + Sync + 'static,
{
    let path = path.into();
    // The connector below ignores the URI; its authority becomes the HTTP/2 `:authority`, and
    // `localhost` is what grpc-go and Kubernetes send over Unix sockets.
    Endpoint::from_static("http://localhost")
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let (path, check) = (path.clone(), check.clone());
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                check(stream.peer_cred()?.uid())?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
}
