//! Flags and subcommands, as clap derive types only.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

mod ops;
pub(crate) use ops::*;

/// Client of hyperd, the image store daemon.
#[derive(Parser)]
#[command(name = "hyperctl", version, about)]
pub(crate) struct Cli {
    /// hyperd's socket [env: HYPERD_SOCKET] [default: /run/hyperd/hyperd.sock as root, else
    /// $XDG_RUNTIME_DIR/hyperd.sock]
    // Read from the environment by hand (`socket_from_env`): clap's `env` shows a value taken from
    // the environment in every usage line, as if `--socket` were required.
    #[arg(long, global = true)]
    pub(crate) socket: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// List images
    Images(ImagesArgs),
    /// Save images to a tar archive (to stdout unless -o)
    Save(SaveArgs),
    /// Load images from a tar archive (from stdin unless -i)
    Load(LoadArgs),
    /// Remove images
    Rmi(RmiArgs),
    /// Give an image another name
    Tag(TagArgs),
    /// Show images' manifest and config as JSON
    Inspect(InspectArgs),
    /// Keep images from `image prune` (an explicit rmi still removes them)
    Pin(PinArgs),
    /// Let `image prune` remove images again
    Unpin(PinArgs),
    /// Pull an image from a registry
    Pull(PullArgs),
    /// Push an image to the registry its name says
    Push(PushArgs),
    /// Check and store a registry credential (in docker's config.json)
    Login(LoginArgs),
    /// Remove a registry credential
    Logout(LogoutArgs),
    /// List or delete leases (what keeps written blobs from collection)
    #[command(subcommand)]
    Leases(LeasesCommand),
    /// Re-hash every stored blob and verify every reference
    Check,
    /// What images keep on disk (`system df`)
    #[command(subcommand)]
    System(SystemCommand),
    /// Remove unused images (`image prune`)
    #[command(subcommand)]
    Image(ImageCommand),
    /// Follow what hyperd does (`docker events`): past events with --since, then live ones
    Events(EventsArgs),
    /// Show client and daemon versions
    Version,
    /// Print a shell completion script
    Completion(CompletionArgs),
}

#[derive(clap::Args)]
pub(crate) struct ImagesArgs {
    /// Show all images (hyperd keeps no intermediate images, so this is the default list)
    #[arg(short, long)]
    pub(crate) all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Only rows that pass: reference=PATTERN (the name with or without its tag; `*` stops at
    /// `/`; several: any), dangling=true|false (only untagged rows, or only tagged ones)
    #[arg(short, long = "filter", value_name = "KEY=VALUE", value_parser = filter)]
    pub(crate) filters: Vec<String>,
    /// Show digests (of the top-level manifest or index)
    #[arg(long)]
    pub(crate) digests: bool,
    /// Output format
    #[arg(long, value_enum, default_value_t = ListFormat::Table)]
    pub(crate) format: ListFormat,
}

/// A filter's shape, `KEY=VALUE`; hyperd judges the key and the value.
fn filter(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((key, _)) if !key.is_empty() => Ok(s.to_owned()),
        _ => Err("expected KEY=VALUE: reference=PATTERN or dangling=true|false".to_owned()),
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ListFormat {
    Table,
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub(crate) enum ArchiveFormat {
    /// docker-archive, as `docker save` writes
    Docker,
    /// OCI image layout
    Oci,
}

#[derive(clap::Args)]
pub(crate) struct SaveArgs {
    /// Write to FILE instead of stdout
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Archive format
    #[arg(short, long, value_enum, default_value_t = ArchiveFormat::Docker)]
    pub(crate) format: ArchiveFormat,
    /// Name IMAGE as REFNAME in the archive (OCI ref name, or docker RepoTag)
    #[arg(short, long = "ref", value_name = "IMAGE=REFNAME")]
    pub(crate) refs: Vec<Mapping>,
    /// Platform to write for a multi-platform image in docker format (os/arch[/variant])
    #[arg(long)]
    pub(crate) platform: Option<String>,
    /// In OCI format, leave out the images' referrers (signatures, SBOMs, attestations)
    #[arg(long)]
    pub(crate) no_referrers: bool,
    /// Do not show progress
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Stream the archive over the socket instead of handing hyperd the open output file
    #[arg(long, env = "HYPERCTL_NO_FD", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) no_fd: bool,
    /// Images to save: names or IDs
    #[arg(required = true, value_name = "IMAGE")]
    pub(crate) images: Vec<String>,
}

#[derive(clap::Args)]
pub(crate) struct LoadArgs {
    /// Read from FILE instead of stdin ("-" for stdin)
    #[arg(short, long, value_name = "FILE")]
    pub(crate) input: Option<PathBuf>,
    /// Load only the image with ref name REFNAME, as NAME:TAG
    #[arg(short, long = "ref", value_name = "NAME:TAG=REFNAME")]
    pub(crate) refs: Vec<Mapping>,
    /// Suppress progress and the list of loaded images
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Send the whole archive, also the blobs hyperd already holds
    #[arg(long)]
    pub(crate) send_all: bool,
    /// Stream the archive over the socket instead of handing hyperd the open file
    #[arg(long, env = "HYPERCTL_NO_FD", value_parser = clap::builder::BoolishValueParser::new())]
    pub(crate) no_fd: bool,
}

#[derive(clap::Args)]
pub(crate) struct RmiArgs {
    /// Remove an image by ID even when several tags use it
    #[arg(short, long)]
    pub(crate) force: bool,
    /// Images to remove: names or IDs
    #[arg(required = true, value_name = "IMAGE")]
    pub(crate) images: Vec<String>,
}

#[derive(clap::Args)]
pub(crate) struct PinArgs {
    /// Images: names or IDs
    #[arg(required = true, value_name = "IMAGE")]
    pub(crate) images: Vec<String>,
}

#[derive(Subcommand)]
pub(crate) enum LeasesCommand {
    /// List leases: all of them as root, your own otherwise
    Ls(LeasesLsArgs),
    /// Delete leases: any as root, your own otherwise
    Rm(LeasesRmArgs),
}

#[derive(clap::Args)]
pub(crate) struct LeasesLsArgs {
    /// Only show lease IDs
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

#[derive(clap::Args)]
pub(crate) struct LeasesRmArgs {
    /// Leases to delete, by ID
    #[arg(required = true, value_name = "ID")]
    pub(crate) ids: Vec<String>,
}

#[derive(clap::Args)]
pub(crate) struct TagArgs {
    /// Existing image: name or ID
    pub(crate) source: String,
    /// New name
    pub(crate) target: String,
}

#[derive(clap::Args)]
pub(crate) struct InspectArgs {
    /// Images: names or IDs
    #[arg(required = true, value_name = "IMAGE")]
    pub(crate) images: Vec<String>,
}

#[derive(clap::Args)]
pub(crate) struct PullArgs {
    /// NAME[:TAG] or NAME@DIGEST
    pub(crate) reference: String,
    /// Platform to pull from a multi-platform image (os/arch[/variant]) [default: this host's]
    #[arg(long)]
    pub(crate) platform: Option<String>,
    /// Pull the whole index, every platform's image
    #[arg(short, long)]
    pub(crate) all_platforms: bool,
    /// Also pull the image's referrers (signatures, SBOMs, attestations)
    #[arg(long)]
    pub(crate) referrers: bool,
    /// Print only the image's name (or digest), no progress
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

#[derive(clap::Args)]
pub(crate) struct PushArgs {
    /// NAME[:TAG] of a stored image; it goes to the registry and repository NAME says
    pub(crate) name: String,
    /// Leave out the image's referrers (signatures, SBOMs), which are pushed by default
    #[arg(long)]
    pub(crate) no_referrers: bool,
    /// Do not show progress
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

#[derive(clap::Args)]
pub(crate) struct LoginArgs {
    /// Registry (HOST[:PORT]) [default: docker.io]
    pub(crate) server: Option<String>,
    /// Username
    #[arg(short, long)]
    pub(crate) username: Option<String>,
    /// Password (visible to other users in the process list: prefer --password-stdin)
    #[arg(short, long)]
    pub(crate) password: Option<String>,
    /// Read the password from stdin
    #[arg(long)]
    pub(crate) password_stdin: bool,
}

#[derive(clap::Args)]
pub(crate) struct LogoutArgs {
    /// Registry (HOST[:PORT]) [default: docker.io]
    pub(crate) server: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct CompletionArgs {
    /// Shell
    pub(crate) shell: clap_complete::Shell,
}

/// `HYPERD_SOCKET`, when set and not empty.
pub(crate) fn socket_from_env() -> Option<PathBuf> {
    std::env::var_os("HYPERD_SOCKET")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// A `-r LEFT=RIGHT`, split at the last `=` (names never hold one). clap parses it, so a
/// malformed one is a usage error (exit 2) naming the flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub(crate) left: String,
    pub(crate) right: String,
}

impl std::str::FromStr for Mapping {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.rsplit_once('=') {
            Some((l, r)) if !l.is_empty() && !r.is_empty() => Ok(Mapping {
                left: l.to_owned(),
                right: r.to_owned(),
            }),
            _ => Err("expected LEFT=RIGHT, both sides named".to_owned()),
        }
    }
}

impl std::fmt::Display for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.left, self.right)
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// The README's CLI reference is written by hand; this keeps it to what clap knows.
    #[test]
    fn the_readme_documents_every_command_and_flag() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("## CLI reference")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("README has a CLI reference section");
        let cli = Cli::command();
        for sub in cli.get_subcommands() {
            let row = section
                .lines()
                .find(|l| {
                    l.starts_with(&format!("| `{} ", sub.get_name()))
                        || l.starts_with(&format!("| `{}`", sub.get_name()))
                })
                .unwrap_or_else(|| panic!("README's CLI reference lacks `{}`", sub.get_name()));
            for arg in sub
                .get_arguments()
                .filter(|a| !a.is_positional() && !a.is_global_set())
            {
                let documented = arg
                    .get_short()
                    .is_some_and(|s| row.contains(&format!("-{s}")))
                    || arg
                        .get_long()
                        .is_some_and(|l| row.contains(&format!("--{l}")));
                assert!(
                    documented,
                    "README's row for `{}` lacks {:?}",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }
}
