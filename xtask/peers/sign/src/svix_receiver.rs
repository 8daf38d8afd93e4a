//! The `receiver` suite's svix peer: an axum server on a one-thread runtime whose only handler
//! reads the body and verifies the request with the `svix` crate (204 when it verifies, 401
//! otherwise), nothing else. Usage: `svix-receiver <whsec_ secret>`; prints the port it listens
//! on (127.0.0.1) on the first line of stdout.

use std::io::Write;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};

fn main() {
    let secret = std::env::args().nth(1).expect("usage: svix-receiver <whsec_ secret>");
    let wh = Arc::new(svix::webhooks::Webhook::new(&secret).expect("a svix secret"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("local address").port();
        let mut out = std::io::stdout();
        writeln!(out, "{port}").expect("stdout");
        out.flush().expect("stdout");
        let handler = move |headers: HeaderMap, body: bytes::Bytes| {
            let ok = wh.verify(&body, &headers).is_ok();
            async move { if ok { StatusCode::NO_CONTENT } else { StatusCode::UNAUTHORIZED } }
        };
        let app = axum::Router::new().route("/webhook", axum::routing::post(handler));
        axum::serve(l, app).await.expect("serve");
    });
}
