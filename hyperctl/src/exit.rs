//! Exit codes and error lines. Scripts tell failures apart by the code:
//! 1 any other failure, 2 usage (clap), 3 not found, 4 hyperd unreachable, 5 a registry
//! refused the credential or the operation, 6 a registry unreachable or failing.

use hyperd_proto::tonic::{Code, Status};

pub(crate) const FAILURE: u8 = 1;
pub(crate) const NOT_FOUND: u8 = 3;
pub(crate) const UNREACHABLE: u8 = 4;
pub(crate) const REGISTRY_AUTH: u8 = 5;
pub(crate) const REGISTRY_UNAVAILABLE: u8 = 6;

/// A registry could not be reached: UNAVAILABLE from a pull, push or login is about the
/// registry, unless hyperd itself is stopping.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct RegistryUnavailable(String);

/// Tells a registry's unavailability from hyperd's.
pub(crate) fn from_registry(s: Status) -> anyhow::Error {
    if s.code() == Code::Unavailable && !s.message().contains("hyperd is shutting down") {
        return RegistryUnavailable(s.message().to_owned()).into();
    }
    s.into()
}

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
    if e.downcast_ref::<RegistryUnavailable>().is_some() {
        return REGISTRY_UNAVAILABLE;
    }
    match e.downcast_ref::<Status>().map(Status::code) {
        Some(Code::NotFound) => NOT_FOUND,
        Some(Code::Unavailable) => UNREACHABLE,
        Some(Code::Unauthenticated | Code::PermissionDenied) => REGISTRY_AUTH,
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
