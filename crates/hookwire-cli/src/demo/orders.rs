//! The demo's order flow: every order the demo creates is a run of the durable `order`
//! workflow (`hookwire-workflow`): `created` → `payment` (waits for the `payment` signal, with
//! a timeout) → `pack` (a durable sleep) → `ship`.
//!
//! Orders come from two places. The generator's orders start a run when the board applies their
//! `order.created`, and their `order.paid` sends the run its `payment` signal, so they finish by
//! themselves. Orders created on the page (`POST /workflows/order/runs`) wait for a person: the
//! page's Pay, Cancel and Rewind buttons call the workflow routes. The routes are served under
//! [`PREFIX`] with the demo's token (`Authorization: Bearer user@org`, the page's WebSocket
//! token): no token is 401, and a caller sees its own organization's runs only. Every transition
//! is published on the bus (`workflow.order.<transition>`) and to the WebSocket gateway's
//! `workflow` room, scoped to the run's organization, which is how the page follows runs live.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use hookwire_core::{BoxFuture, Event, NonRetryableError};
use hookwire_events::Bus;
use hookwire_jobs::JobBackend;
use hookwire_workflow::{
    BoxError, Caller, Engine, ErrorKind, Next, RedisRunStore, Resumed, Routes, Scope, StartOptions,
    Step, TransitionSink, Wait, Workflow,
};
use hookwire_ws::WsGateway;
use serde_json::{Value, json};

/// The workflow id (the CLI guide and the page name it).
pub(crate) const WORKFLOW: &str = "order";
/// Where the workflow routes are mounted.
pub(crate) const PREFIX: &str = "/workflows";
/// The signal that pays an order, and the name of the wait step that takes it.
pub(crate) const PAYMENT: &str = "payment";
/// The WebSocket room transitions go to (`workflow.order.<transition>` → `workflow`).
pub(crate) const ROOM: &str = "workflow";
/// The resume key of the generator's payments: a redelivered `order.paid` pays once.
const GENERATOR_PAYMENT: &str = "generator-paid";
/// Longest demo token (`user@org`) accepted on the routes, like the page's `?user=`.
const MAX_TOKEN_LEN: usize = 64;

/// How the order flow is timed (`hookwire demo --ship-after-ms --payment-timeout-s`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlowOptions {
    /// The `pack` sleep between payment and shipping.
    pub(crate) ship_after: Duration,
    /// How long `payment` waits before the run fails.
    pub(crate) payment_timeout: Duration,
}

/// The `order` definition.
fn definition(opts: FlowOptions) -> Result<Workflow, hookwire_workflow::Error> {
    Workflow::builder(WORKFLOW, 1)
        .name("order: created → payment → pack → ship")
        .step(Step::new("created", |order: Value, _| async move {
            Ok::<_, BoxError>(Next::output(order))
        }))
        .wait(PAYMENT, Wait::signal(PAYMENT).timeout(opts.payment_timeout))
        .sleep("pack", opts.ship_after)
        .step(Step::new("ship", |paid: Resumed<Value>, _| async move {
            match paid {
                Resumed::Signal(payment) => {
                    Ok::<_, BoxError>(Next::output(json!({ "shipped": true, "payment": payment })))
                }
                // Nothing to ship: the run fails at once (no retries) and says why.
                Resumed::Timeout => Err(Box::new(NonRetryableError::new(
                    "the payment did not arrive in time",
                )) as BoxError),
            }
        }))
        .build()
}

/// Transitions go to the bus (the issue's `workflow.<id>.<transition>` events) and to the
/// WebSocket gateway's `workflow` room, org-scoped (with `--redis` the gateway's own fan-out
/// carries them to every node's browsers).
#[derive(Debug)]
struct DemoSink {
    bus: Bus,
    ws: WsGateway,
}

impl TransitionSink for DemoSink {
    fn publish<'a>(&'a self, event: &'a Event) -> BoxFuture<'a, hookwire_workflow::Result<()>> {
        Box::pin(async move {
            self.ws.publish_to(ROOM, event);
            TransitionSink::publish(&self.bus, event).await
        })
    }
}

/// The order flow's engine.
#[derive(Clone)]
pub(crate) struct Orders {
    engine: Engine,
}

impl Orders {
    /// Builds the engine: runs in memory, or in Redis (and step jobs on the demo's Redis job
    /// backend) with `--redis`, so every demo process on that Redis operates the same runs.
    pub(crate) async fn start(
        opts: FlowOptions,
        redis: Option<(&str, Arc<dyn JobBackend>)>,
        bus: Bus,
        ws: WsGateway,
    ) -> Result<Self, Box<dyn Error>> {
        let mut b = Engine::builder()
            .workflow(definition(opts)?)
            .sink(DemoSink { bus, ws });
        if let Some((url, backend)) = redis {
            let store = RedisRunStore::connect(url)
                .await
                .map_err(|e| format!("redis (workflow runs): {e}"))?;
            b = b.store(store).jobs_backend(backend);
        }
        Ok(Self {
            engine: b.build().await?,
        })
    }

    /// The workflow routes under [`PREFIX`], behind the demo token.
    pub(crate) fn router(&self) -> Result<Router, hookwire_workflow::Error> {
        Routes::builder(self.engine.clone())
            .prefix(PREFIX)
            .authenticator(demo_caller)
            .build()
    }

    /// Follows one board event: `order.created` starts the order's run (the order id is the
    /// idempotency key, so a redelivered event starts nothing new), `order.paid` pays it.
    /// Errors only when a retry may help (the store or the engine is unavailable); a run that
    /// cannot take the payment any more (cancelled by someone on the page, timed out) is logged.
    pub(crate) async fn follow(&self, name: &str, payload: &Value) -> Result<(), String> {
        if name != "order.created" && name != "order.paid" {
            return Ok(());
        }
        let Some(order) = payload.get("order").and_then(Value::as_str) else {
            return Ok(());
        };
        let scope = match payload.get("organization").and_then(Value::as_str) {
            Some(org) => Scope::organization(org),
            None => Scope::All,
        };
        let opts = StartOptions::new().idempotency_key(order);
        let result = async {
            let run = self
                .engine
                .start(&scope, WORKFLOW, payload, opts)
                .await?
                .run;
            if name == "order.paid" {
                self.engine
                    .signal(&scope, &run.id, PAYMENT, payload, Some(GENERATOR_PAYMENT))
                    .await?;
            }
            Ok::<_, hookwire_workflow::Error>(())
        }
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::Store | ErrorKind::Shutdown) => {
                Err(format!("order {order}: {e}"))
            }
            Err(e) => {
                tracing::info!(target: "hookwire::demo", order, event = name, error = %e, "order run left as it is");
                Ok(())
            }
        }
    }

    /// Stops the engine's workers (running steps finish or are taken over later).
    pub(crate) async fn shutdown(&self) {
        self.engine.shutdown().await;
    }
}

/// The demo token on the routes: `Authorization: Bearer user@org` (what the page sends, and
/// what the WebSocket gateway's demo authenticator takes) acts in organization `org`. Anything
/// else is no caller: 401. Like the rest of the demo this is not authentication (anyone can
/// claim any organization); it shows where a real app's session check goes.
fn demo_caller(headers: &HeaderMap) -> Option<Caller> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.len() > MAX_TOKEN_LEN
        || token.chars().any(char::is_control)
    {
        return None;
    }
    let (user, org) = token.split_once('@')?;
    (!user.is_empty() && !org.is_empty()).then(|| Caller::in_organization(user, org))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        h
    }

    #[test]
    fn only_a_user_at_org_bearer_token_is_a_caller() {
        let ann = demo_caller(&bearer("Bearer ann@acme")).unwrap();
        assert_eq!(ann.scope.org(), Some("acme"));
        assert_eq!(ann.subject, "ann");
        assert!(demo_caller(&HeaderMap::new()).is_none());
        for bad in [
            "Bearer ann",
            "Bearer @acme",
            "Bearer ann@",
            "Basic ann@acme",
            "Bearer",
        ] {
            assert!(demo_caller(&bearer(bad)).is_none(), "{bad}");
        }
        let long = format!("Bearer {}@acme", "a".repeat(MAX_TOKEN_LEN));
        assert!(
            demo_caller(&bearer(&long)).is_none(),
            "over the length limit"
        );
    }
}
