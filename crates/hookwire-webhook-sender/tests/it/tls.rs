//! https end to end: a rustls server with a private CA; HTTP/2 when ALPN picks it, HTTP/1.1
//! otherwise; an untrusted certificate is a retryable failure.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hookwire_core::signing::{VerifyOptions, verify};
use hookwire_core::{Event, KeyRing, Scheme};
use hookwire_webhook_sender::{HyperClient, Webhook};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Runs openssl to make a CA and a leaf for 127.0.0.1/localhost; returns (ca.pem, leaf.pem,
/// leaf.key) paths.
fn certificates(dir: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let run = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"],
        &ec[..],
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=hookwire test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"],
        &ec[..],
        &[
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    (read("ca.pem"), read("leaf.pem"), read("leaf.key"))
}

struct TlsSink {
    url: String,
    ca: Vec<u8>,
    versions: Arc<Mutex<Vec<(http::Version, http::HeaderMap, Bytes)>>>,
    conns: Arc<AtomicUsize>,
}

/// A rustls acceptor for 127.0.0.1 offering h2 and http/1.1, and the CA that signed it.
fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, Vec<u8>) {
    let dir = hookwire_testkit::temp_dir("tls");
    let (ca, leaf, key) = certificates(&dir);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&leaf)
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(&key).unwrap();
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (tokio_rustls::TlsAcceptor::from(Arc::new(cfg)), ca)
}

async fn tls_sink() -> TlsSink {
    let (acceptor, ca) = tls_acceptor();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/hook", l.local_addr().unwrap());
    let versions: Arc<Mutex<Vec<(http::Version, http::HeaderMap, Bytes)>>> = Arc::default();
    let conns = Arc::new(AtomicUsize::new(0));
    let (v, c) = (Arc::clone(&versions), Arc::clone(&conns));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let (acceptor, v) = (acceptor.clone(), Arc::clone(&v));
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let v = Arc::clone(&v);
                    async move {
                        use http_body_util::BodyExt;
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        v.lock().unwrap().push((parts.version, parts.headers, body));
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::new(),
                        )))
                    }
                });
                let io = TokioIo::new(tls);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, svc)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                }
            });
        }
    });
    TlsSink {
        url,
        ca,
        versions,
        conns,
    }
}

async fn deliver_three(sink: &TlsSink, client: HyperClient) {
    let hook = Webhook::builder()
        .url(sink.url.clone())
        .secret("s3cret")
        .client(Arc::new(client))
        .build()
        .unwrap();
    for i in 0..3 {
        let e = Event::new("tls.test", serde_json::json!({ "i": i }));
        assert_eq!(hook.deliver(&e).await.unwrap().status, 200);
    }
}

#[tokio::test]
async fn https_uses_http2_when_the_server_offers_it_and_one_connection() {
    let sink = tls_sink().await;
    let client = HyperClient::builder()
        .add_root_certificates_pem(&sink.ca)
        .build()
        .unwrap();
    deliver_three(&sink, client).await;
    let seen = sink.versions.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for (v, headers, body) in &seen {
        assert_eq!(*v, http::Version::HTTP_2);
        verify(
            headers,
            body,
            &KeyRing::from("s3cret"),
            &VerifyOptions::new(Scheme::Hookwire),
        )
        .unwrap();
    }
    assert_eq!(
        sink.conns.load(Ordering::SeqCst),
        1,
        "the HTTP/2 connection is shared"
    );
}

#[tokio::test]
async fn https_stays_on_http1_keep_alive_when_http2_is_off() {
    let sink = tls_sink().await;
    let client = HyperClient::builder()
        .add_root_certificates_pem(&sink.ca)
        .http2(false)
        .title_case_headers(true)
        .build()
        .unwrap();
    deliver_three(&sink, client).await;
    let seen = sink.versions.lock().unwrap().clone();
    assert!(seen.iter().all(|(v, _, _)| *v == http::Version::HTTP_11));
    assert_eq!(sink.conns.load(Ordering::SeqCst), 1, "keep-alive over TLS");
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_retryable_failure() {
    let sink = tls_sink().await;
    let hook = Webhook::builder()
        .url(sink.url.clone())
        .client(Arc::new(HyperClient::new()))
        .build()
        .unwrap();
    let e = hook
        .deliver(&Event::new("x", serde_json::Value::Null))
        .await
        .unwrap_err();
    assert!(e.is_retryable());
    assert_eq!(e.status(), 0);
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    assert!(sink.versions.lock().unwrap().is_empty());
}

/// A hostile HTTP/2 endpoint: answers each request with `interim` `100 Continue` HEADERS frames,
/// then a 200. Returns its URL and CA.
async fn interim_h2_sink(interim: usize) -> (String, Vec<u8>) {
    let (acceptor, ca) = tls_acceptor();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/hook", l.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut conn) = h2::server::handshake(tls).await else {
                    return;
                };
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    tokio::spawn(async move {
                        for _ in 0..interim {
                            let hint = http::Response::builder().status(100).body(()).unwrap();
                            if respond.send_informational(hint).is_err() {
                                return;
                            }
                            tokio::task::yield_now().await;
                        }
                        let _ = respond.send_response(http::Response::new(()), true);
                    });
                }
            });
        }
    });
    (url, ca)
}

fn hook_for(url: &str, ca: &[u8]) -> Webhook {
    let client = HyperClient::builder()
        .add_root_certificates_pem(ca)
        .build()
        .unwrap();
    Webhook::builder()
        .url(url)
        .client(Arc::new(client))
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap()
}

#[tokio::test]
async fn an_http2_endpoint_streaming_interim_responses_is_cut_off() {
    let (url, ca) = interim_h2_sink(10_000_000).await;
    let e = hook_for(&url, &ca)
        .deliver(&Event::new("x", serde_json::Value::Null))
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert!(
        e.to_string().contains("interim (1xx) responses"),
        "not cut off by the interim limit: {e}"
    );
}

#[tokio::test]
async fn four_interim_responses_over_http2_are_skipped_and_a_fifth_is_refused() {
    let (url, ca) = interim_h2_sink(4).await;
    let hook = hook_for(&url, &ca);
    for _ in 0..3 {
        let sent = hook
            .deliver(&Event::new("x", serde_json::Value::Null))
            .await
            .unwrap();
        assert_eq!(sent.status, 200);
    }
    let (url, ca) = interim_h2_sink(5).await;
    let e = hook_for(&url, &ca)
        .deliver(&Event::new("x", serde_json::Value::Null))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("more than 4 interim"), "{e}");
}
