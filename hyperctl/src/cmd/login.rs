//! `hyperctl login` and `logout`: hyperd checks the credential against the registry, hyperctl
//! stores it where docker keeps it.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, bail};
use hyperd_proto::v1::{Credential, LoginRequest};

use super::RegistryClient;
use crate::cli::{LoginArgs, LogoutArgs};
use crate::credentials;
use crate::exit::from_registry;
use crate::peer::Peer;

pub(crate) async fn login(
    mut client: RegistryClient,
    peer: &Peer,
    args: LoginArgs,
) -> anyhow::Result<ExitCode> {
    let server = args.server.unwrap_or_else(|| "docker.io".to_owned());
    let username = match args.username {
        Some(u) => u,
        None if std::io::stdin().is_terminal() && !args.password_stdin => {
            eprint!("Username: ");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim().to_owned()
        }
        None => bail!("a username is needed: -u USERNAME"),
    };
    let password = match (args.password, args.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p,
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            line.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) if std::io::stdin().is_terminal() => {
            rpassword::prompt_password("Password: ")?
        }
        (None, false) => bail!("a password is needed: --password-stdin or -p"),
    };
    if username.is_empty() || password.is_empty() {
        bail!("username and password must not be empty");
    }
    let registry = match server.as_str() {
        "docker.io" => String::new(),
        s => s
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned(),
    };
    peer.require_trusted("a registry credential")?;
    client
        .login(LoginRequest {
            registry: registry.clone(),
            credential: Some(Credential {
                username: username.clone(),
                password: password.clone(),
                token: String::new(),
            }),
        })
        .await
        .map_err(from_registry)?;
    let stored = if registry.is_empty() {
        "docker.io"
    } else {
        &registry
    };
    let path = credentials::store(stored, &username, &password)?;
    eprintln!("Credential stored in {}", path.display());
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn logout(args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let server = args.server.unwrap_or_else(|| "docker.io".to_owned());
    if credentials::erase(&server)? {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(ExitCode::SUCCESS)
}
