//! [`ApiIdempotencyFuture`]: one keyed request from claim to commit (or release).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Either, Full};
use tower_service::Service;

use super::{ApiIdempotencyBody, ApiIdempotencyLayer, ApiRequestBody};
use crate::{Rejection, read_limited};

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The future of [`super::ApiIdempotency`]: resolves to the inner service's response (stored
/// on the way when it qualifies), a replay, or a refusal (400, 409, 413, 422, 503).
pub struct ApiIdempotencyFuture<ResBody, E> {
    inner: Boxed<Result<Response<ApiIdempotencyBody<ResBody>>, E>>,
}

impl<ResBody, E> std::fmt::Debug for ApiIdempotencyFuture<ResBody, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiIdempotencyFuture")
            .finish_non_exhaustive()
    }
}

impl<ResBody, E> Future for ApiIdempotencyFuture<ResBody, E> {
    type Output = Result<Response<ApiIdempotencyBody<ResBody>>, E>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

fn own<B>(r: Response<Bytes>) -> Response<ApiIdempotencyBody<B>> {
    r.map(|b| Either::Left(Full::new(b)))
}

pub(super) fn run<S, B, ResBody>(
    mut inner: S,
    layer: ApiIdempotencyLayer,
    req: Request<B>,
) -> ApiIdempotencyFuture<ResBody, S::Error>
where
    S: Service<Request<ApiRequestBody<B>>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Into<Bytes> + Send,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: Send,
{
    let fut = async move {
        let (parts, body) = req.into_parts();
        let key = match layer.key(&parts) {
            Ok(Some(k)) => k,
            Ok(None) => {
                let req = Request::from_parts(parts, Either::Right(body));
                return inner.call(req).await.map(|r| r.map(Either::Right));
            }
            Err(r) => return Ok(r.to_response().map(Either::Left)),
        };
        let body = match read_limited(body, layer.request_body_limit()).await {
            Ok(b) => b,
            Err(r) => return Ok(r.to_response().map(Either::Left)),
        };
        let run = match layer.begin(&parts, &key, &body).await {
            Ok(run) => run,
            Err(answer) => return Ok(own(answer)),
        };
        let req = Request::from_parts(parts, Either::Left(Full::new(body)));
        let handled = run
            .renew_while(async {
                let resp = inner.call(req).await?;
                let (rparts, rbody) = resp.into_parts();
                if !run.keeps(rparts.status, rbody.size_hint().upper()) {
                    return Ok(Err(Response::from_parts(rparts, Either::Right(rbody))));
                }
                Ok(Ok((rparts, rbody.collect().await.map(|c| c.to_bytes()))))
            })
            .await?;
        match handled {
            Err(passed_through) => {
                run.release().await;
                Ok(passed_through)
            }
            Ok((rparts, Ok(bytes))) => {
                run.store(rparts.status, &rparts.headers, &bytes).await;
                Ok(Response::from_parts(rparts, Either::Left(Full::new(bytes))))
            }
            Ok((_, Err(_))) => {
                run.release().await;
                Ok(Rejection::handler_failed(None)
                    .to_response()
                    .map(Either::Left))
            }
        }
    };
    ApiIdempotencyFuture {
        inner: Box::pin(fut),
    }
}
