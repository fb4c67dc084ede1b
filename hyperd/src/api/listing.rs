//! List and ListStream: the listing read from the store one page at a time, so that neither the
//! store nor hyperd holds the whole of a large listing, and no answer is larger than a default
//! client receives.

use hyperd_proto::prost::Message;
use hyperd_proto::v1;
use store::{ListFilter, ListPage, MAX_PAGE, Store};
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::convert;
use super::status::{self, to_status};
use super::stream::{Answers, until_shutdown};

/// Largest List answer without `page_size`: under the 4 MiB that grpcio, grpc-go and grpcurl
/// receive by default, with room to spare for framing.
pub(super) const WHOLE_ANSWER_MAX: usize = 3 << 20;

/// Rows read for a List without `page_size`: more than [`WHOLE_ANSWER_MAX`] holds (a row
/// encodes to at least ~150 bytes), so reading no further cannot change the answer.
const WHOLE_ROWS: usize = 25_000;

/// A ListRequest, checked.
struct Query {
    filter: ListFilter,
    /// The token the listing resumes after; `None`: from the first row.
    after: Option<String>,
    /// Rows per answer or page; 0: the store's most.
    page_size: usize,
}

fn query(req: v1::ListRequest) -> Result<Query, Status> {
    let page_size = usize::try_from(req.page_size)
        .map_err(|_| status::invalid_request(format!("page_size {} is negative", req.page_size)))?;
    Ok(Query {
        filter: ListFilter::parse(&req.filters).map_err(to_status)?,
        after: convert::non_empty(req.page_token),
        page_size,
    })
}

/// One page, read on a blocking thread: it is database reads.
async fn page(
    store: &Store,
    filter: &ListFilter,
    after: Option<String>,
    limit: usize,
) -> Result<v1::ListResponse, Status> {
    let (store, filter) = (store.clone(), filter.clone());
    let read = move || store.images().list_page(&filter, after.as_deref(), limit);
    let page = tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| status::internal(format!("listing task failed: {e}")))?
        .map_err(to_status)?;
    Ok(response(page))
}

fn response(page: ListPage) -> v1::ListResponse {
    v1::ListResponse {
        images: page.images.iter().map(convert::image).collect(),
        next_page_token: page.next.unwrap_or_default(),
    }
}

/// List: one page when the request sets `page_size`, else the whole listing in one answer.
pub(super) async fn list(store: &Store, req: v1::ListRequest) -> Result<v1::ListResponse, Status> {
    let q = query(req)?;
    match q.page_size {
        0 => whole(store, q).await,
        n => page(store, &q.filter, q.after, n).await,
    }
}

/// Every row after `q.after` in one answer, from one read of the store; once it passes
/// [`WHOLE_ANSWER_MAX`], LISTING_TOO_LARGE with the token that follows the first page of
/// `MAX_PAGE` rows. A listing of one page is answered whatever its size: it is what a page of
/// ListStream would be.
async fn whole(store: &Store, q: Query) -> Result<v1::ListResponse, Status> {
    let (reader, filter, after) = (store.clone(), q.filter.clone(), q.after.clone());
    let read = move || {
        reader
            .images()
            .list_rows(&filter, after.as_deref(), WHOLE_ROWS)
    };
    let rows = tokio::task::spawn_blocking(read)
        .await
        .map_err(|e| status::internal(format!("listing task failed: {e}")))?
        .map_err(to_status)?;
    let one_page = rows.images.len() <= MAX_PAGE && rows.next.is_none();
    let answer = response(rows);
    if one_page || (answer.next_page_token.is_empty() && answer.encoded_len() <= WHOLE_ANSWER_MAX) {
        return Ok(answer);
    }
    let first = page(store, &q.filter, q.after, MAX_PAGE).await?;
    Err(status::listing_too_large(first.next_page_token))
}

/// ListStream: the listing as pages, each read from the store when the client has taken the one
/// before (the answer stream is polled only as its messages go out). A client that hangs up
/// drops the stream, and with it the reading; shutdown ends it with UNAVAILABLE.
pub(super) fn list_stream(
    store: Store,
    req: v1::ListRequest,
    shutdown: CancellationToken,
) -> Result<Answers<v1::ListResponse>, Status> {
    let q = query(req)?;
    // The state is the token to resume after, `None` once the last page went.
    let pages = futures_util::stream::try_unfold(Some(q.after), move |after| {
        let (store, filter) = (store.clone(), q.filter.clone());
        async move {
            let Some(after) = after else { return Ok(None) };
            let page = page(&store, &filter, after, q.page_size).await?;
            let next = convert::non_empty(page.next_page_token.clone()).map(Some);
            Ok(Some((page, next)))
        }
    });
    Ok(until_shutdown(pages, shutdown))
}
