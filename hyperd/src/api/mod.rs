//! The gRPC adapter layer: each service decodes a request, calls the store or the registry
//! logic, and encodes the answer or a status.

pub(crate) mod content;
mod convert;
mod files;
pub(crate) mod images;
pub(crate) mod registry;
mod status;
