//! [`ResponseFuture`]: the admission flow as a state machine, so the hot path (in-process
//! store) allocates no boxed future; only a store that waits on I/O is boxed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{Either, Full};
use tower_service::Service;

use super::VerifyBody;
use crate::check::Prepared;
use crate::{Check, ClaimGuard, Finalized, Gate, LimitedBody, Rejection};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<B, F, R> {
        // Refused before reading (a declared length over the limit).
        Refused { rejection: Option<Rejection> },
        // Reading the body under the limit.
        Reading { #[pin] body: B, acc: Option<LimitedBody> },
        // Waiting for a store that does I/O to answer the claim.
        Claiming { fut: BoxFuture<Check>, body: Option<Bytes> },
        // The inner service runs.
        Calling { #[pin] fut: F },
        // Waiting for a store that does I/O to finish the claim.
        Finishing { fut: BoxFuture<Finalized>, resp: Option<R> },
    }
}

pin_project_lite::pin_project! {
    /// The future of [`super::Verify`].
    pub struct ResponseFuture<B, S>
    where
        S: Service<Request<Full<Bytes>>>,
    {
        #[pin]
        state: State<B, S::Future, S::Response>,
        inner: Option<S>,
        gate: Gate,
        parts: Option<Parts>,
        // Held while the inner service runs: dropping the future (client gone) or unwinding
        // from a panic drops it, which releases the key.
        guard: Option<ClaimGuard>,
    }
}

impl<B, S> std::fmt::Debug for ResponseFuture<B, S>
where
    S: Service<Request<Full<Bytes>>>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<B: Body, S: Service<Request<Full<Bytes>>>> ResponseFuture<B, S> {
    pub(super) fn new(req: Request<B>, inner: S, gate: Gate) -> Self {
        let (parts, body) = req.into_parts();
        let state = match LimitedBody::new(gate.max_body_len(), Some(body.size_hint().lower())) {
            Ok(acc) => State::Reading {
                body,
                acc: Some(acc),
            },
            Err(r) => State::Refused { rejection: Some(r) },
        };
        Self {
            state,
            inner: Some(inner),
            gate,
            parts: Some(parts),
            guard: None,
        }
    }
}

fn own<R>(r: http::Response<Full<Bytes>>) -> Response<VerifyBody<R>> {
    r.map(Either::Left)
}

impl<B, S, ResBody> Future for ResponseFuture<B, S>
where
    B: Body,
    B::Data: Into<Bytes>,
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
{
    type Output = Result<Response<VerifyBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let check = match this.state.as_mut().project() {
                StateProj::Refused { rejection } => {
                    let r = rejection.take().unwrap_or_else(Rejection::bad_request);
                    return Poll::Ready(Ok(own(r.to_response())));
                }
                StateProj::Reading { body, acc } => {
                    let Some(a) = acc else {
                        return Poll::Ready(Ok(own(Rejection::bad_request().to_response())));
                    };
                    match ready!(body.poll_frame(cx)) {
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data()
                                && let Err(r) = a.push(data.into())
                            {
                                return Poll::Ready(Ok(own(r.to_response())));
                            }
                            // Trailers carry nothing to verify.
                            continue;
                        }
                        Some(Err(_)) => {
                            return Poll::Ready(Ok(own(Rejection::bad_request().to_response())));
                        }
                        None => {}
                    }
                    let bytes = acc.take().map(LimitedBody::finish).unwrap_or_default();
                    let Some(parts) = this.parts.as_ref() else {
                        return Poll::Ready(Ok(own(Rejection::bad_request().to_response())));
                    };
                    match this.gate.prepare(&parts.headers, &bytes) {
                        Prepared::Known(done) => (done, bytes),
                        Prepared::Claim(pending) => match pending.claim_now() {
                            Prepared::Known(done) => (done, bytes),
                            Prepared::Claim(pending) => {
                                this.state.set(State::Claiming {
                                    fut: Box::pin(pending.claim()),
                                    body: Some(bytes),
                                });
                                continue;
                            }
                        },
                    }
                }
                StateProj::Claiming { fut, body } => {
                    let check = ready!(fut.as_mut().poll(cx));
                    (check, body.take().unwrap_or_default())
                }
                StateProj::Calling { fut } => {
                    let resp = ready!(fut.poll(cx))?;
                    let Some(guard) = this.guard.take() else {
                        return Poll::Ready(Ok(resp.map(Either::Right)));
                    };
                    match guard.finish_now(resp.status().as_u16()) {
                        Ok(_) => return Poll::Ready(Ok(resp.map(Either::Right))),
                        Err(fut) => {
                            this.state.set(State::Finishing {
                                fut,
                                resp: Some(resp),
                            });
                            continue;
                        }
                    }
                }
                StateProj::Finishing { fut, resp } => {
                    ready!(fut.as_mut().poll(cx));
                    return match resp.take() {
                        Some(r) => Poll::Ready(Ok(r.map(Either::Right))),
                        None => Poll::Ready(Ok(own(Rejection::bad_request().to_response()))),
                    };
                }
            };
            // The check is known: answer it, or hand the request to the inner service.
            let (check, body) = check;
            let admission = match check {
                Check::Reject(r) => return Poll::Ready(Ok(own(r.to_response()))),
                Check::Replay(_) => return Poll::Ready(Ok(own(crate::replay_http_response()))),
                Check::Proceed(a) => a,
            };
            let (Some(mut parts), Some(mut inner)) = (this.parts.take(), this.inner.take()) else {
                return Poll::Ready(Ok(own(Rejection::bad_request().to_response())));
            };
            // Moved, not cloned: the key is handed to the handler as is.
            let crate::Admission {
                key,
                verified,
                guard,
            } = admission;
            parts.extensions.insert(crate::Admitted {
                key,
                scheme: verified.map(|v| v.scheme),
            });
            *this.guard = guard;
            let fut = inner.call(Request::from_parts(parts, Full::new(body)));
            this.state.set(State::Calling { fut });
        }
    }
}
