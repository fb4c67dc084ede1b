//! hyperd's gRPC API as the tests call it: a client on a daemon's socket, and the messages of a
//! Load stream.

use std::path::Path;

use bytes::Bytes;
use hyperd_proto::tonic::transport::Channel;
use hyperd_proto::v1::image_service_client::ImageServiceClient;
use hyperd_proto::v1::{self, load_request::Part};

pub type Images = ImageServiceClient<Channel>;

/// An ImageService client on the daemon's `socket`.
pub async fn images(socket: &Path) -> Images {
    ImageServiceClient::new(hyperd_proto::connect(socket).await.unwrap())
}

/// A Load stream of `archive`: default options, then the archive in chunks.
pub fn load_messages(archive: &Bytes) -> Vec<v1::LoadRequest> {
    let mut msgs = vec![v1::LoadRequest {
        part: Some(Part::Options(v1::LoadOptions::default())),
    }];
    msgs.extend(
        archive
            .chunks(hyperd_proto::CHUNK_SIZE)
            .map(|chunk| v1::LoadRequest {
                part: Some(Part::Chunk(archive.slice_ref(chunk))),
            }),
    );
    msgs
}
