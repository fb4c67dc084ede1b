//! Every gRPC call counted by method and code, and timed: a tower layer on tonic's server, the
//! one place every call passes.
//!
//! A call is counted when its status passes, so a stream (a Load, a Pull's events) counts its
//! whole life and the code it ended with: the `grpc-status` of its trailers, or of its headers
//! when it failed before any message (gRPC's trailers-only answer). Either way it is counted
//! before the status reaches the client, so a scrape after a call ended finds it. A call whose
//! client went away first is counted as `Cancelled`, one that ended with no status at all as
//! `Unknown`.
//! The method label is the call's path (`/hyperd.v1.ImageService/Load`) when it names a method
//! hyperd serves, else `other`: a client picks the path, and must not grow the label set.
//!
//! Hand-written because no crate kept for tonic 0.14 and prometheus-client does it; tower-http's
//! trace layer sees the end of a stream but not the call's path there.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use prost::Message;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: Arc<str>,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: Arc<str>,
}

type Durations = Family<MethodLabel, Histogram, fn() -> Histogram>;

/// The calls' counts and durations, and the methods hyperd serves.
#[derive(Clone)]
pub(crate) struct Calls {
    requests: Family<CallLabels, Counter>,
    durations: Durations,
    known: Arc<HashSet<Arc<str>>>,
}

/// A duration histogram's buckets: 1 ms to about 4 minutes, each four times the last (a Load
/// of gigabytes runs for minutes, a Tag for a millisecond).
fn durations() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 10))
}

impl Calls {
    pub(super) fn new(registry: &mut Registry) -> Self {
        let calls = Calls {
            requests: Family::default(),
            durations: Durations::new_with_constructor(durations),
            known: Arc::new(known_methods()),
        };
        registry.register(
            "grpc_requests",
            "gRPC calls ended, by method and status code",
            calls.requests.clone(),
        );
        registry.register(
            "grpc_request_duration_seconds",
            "Time from a gRPC call's request to the end of its response",
            calls.durations.clone(),
        );
        calls
    }

    /// The label of the call to `path`.
    fn method(&self, path: &str) -> Arc<str> {
        match self.known.get(path) {
            Some(m) => m.clone(),
            None => Arc::from("other"),
        }
    }
}

/// `/package.Service/Method` of every method of the services hyperd serves.
fn known_methods() -> HashSet<Arc<str>> {
    let sets = [
        hyperd_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut known = HashSet::new();
    for bytes in sets {
        let set = prost_types::FileDescriptorSet::decode(bytes)
            .expect("a descriptor set built into hyperd decodes");
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/{}.{}/{}", file.package(), service.name(), method.name());
                    known.insert(Arc::from(path));
                }
            }
        }
    }
    known
}

/// The layer that counts the calls of the service it wraps.
#[derive(Clone)]
pub(crate) struct Layer(Calls);

impl Layer {
    pub(crate) fn new(metrics: &super::Metrics) -> Self {
        Layer(metrics.grpc.clone())
    }
}

impl<S> tower::Layer<S> for Layer {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            calls: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct Counted<S> {
    inner: S,
    calls: Calls,
}

type Answer<B, E> = Pin<Box<dyn Future<Output = Result<Response<Timed<B>>, E>> + Send>>;

impl<S, Req, B> tower::Service<Request<Req>> for Counted<S>
where
    S: tower::Service<Request<Req>, Response = Response<B>>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
{
    type Response = Response<Timed<B>>;
    type Error = S::Error;
    type Future = Answer<B, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Req>) -> Self::Future {
        let mut call = Ongoing {
            method: self.calls.method(req.uri().path()),
            calls: self.calls.clone(),
            start: Instant::now(),
            code: None,
        };
        let answer = self.inner.call(req);
        Box::pin(async move {
            let response = answer.await?;
            call.saw(response.headers());
            // A status in the headers is the whole answer (trailers-only): counted before the
            // client can see it, as a status in trailers is.
            let call = call.code.is_none().then_some(call);
            Ok(response.map(|body| Timed {
                body: Box::pin(body),
                call,
            }))
        })
    }
}

/// A call not yet counted: counted when it drops, with the code it ended with.
struct Ongoing {
    calls: Calls,
    method: Arc<str>,
    start: Instant,
    /// `None` until a status is seen; a call dropped then was cancelled.
    code: Option<&'static str>,
}

impl Ongoing {
    fn saw(&mut self, headers: &HeaderMap) {
        if let Some(status) = headers.get("grpc-status") {
            self.code = Some(code_name(status.as_bytes()));
        }
    }
}

impl Drop for Ongoing {
    fn drop(&mut self) {
        let method = self.method.clone();
        let code = self.code.unwrap_or("Cancelled");
        self.calls
            .requests
            .get_or_create(&CallLabels {
                method: method.clone(),
                code,
            })
            .inc();
        self.calls
            .durations
            .get_or_create(&MethodLabel { method })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// A gRPC status code as grpc-go names it (`OK`, `NotFound`), the name other exporters use.
fn code_name(status: &[u8]) -> &'static str {
    use tonic::Code::*;
    match tonic::Code::from_bytes(status) {
        Ok => "OK",
        Cancelled => "Cancelled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

/// A response body that counts its call when it ends or is dropped.
pub(crate) struct Timed<B> {
    body: Pin<Box<B>>,
    call: Option<Ongoing>,
}

impl<B: Body> Body for Timed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = ready!(self.body.as_mut().poll_frame(cx));
        match &frame {
            // The status, the last frame of a call: counted before it reaches the client, so
            // that a scrape after the call ended (as the client saw it) finds it counted.
            Some(Ok(f)) => {
                if let Some(trailers) = f.trailers_ref()
                    && let Some(mut call) = self.call.take()
                {
                    call.saw(trailers);
                    call.code.get_or_insert("Unknown");
                }
            }
            // The end without a status, or an error that ends the body.
            Some(Err(_)) | None => {
                if let Some(mut call) = self.call.take() {
                    call.code.get_or_insert("Unknown");
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_method_is_known_and_a_made_up_one_is_other() {
        let mut registry = Registry::default();
        let calls = Calls::new(&mut registry);
        assert_eq!(
            &*calls.method("/hyperd.v1.ImageService/Load"),
            "/hyperd.v1.ImageService/Load"
        );
        assert_eq!(
            &*calls.method("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        assert_eq!(&*calls.method("/hyperd.v1.ImageService/Nope"), "other");
    }

    #[test]
    fn codes_are_named_as_grpc_go_names_them() {
        assert_eq!(code_name(b"0"), "OK");
        assert_eq!(code_name(b"5"), "NotFound");
        assert_eq!(code_name(b"junk"), "Unknown");
    }
}
