//! [`api_idempotency`]: the receiver's `ApiIdempotencyLayer` around a warp filter.
//!
//! warp has no middleware of its own, so the wrapped filter is turned into a tower service
//! (`warp::service`) and the receiver's layer runs around it: one implementation of the
//! claim, fingerprint, replay and store logic for every framework.

use std::convert::Infallible;

use bytes::{Buf, Bytes};
use futures_util::{Stream, TryStreamExt};
use hookwire_receiver::ApiIdempotencyLayer;
use http_body::Frame;
use http_body_util::{BodyExt, Either, StreamBody};
use tower_layer::Layer;
use tower_service::Service;
use warp::http::{HeaderMap, Method, Request, Response, StatusCode};
use warp::path::FullPath;
use warp::{Filter, Reply};

/// Runs `filter` behind `layer`: `POST`/`PUT`/`PATCH` requests (configurable on the layer) that
/// carry an `Idempotency-Key` reach `filter` at most once per key and caller; duplicates get
/// the stored response with `Idempotent-Replayed: true`, a reused key with another request a
/// `422`, a duplicate while the first still runs a `409` with `Retry-After`.
///
/// `filter` sees the request's method, path, query, headers and body (not the peer address).
/// Its rejections are rendered inside the wrapper, as `warp::serve` would, so wrap the whole
/// route tree (with its `recover`), not one branch of an `or`.
pub fn api_idempotency<F, R>(
    layer: ApiIdempotencyLayer,
    filter: F,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone
where
    F: Filter<Extract = (R,), Error = warp::Rejection> + Clone + Send + Sync + 'static,
    R: Reply,
{
    let service = layer.layer(warp::service(filter));
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::body::stream().map(frames))
        .and_then(
            move |method: Method, path: FullPath, query: String, headers: HeaderMap, body| {
                let service = service.clone();
                async move {
                    let uri = if query.is_empty() {
                        path.as_str().to_owned()
                    } else {
                        format!("{}?{query}", path.as_str())
                    };
                    let Ok(mut req) = Request::builder().method(method).uri(uri).body(body) else {
                        return Ok::<_, Infallible>(StatusCode::BAD_REQUEST.into_response());
                    };
                    *req.headers_mut() = headers;
                    // The inner filter runs on its own task: warp polls one route at a time.
                    let task = tokio::spawn(ready_call(service, req));
                    let (parts, body) = match task.await {
                        Ok(Ok(resp)) => resp.into_parts(),
                        Ok(Err(e)) => match e {},
                        // The inner filter panicked; its claim was released on the way.
                        Err(_) => return Ok(StatusCode::INTERNAL_SERVER_ERROR.into_response()),
                    };
                    Ok(match body {
                        Either::Right(body) => Response::from_parts(parts, body),
                        Either::Left(full) => {
                            let bytes = match full.collect().await {
                                Ok(c) => c.to_bytes(),
                                Err(e) => match e {},
                            };
                            Response::from_parts(parts, bytes).into_response()
                        }
                    })
                }
            },
        )
}

/// warp's body stream as an `http_body::Body`, so the layer can read (or pass on) the body.
fn frames<S, D>(stream: S) -> StreamBody<impl Stream<Item = Result<Frame<Bytes>, warp::Error>>>
where
    S: Stream<Item = Result<D, warp::Error>>,
    D: Buf,
{
    StreamBody::new(stream.map_ok(|mut b| Frame::data(b.copy_to_bytes(b.remaining()))))
}

/// Waits for `service` to be ready, then calls it (the tower contract).
async fn ready_call<S, Req>(mut service: S, req: Req) -> Result<S::Response, S::Error>
where
    S: Service<Req>,
{
    std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
    service.call(req).await
}
