//! `hookwire workflow`: list, show, signal, cancel and rewind workflow runs through a running
//! service's workflow routes (`hookwire_workflow::Routes`), or read runs straight from the
//! Redis run store.
//!
//! Over HTTP every request carries the credentials the routes require (`--token` as a bearer
//! token, or any `-H` header), and the answer's JSON is printed as one line. With `--redis`,
//! `runs` and `show` read the store itself (operator view: every organization); `signal`,
//! `cancel` and `rewind` need the service, because only its engine holds the workflow's code.
//! Exit codes: 0 success, 1 failed (refused by the service, not found, unreachable), 2 bad
//! arguments.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use hookwire_workflow::{RedisRunStore, RunQuery, RunStatus, RunStore};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::common::{block_on, failed, json_data, parse_header, usage_error};

/// One request's time limit.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read, in bytes.
const MAX_ANSWER: usize = 8 * 1024 * 1024;

/// Operate workflow runs through a service's workflow routes, or read them from Redis.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  hookwire workflow --url http://127.0.0.1:4000/workflows --token s3cret runs order --status waiting\n  hookwire workflow --url http://127.0.0.1:4000/workflows --token s3cret signal order run_01 payment --data '{\"paid\":true}'\n  hookwire workflow --redis redis://127.0.0.1:6379/ show order run_01"
)]
pub(crate) struct Args {
    /// The base URL of the workflow routes (their prefix), e.g. http://127.0.0.1:4000/workflows.
    #[arg(long, global = true, conflicts_with = "redis")]
    url: Option<String>,
    /// Sent as `Authorization: Bearer <TOKEN>`. Or set `HOOKWIRE_TOKEN` (the environment is not
    /// shown by `ps`, the command line is).
    #[arg(long, global = true, env = "HOOKWIRE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Extra request header `Name: value` (repeatable), e.g. another credential.
    #[arg(short = 'H', long = "header", global = true, value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Read runs from this Redis run store instead (`runs` and `show` only).
    #[arg(long, global = true)]
    redis: Option<String>,
    /// The run store's key prefix (`RedisRunStore::with_prefix`).
    #[arg(long, global = true, default_value = "hw:wf")]
    redis_prefix: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// One page of a workflow's runs.
    Runs {
        /// The workflow id.
        workflow: String,
        /// Only runs with this status (running, sleeping, waiting, paused, completed, failed,
        /// cancelled).
        #[arg(long)]
        status: Option<String>,
        /// Runs after this run id (the previous page's `next`).
        #[arg(long)]
        after: Option<String>,
        /// At most this many (1..=100).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=100))]
        limit: u64,
    },
    /// One run with its steps.
    Show {
        /// The workflow id.
        workflow: String,
        /// The run id.
        run: String,
    },
    /// Send a signal to a run (a parked wait resumes; otherwise it is kept for the wait).
    Signal {
        /// The workflow id.
        workflow: String,
        /// The run id.
        run: String,
        /// The signal name.
        name: String,
        /// The payload: JSON text, or @FILE.
        #[arg(long, default_value = "null")]
        data: String,
        /// A second signal with the same key is accepted once.
        #[arg(long)]
        resume_key: Option<String>,
    },
    /// Cancel a run.
    Cancel {
        /// The workflow id.
        workflow: String,
        /// The run id.
        run: String,
    },
    /// Rewind a run to a step it ran; it continues from there by itself.
    Rewind {
        /// The workflow id.
        workflow: String,
        /// The run id.
        run: String,
        /// The step to run again.
        step: String,
        /// A new input for that step: JSON text, or @FILE.
        #[arg(long)]
        input: Option<String>,
    },
}

#[allow(clippy::print_stdout, reason = "the CLI prints its answer on stdout")]
fn print(v: &Value) {
    println!("{v}");
}

pub(crate) fn run(a: Args) -> ExitCode {
    block_on(async move {
        match (&a.url, &a.redis) {
            (Some(url), None) => over_http(url, &a).await,
            (None, Some(redis)) => from_redis(redis, &a).await,
            _ => usage_error("give --url (the service's workflow routes) or --redis"),
        }
    })
}

/// A path segment: workflow ids, run ids, step and signal names are plain tokens; anything
/// else is refused rather than escaped, so no argument can change the route it goes to.
fn segment<'a>(what: &str, s: &'a str) -> Result<&'a str, String> {
    let ok = !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~:".contains(&b));
    if ok {
        Ok(s)
    } else {
        Err(format!(
            "{what} {s:?} must be 1..=256 characters of A-Z a-z 0-9 - _ . ~ :"
        ))
    }
}

/// The request a subcommand makes: method, path under the prefix, JSON body.
fn request(cmd: &Cmd) -> Result<(Method, String, Option<Value>), String> {
    let runs =
        |wf: &str| -> Result<String, String> { Ok(format!("/{}/runs", segment("workflow", wf)?)) };
    let one = |wf: &str, run: &str| -> Result<String, String> {
        Ok(format!("{}/{}", runs(wf)?, segment("run", run)?))
    };
    Ok(match cmd {
        Cmd::Runs {
            workflow,
            status,
            after,
            limit,
        } => {
            let mut q = vec![format!("limit={limit}")];
            if let Some(s) = status {
                q.push(format!("status={}", segment("status", s)?));
            }
            if let Some(a) = after {
                q.push(format!("after={}", segment("run", a)?));
            }
            (
                Method::GET,
                format!("{}?{}", runs(workflow)?, q.join("&")),
                None,
            )
        }
        Cmd::Show { workflow, run } => (Method::GET, one(workflow, run)?, None),
        Cmd::Signal {
            workflow,
            run,
            name,
            data,
            resume_key,
        } => {
            let mut body = json!({ "payload": json_data(data)? });
            if let Some(k) = resume_key {
                body["resumeKey"] = Value::String(k.clone());
            }
            let path = format!(
                "{}/signals/{}",
                one(workflow, run)?,
                segment("signal", name)?
            );
            (Method::POST, path, Some(body))
        }
        Cmd::Cancel { workflow, run } => (
            Method::POST,
            format!("{}/cancel", one(workflow, run)?),
            Some(json!({})),
        ),
        Cmd::Rewind {
            workflow,
            run,
            step,
            input,
        } => {
            let mut body = json!({ "stepId": step });
            if let Some(i) = input {
                body["input"] = json_data(i).map_err(|e| e.replace("--data", "--input"))?;
            }
            (
                Method::POST,
                format!("{}/rewind", one(workflow, run)?),
                Some(body),
            )
        }
    })
}

async fn over_http(url: &str, a: &Args) -> ExitCode {
    let base: Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return usage_error(format!("--url {url:?}: {e}")),
    };
    if base.scheme_str() != Some("http") || base.host().is_none() || base.query().is_some() {
        return usage_error(format!(
            "--url {url:?} must be http://host[:port]/prefix (no query)"
        ));
    }
    let (method, path, body) = match request(&a.command) {
        Ok(r) => r,
        Err(e) => return usage_error(e),
    };
    let prefix = base.path().trim_end_matches('/');
    let target = format!("{prefix}{path}");
    match tokio::time::timeout(TIMEOUT, send(&base, method, &target, body, a)).await {
        Err(_) => failed(format!("{url} did not answer within {TIMEOUT:?}")),
        Ok(Err(e)) => failed(format!("{url}: {e}")),
        Ok(Ok((status, text))) => {
            let v: Value = serde_json::from_slice(&text)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&text).into_owned()));
            if status.is_success() {
                print(&v);
                ExitCode::SUCCESS
            } else {
                let msg = v["error"]["message"]
                    .as_str()
                    .map_or_else(|| v.to_string(), str::to_owned);
                failed(format!("{} {msg}", status.as_u16()))
            }
        }
    }
}

async fn send(
    base: &Uri,
    method: Method,
    target: &str,
    body: Option<Value>,
    a: &Args,
) -> Result<(StatusCode, Bytes), String> {
    let host = base.host().unwrap_or_default();
    let port = base.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    let authority = base.authority().map_or(host, |au| au.as_str());
    let mut req = Request::builder()
        .method(method)
        .uri(target)
        .header(http::header::HOST, authority)
        .header(http::header::ACCEPT, "application/json");
    if let Some(t) = &a.token {
        req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    for (k, v) in &a.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let payload = match &body {
        Some(b) => {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
            Bytes::from(b.to_string())
        }
        None => Bytes::new(),
    };
    let req = req.body(Full::new(payload)).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string());
    let out = match resp {
        Ok(resp) => {
            let status = resp.status();
            http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map(|b| (status, b.to_bytes()))
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e),
    };
    conn.abort();
    out
}

async fn from_redis(url: &str, a: &Args) -> ExitCode {
    let store = match RedisRunStore::connect(url).await {
        Ok(s) => s,
        Err(e) => return failed(format!("{url}: {e}")),
    };
    let store = match store.with_prefix(&a.redis_prefix) {
        Ok(s) => s,
        Err(e) => return usage_error(format!("--redis-prefix: {e}")),
    };
    match &a.command {
        Cmd::Runs {
            workflow,
            status,
            after,
            limit,
        } => {
            let mut q = RunQuery::new(usize::try_from(*limit).unwrap_or(100)).workflow(workflow);
            if let Some(s) = status {
                let Some(s) = RunStatus::parse(s) else {
                    return usage_error(format!("--status {s:?} is not a run status"));
                };
                q = q.status(s);
            }
            if let Some(after) = after {
                q = q.after(after);
            }
            match store.list(&q).await {
                Ok(docs) => {
                    for d in docs {
                        print(&json!({
                            "id": d.id,
                            "workflow": d.workflow,
                            "status": d.status.as_str(),
                            "organization": d.organization,
                        }));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => failed(e),
            }
        }
        Cmd::Show { workflow, run } => match store.load(run).await {
            Ok(Some(d)) if d.workflow == *workflow => {
                let body: Value = serde_json::from_str(&d.body).unwrap_or(Value::Null);
                print(&json!({
                    "id": d.id,
                    "workflow": d.workflow,
                    "status": d.status.as_str(),
                    "organization": d.organization,
                    "revision": d.rev,
                    "document": body,
                }));
                ExitCode::SUCCESS
            }
            Ok(_) => failed(format!("no run {run:?} of workflow {workflow:?}")),
            Err(e) => failed(e),
        },
        Cmd::Signal { .. } | Cmd::Cancel { .. } | Cmd::Rewind { .. } => usage_error(
            "signal, cancel and rewind go through the service (--url): only its engine holds the workflow's code",
        ),
    }
}
