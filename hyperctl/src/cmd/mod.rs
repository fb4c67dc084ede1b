//! One module per subcommand; each returns the process exit code.

mod check;
mod completion;
mod events;
mod images;
mod inspect;
mod leases;
mod load;
mod login;
mod pin;
mod prune;
mod pull;
mod push;
mod rmi;
mod save;
mod system;
mod tag;
mod version;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hyperd_proto::tonic::transport::Channel;
use hyperd_proto::v1::content_service_client::ContentServiceClient;
use hyperd_proto::v1::event_service_client::EventServiceClient;
use hyperd_proto::v1::image_service_client::ImageServiceClient;
use hyperd_proto::v1::registry_service_client::RegistryServiceClient;

use crate::cli::{Command, ImageCommand, SystemCommand};
use crate::exit::Unreachable;
use crate::peer::Peer;

pub(crate) type Client = ImageServiceClient<Channel>;
pub(crate) type ContentClient = ContentServiceClient<Channel>;
pub(crate) type RegistryClient = RegistryServiceClient<Channel>;

/// Both services on one connection.
pub(crate) struct Clients {
    pub(crate) images: Client,
    pub(crate) content: ContentClient,
    /// hyperd's socket, beside which files are handed over.
    pub(crate) socket: PathBuf,
    /// Who serves the channel: a file's contents go only to root's or the caller's hyperd.
    pub(crate) peer: Peer,
}

/// Runs `command` against hyperd at `socket`, or at the default socket when none is given.
pub(crate) async fn run(command: Command, socket: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    if let Command::Completion(args) = command {
        return completion::run(args);
    }
    if let Command::Logout(args) = command {
        return login::logout(args);
    }
    let socket = &socket.map_or_else(hyperd_proto::default_socket, Ok)?;
    if let Command::Version = command {
        return version::run(socket).await;
    }
    let peer = Peer::new(socket);
    let channel = channel(socket, &peer).await?;
    let client = images(channel.clone());
    match command {
        Command::Images(a) => images::run(client, a).await,
        Command::Save(a) => save::run(client, socket, &peer, a).await,
        Command::Load(a) => {
            let content = ContentServiceClient::new(channel);
            load::run(
                Clients {
                    images: client,
                    content,
                    socket: socket.to_path_buf(),
                    peer,
                },
                a,
            )
            .await
        }
        Command::Rmi(a) => rmi::run(client, a).await,
        Command::Tag(a) => tag::run(client, a).await,
        Command::Inspect(a) => inspect::run(client, a).await,
        Command::Pin(a) => pin::run(client, a, true).await,
        Command::Unpin(a) => pin::run(client, a, false).await,
        Command::Pull(a) => pull::run(RegistryServiceClient::new(channel), &peer, a).await,
        Command::Push(a) => push::run(RegistryServiceClient::new(channel), &peer, a).await,
        Command::Login(a) => login::login(RegistryServiceClient::new(channel), &peer, a).await,
        Command::Check => check::run(client).await,
        Command::System(SystemCommand::Df(a)) => system::df(client, a).await,
        Command::Image(ImageCommand::Prune(a)) => prune::run(client, a).await,
        Command::Leases(c) => leases::run(ContentServiceClient::new(channel), c).await,
        Command::Events(a) => events::run(EventServiceClient::new(channel), a).await,
        Command::Version | Command::Completion(_) | Command::Logout(_) => {
            unreachable!("handled above")
        }
    }
}

pub(crate) async fn connect(socket: &Path) -> anyhow::Result<Client> {
    Ok(images(channel(socket, &Peer::new(socket)).await?))
}

/// A channel whose every connection `peer` sees (and may refuse).
async fn channel(socket: &Path, peer: &Peer) -> anyhow::Result<Channel> {
    let peer = peer.clone();
    Ok(
        hyperd_proto::connect_checked(socket, move |uid| peer.connected(uid))
            .await
            .map_err(|e| Unreachable {
                socket: socket.display().to_string(),
                cause: error_chain(&e),
            })?,
    )
}

/// The largest answer hyperctl takes from the image service. Streams come in 1 MiB chunks and
/// 1,000-row pages, but an Inspect holds a manifest and a config of up to 4 MiB each, and a
/// Load's answer a line per image (an archive's index of up to 4 MiB lists ~19,000).
const MAX_ANSWER: usize = 16 << 20;

fn images(channel: Channel) -> Client {
    ImageServiceClient::new(channel)
        .max_decoding_message_size(MAX_ANSWER)
        .max_encoding_message_size(hyperd_proto::CHUNK_SIZE * 2)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    parts.join(": ")
}
