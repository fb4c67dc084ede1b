//! Loads from and saves into a regular file by handing hyperd the open file instead of
//! streaming it: the descriptor goes over the companion socket `<socket>.fd` for a token, which
//! LoadFile or SaveFile redeems. hyperctl opens the file with its own permissions, so hyperd
//! reaches nothing the user could not. Where this cannot be (a hyperd without the companion
//! socket or the RPCs, a descriptor hyperd refuses), the caller streams instead.

use std::fs::File;
use std::io::{IoSlice, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use hyperd_proto::tonic::{Code, Status, Streaming};
use hyperd_proto::v1::{
    LoadFileRequest, LoadFileResponse, LoadOptions, LoadResponse, SaveFileRequest,
    SaveFileResponse, SaveRequest, load_file_response, save_file_response,
};
use indicatif::ProgressBar;
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};

use crate::cmd::Client;

/// hyperd answers at once; this only bounds a wedged one.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads the archive at `start` in `file` through LoadFile. `None`: hyperd cannot take the
/// file, stream it instead.
pub(crate) async fn load(
    client: &mut Client,
    socket: &Path,
    file: &File,
    start: u64,
    options: LoadOptions,
    bar: &ProgressBar,
) -> anyhow::Result<Option<LoadResponse>> {
    let Some(fd_token) = hand_over(socket, file)? else {
        return Ok(None);
    };
    let request = LoadFileRequest {
        fd_token,
        options: Some(options),
        offset: start,
    };
    let Some(mut answers) = unless_unimplemented(client.load_file(request).await)? else {
        return Ok(None);
    };
    while let Some(LoadFileResponse { part }) = answers.message().await? {
        match part {
            Some(load_file_response::Part::Progress(n)) => bar.set_position(n),
            Some(load_file_response::Part::Done(r)) => return Ok(Some(r)),
            None => {}
        }
    }
    anyhow::bail!("hyperd ended the load without a result")
}

/// Saves into `file` (written from its start, cut to length and synced by hyperd) through
/// SaveFile. `false`: hyperd cannot take the file, stream instead.
pub(crate) async fn save(
    client: &mut Client,
    socket: &Path,
    file: &File,
    save: SaveRequest,
    bar: &ProgressBar,
) -> anyhow::Result<bool> {
    let Some(fd_token) = hand_over(socket, file)? else {
        return Ok(false);
    };
    let request = SaveFileRequest {
        fd_token,
        save: Some(save),
    };
    let Some(mut answers) = unless_unimplemented(client.save_file(request).await)? else {
        return Ok(false);
    };
    while let Some(SaveFileResponse { part }) = answers.message().await? {
        match part {
            Some(save_file_response::Part::Progress(n)) => bar.set_position(n),
            Some(save_file_response::Part::Done(_)) => return Ok(true),
            None => {}
        }
    }
    anyhow::bail!("hyperd ended the save without a result")
}

/// The call's answers, or `None` when this hyperd predates the RPC.
fn unless_unimplemented<T>(
    answer: Result<hyperd_proto::tonic::Response<Streaming<T>>, Status>,
) -> Result<Option<Streaming<T>>, Status> {
    match answer {
        Ok(r) => Ok(Some(r.into_inner())),
        Err(s) if s.code() == Code::Unimplemented => Ok(None),
        Err(s) => Err(s),
    }
}

/// Sends `file`'s descriptor to hyperd's companion socket and returns the token for it; `None`
/// when there is no companion socket or hyperd refused the descriptor (said on stderr).
fn hand_over(socket: &Path, file: &File) -> anyhow::Result<Option<String>> {
    let path = hyperd_proto::fd_socket(socket);
    let mut conn = match UnixStream::connect(&path) {
        Ok(c) => c,
        // An older hyperd, or one whose companion socket is not reachable from here.
        Err(_) => return Ok(None),
    };
    // Refused outright rather than streamed: whoever serves this socket is not to be sent the
    // file's bytes either.
    let server = rustix::net::sockopt::socket_peercred(&conn)
        .with_context(|| format!("reading who serves {}", path.display()))?;
    crate::peer::check(server.uid.as_raw(), &path, "a file descriptor")?;
    conn.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let fds = [file.as_fd()];
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(
        &conn,
        &[IoSlice::new(b"F")],
        &mut control,
        SendFlags::empty(),
    )
    .with_context(|| format!("handing the file to hyperd on {}", path.display()))?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .with_context(|| format!("reading hyperd's answer on {}", path.display()))?;
    let answer = answer.trim_end();
    match answer.strip_prefix("error: ") {
        None if answer.len() == 32 && answer.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(Some(answer.to_owned()))
        }
        why => {
            eprintln!(
                "hyperd did not take the file ({}); streaming it instead",
                why.unwrap_or(answer)
            );
            Ok(None)
        }
    }
}
