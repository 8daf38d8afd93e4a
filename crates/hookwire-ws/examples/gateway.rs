//! An event gateway on 127.0.0.1:8080: WebSocket rooms at `/ws` and SSE at `/events`, with the
//! demo authenticator (`?token=user@org`; demo only) and an `order.*` event every second,
//! alternating between organizations `acme` and `globex`.
//!
//! ```text
//! cargo run -p hookwire-ws --example gateway --features sse
//! curl -N 'http://127.0.0.1:8080/events?filter=order.*&token=ann@acme'   # only acme's events
//! ```

use std::time::Duration;

use hookwire_core::Event;
use hookwire_ws::{DemoAuthenticator, EventGateway, ExposeStats, WsGateway};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gw = EventGateway::builder()
        .authenticator(DemoAuthenticator)
        .ws_options(
            WsGateway::builder()
                .resources(["order"])
                .expose_stats(ExposeStats::Authenticated),
        )
        .build()?;
    let publisher = gw.clone();
    tokio::spawn(async move {
        for i in 0u64.. {
            let org = if i % 2 == 0 { "acme" } else { "globex" };
            publisher.publish(&Event::new("order.created", json!({"n": i})).with_organization(org));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    axum::serve(listener, gw.router::<()>()).await?;
    Ok(())
}
