//! A headless-Chromium driver for browser tests: launches Debian's `chromium` with a fresh
//! profile and speaks the Chrome DevTools Protocol over one WebSocket.
//!
//! Only the browser-level WebSocket is used (its address is read from the `DevToolsActivePort`
//! file in the profile directory), so no `/json` HTTP endpoints are involved. A page target is
//! created with `Target.createTarget` and driven through a flattened session.
//!
//! ```no_run
//! # async fn run() -> Result<(), String> {
//! let page = hookwire_testkit::browser::Chromium::open("http://127.0.0.1:8080/").await?;
//! page.wait_for("document.readyState === 'complete'", std::time::Duration::from_secs(10)).await?;
//! assert_eq!(page.eval("1 + 1").await?, serde_json::json!(2));
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// Where `chromium` is: `$HOOKWIRE_CHROMIUM`, else `chromium` on `PATH`.
fn chromium_binary() -> String {
    std::env::var("HOOKWIRE_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

/// One headless Chromium with one page. Killed, and its profile removed, on drop.
#[derive(Debug)]
pub struct Chromium {
    child: Child,
    dir: PathBuf,
    out: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: AtomicU64,
    session: String,
    reader: tokio::task::JoinHandle<()>,
}

impl Chromium {
    /// Launches Chromium and opens `url` in a new page. Fails with a message naming the
    /// package when the binary is missing.
    pub async fn open(url: &str) -> Result<Self, String> {
        let dir = crate::temp_dir("chromium");
        let child = Command::new(chromium_binary())
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-extensions",
                "--disable-sync",
                "--metrics-recording-only",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", dir.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start chromium ({e}); install the Debian package `chromium`")
            })?;
        // From here on, a failure must still kill the child: build the guard first.
        let (out, rx) = mpsc::unbounded_channel();
        let mut me = Self {
            child,
            dir,
            out,
            pending: Arc::default(),
            next_id: AtomicU64::new(1),
            session: String::new(),
            reader: tokio::spawn(async {}),
        };
        let ws_url = me.devtools_url().await?;
        let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
            .await
            .map_err(|e| format!("devtools websocket {ws_url}: {e}"))?;
        let (mut sink, mut stream) = ws.split();
        let mut rx: mpsc::UnboundedReceiver<Message> = rx;
        let pending = Arc::clone(&me.pending);
        me.reader = tokio::spawn(async move {
            loop {
                tokio::select! {
                    m = rx.recv() => match m {
                        Some(m) => if sink.send(m).await.is_err() { break },
                        None => break,
                    },
                    m = stream.next() => match m {
                        Some(Ok(Message::Text(t))) => dispatch(&pending, t.as_str()),
                        Some(Ok(_)) => {}
                        _ => break,
                    },
                }
            }
            // Fail every waiting command instead of leaving it hanging.
            for (_, tx) in lock(&pending).drain() {
                let _ = tx.send(Err("devtools connection closed".to_owned()));
            }
        });
        let target = me
            .browser_command("Target.createTarget", json!({"url": "about:blank"}))
            .await?;
        let target_id = target["targetId"].as_str().unwrap_or_default().to_owned();
        let attached = me
            .browser_command(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await?;
        me.session = attached["sessionId"]
            .as_str()
            .ok_or("attachToTarget returned no sessionId")?
            .to_owned();
        me.command("Page.enable", json!({})).await?;
        me.command("Runtime.enable", json!({})).await?;
        me.navigate(url).await?;
        Ok(me)
    }

    async fn devtools_url(&mut self) -> Result<String, String> {
        let file = self.dir.join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                let mut lines = text.lines();
                if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                    return Ok(format!("ws://127.0.0.1:{}{}", port.trim(), path.trim()));
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("chromium exited early: {status}"));
            }
            if Instant::now() > deadline {
                return Err("chromium did not write DevToolsActivePort within 30 s".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn send(
        &self,
        method: &str,
        params: Value,
        session: Option<&str>,
    ) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        self.out
            .send(Message::Text(msg.to_string().into()))
            .map_err(|_| "devtools connection closed".to_owned())?;
        match tokio::time::timeout(Duration::from_secs(60), rx).await {
            Ok(Ok(r)) => r.map_err(|e| format!("{method}: {e}")),
            Ok(Err(_)) => Err(format!("{method}: connection closed")),
            Err(_) => {
                lock(&self.pending).remove(&id);
                Err(format!("{method}: no answer within 60 s"))
            }
        }
    }

    async fn browser_command(&self, method: &str, params: Value) -> Result<Value, String> {
        self.send(method, params, None).await
    }

    /// Sends a DevTools command to the page and returns its `result`.
    pub async fn command(&self, method: &str, params: Value) -> Result<Value, String> {
        self.send(method, params, Some(&self.session)).await
    }

    /// Navigates the page to `url` and waits for the document to finish loading.
    pub async fn navigate(&self, url: &str) -> Result<(), String> {
        let r = self.command("Page.navigate", json!({"url": url})).await?;
        if let Some(e) = r.get("errorText").and_then(Value::as_str) {
            return Err(format!("navigate {url}: {e}"));
        }
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(30),
        )
        .await
    }

    /// Evaluates `js` in the page (promises are awaited) and returns its value as JSON.
    /// A thrown exception is an error carrying its description.
    pub async fn eval(&self, js: &str) -> Result<Value, String> {
        let r = self
            .command(
                "Runtime.evaluate",
                json!({"expression": js, "awaitPromise": true, "returnByValue": true}),
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            let text = ex["exception"]["description"]
                .as_str()
                .or_else(|| ex["text"].as_str())
                .unwrap_or("exception");
            return Err(format!("js threw: {text}"));
        }
        Ok(r["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Polls `js_predicate` every 50 ms until it is truthy; errors after `timeout` with the
    /// last value seen.
    pub async fn wait_for(&self, js_predicate: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.eval(&format!("!!({js_predicate})")).await {
                Ok(Value::Bool(true)) => return Ok(()),
                Ok(v) => v,
                Err(e) => Value::String(e),
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out waiting for `{js_predicate}` (last: {last})"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves a PNG screenshot of the page to `path`.
    pub async fn screenshot(&self, path: impl AsRef<Path>) -> Result<(), String> {
        let r = self
            .command("Page.captureScreenshot", json!({"format": "png"}))
            .await?;
        let data = r["data"].as_str().ok_or("no screenshot data")?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| e.to_string())?;
        std::fs::write(path.as_ref(), png).map_err(|e| e.to_string())
    }
}

fn dispatch(pending: &Pending, text: &str) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let Some(id) = v.get("id").and_then(Value::as_u64) else {
        return; // an event
    };
    if let Some(tx) = lock(pending).remove(&id) {
        let r = match v.get("error") {
            Some(e) => Err(e.to_string()),
            None => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
        };
        let _ = tx.send(r);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Drop for Chromium {
    fn drop(&mut self) {
        self.reader.abort();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
