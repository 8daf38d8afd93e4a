#![doc = include_str!("../../../docs/hookwire-receiver.md")]

mod api_idempotency;
mod body;
mod check;
mod error;
mod guard;
mod receiver;
mod rejection;
mod replay;
#[cfg(feature = "server")]
pub mod server;
mod verify;

#[cfg(feature = "redis")]
mod redis_store;

pub use api_idempotency::{
    API_IDEMPOTENCY_HEADER, ApiIdempotency, ApiIdempotencyBody, ApiIdempotencyFuture,
    ApiIdempotencyLayer, ApiRequestBody, ApiRun, DEFAULT_API_MAX_KEY_LEN,
    DEFAULT_API_MAX_STORED_BODY, IdentityFn,
};
pub use body::{DEFAULT_RECEIVER_MAX_BODY, LimitedBody, read_limited, read_stream};
pub use check::{
    Admission, Admitted, Check, CheckOptions, Gate, MAX_KEY_LEN, check, extract_idempotency_key,
};
pub use error::{Error, ErrorKind, Result};
pub use guard::{ClaimGuard, Finalized};
pub use hookwire_core::{IdempotencyConfig, IdempotencyStore, MemoryStore};
pub use receiver::{Context, Receiver, ReceiverBuilder, receiver};
pub use rejection::{REPLAYED_HEADER, Reason, Rejection, replay_http_response};
pub use replay::{
    DEFAULT_REPLAY_ENTRIES, DEFAULT_UNTIMED_REPLAY_HORIZON, Fingerprint, ReplayCache,
};
#[cfg(feature = "server")]
pub use server::Server;
pub use verify::{ResponseFuture, Verify, VerifyBody, VerifyLayer};

#[cfg(feature = "redis")]
pub use redis_store::RedisIdempotencyStore;
