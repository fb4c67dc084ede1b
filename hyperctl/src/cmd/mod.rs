//! One module per subcommand; each returns the process exit code.

mod check;
mod completion;
mod images;
mod inspect;
mod leases;
mod load;
mod login;
mod pull;
mod push;
mod rmi;
mod save;
mod tag;
mod version;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hyperd_proto::tonic::transport::Channel;
use hyperd_proto::v1::content_service_client::ContentServiceClient;
use hyperd_proto::v1::image_service_client::ImageServiceClient;
use hyperd_proto::v1::registry_service_client::RegistryServiceClient;

use crate::cli::Command;
use crate::exit::Unreachable;

pub(crate) type Client = ImageServiceClient<Channel>;
pub(crate) type ContentClient = ContentServiceClient<Channel>;
pub(crate) type RegistryClient = RegistryServiceClient<Channel>;

/// Both services on one connection.
pub(crate) struct Clients {
    pub(crate) images: Client,
    pub(crate) content: ContentClient,
    /// hyperd's socket, beside which files are handed over.
    pub(crate) socket: PathBuf,
}

pub(crate) async fn run(command: Command, socket: &Path) -> anyhow::Result<ExitCode> {
    if let Command::Completion(args) = command {
        return completion::run(args);
    }
    if let Command::Version = command {
        return version::run(socket).await;
    }
    if let Command::Logout(args) = command {
        return login::logout(args);
    }
    let channel = channel(socket).await?;
    let client = images(channel.clone());
    match command {
        Command::Images(a) => images::run(client, a).await,
        Command::Save(a) => save::run(client, socket, a).await,
        Command::Load(a) => {
            let content = ContentServiceClient::new(channel);
            load::run(
                Clients {
                    images: client,
                    content,
                    socket: socket.to_path_buf(),
                },
                a,
            )
            .await
        }
        Command::Rmi(a) => rmi::run(client, a).await,
        Command::Tag(a) => tag::run(client, a).await,
        Command::Inspect(a) => inspect::run(client, a).await,
        Command::Pull(a) => pull::run(RegistryServiceClient::new(channel), a).await,
        Command::Push(a) => push::run(RegistryServiceClient::new(channel), a).await,
        Command::Login(a) => login::login(RegistryServiceClient::new(channel), a).await,
        Command::Check => check::run(client).await,
        Command::Leases(c) => leases::run(ContentServiceClient::new(channel), c).await,
        Command::Version | Command::Completion(_) | Command::Logout(_) => {
            unreachable!("handled above")
        }
    }
}

pub(crate) async fn connect(socket: &Path) -> anyhow::Result<Client> {
    Ok(images(channel(socket).await?))
}

async fn channel(socket: &Path) -> anyhow::Result<Channel> {
    Ok(hyperd_proto::connect(socket)
        .await
        .map_err(|e| Unreachable {
            socket: socket.display().to_string(),
            cause: error_chain(&e),
        })?)
}

fn images(channel: Channel) -> Client {
    ImageServiceClient::new(channel)
        .max_decoding_message_size(hyperd_proto::CHUNK_SIZE * 2)
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
