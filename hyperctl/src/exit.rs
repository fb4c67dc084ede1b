//! Exit codes and error lines. Scripts tell failures apart by the code:
//! 1 any other failure, 2 usage (clap), 3 not found, 4 hyperd unreachable.

use hyperd_proto::tonic::{Code, Status};

pub(crate) const FAILURE: u8 = 1;
pub(crate) const NOT_FOUND: u8 = 3;
pub(crate) const UNREACHABLE: u8 = 4;

/// hyperd could not be reached at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to hyperd at {socket}: {cause}. Is hyperd running?")]
pub(crate) struct Unreachable {
    pub(crate) socket: String,
    pub(crate) cause: String,
}

/// Prints the one error line for `e` and returns the exit code it maps to.
pub(crate) fn report(e: &anyhow::Error) -> u8 {
    eprintln!("Error: {}", describe(e));
    raw_code(e)
}

fn raw_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<Unreachable>().is_some() {
        return UNREACHABLE;
    }
    match e.downcast_ref::<Status>().map(Status::code) {
        Some(Code::NotFound) => NOT_FOUND,
        Some(Code::Unavailable) => UNREACHABLE,
        _ => FAILURE,
    }
}

/// One line: the daemon's own message for a status, else the context chain.
fn describe(e: &anyhow::Error) -> String {
    let mut out = Vec::new();
    for cause in e.chain() {
        match cause.downcast_ref::<Status>() {
            Some(s) => {
                out.push(s.message().to_owned());
                break;
            }
            None => out.push(cause.to_string()),
        }
    }
    out.join(": ")
}
