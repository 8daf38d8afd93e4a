//! The HTTP routes, as an axum `Router` (feature `axum`). Authentication fails closed: the router
//! does not build without an [`RouteAuthenticator`]; every route then asks one [`Policy`] hook for its
//! [`Operation`]; runs are scoped by the caller's [`Scope`]. No route waits for a step: answers
//! come once the transition is stored (`?wait=` may long-poll, bounded).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hookwire_core::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::{Engine, MAX_WAIT, Scope, StartOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::run::{Run, RunStatus};
use crate::store::RunQuery;

/// Who is calling, as the [`RouteAuthenticator`] established it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Caller {
    /// The user or client id.
    pub subject: String,
    /// Whose runs the caller may see and start.
    pub scope: Scope,
}

impl Caller {
    /// A caller acting in organization `org`: it sees and starts that organization's runs only.
    ///
    /// ```
    /// let c = hookwire_workflow::Caller::in_organization("ada", "acme");
    /// assert_eq!(c.scope.org(), Some("acme"));
    /// ```
    pub fn in_organization(subject: impl Into<String>, org: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            scope: Scope::organization(org),
        }
    }
    /// An operator who sees every organization's runs. Grant it deliberately.
    pub fn operator(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            scope: Scope::All,
        }
    }
}

/// Establishes the [`Caller`] from a request's headers; `None` answers 401.
///
/// A plain function or closure `Fn(&HeaderMap) -> Option<Caller>` is an authenticator.
pub trait RouteAuthenticator: Send + Sync + 'static {
    /// The caller, or `None` when the credentials are missing or wrong.
    fn authenticate<'a>(&'a self, headers: &'a HeaderMap) -> BoxFuture<'a, Option<Caller>>;
}

impl<F> RouteAuthenticator for F
where
    F: Fn(&HeaderMap) -> Option<Caller> + Send + Sync + 'static,
{
    fn authenticate<'a>(&'a self, headers: &'a HeaderMap) -> BoxFuture<'a, Option<Caller>> {
        let c = self(headers);
        Box::pin(async move { c })
    }
}

/// The operation a route performs, as the [`Policy`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// `GET {prefix}`.
    ListWorkflows,
    /// `POST {prefix}/{id}/runs`.
    Start,
    /// `GET {prefix}/{id}/runs`.
    ListRuns,
    /// `GET {prefix}/{id}/runs/{run}`.
    Get,
    /// `POST …/runs/{run}/signals/{name}`.
    Signal,
    /// `POST …/runs/{run}/cancel`.
    Cancel,
    /// `POST …/runs/{run}/pause`.
    Pause,
    /// `POST …/runs/{run}/resume`.
    Unpause,
    /// `POST …/runs/{run}/rewind`.
    Rewind,
    /// `GET …/runs/{run}/events` (SSE progress, or the journal as JSON).
    Progress,
}

/// Decides whether an authenticated caller may perform an operation on a workflow (`None` for
/// [`Operation::ListWorkflows`]); `false` answers 403. Every route asks it.
///
/// A plain function or closure `Fn(&Caller, Operation, Option<&str>) -> bool` is a policy.
pub trait Policy: Send + Sync + 'static {
    /// Whether `caller` may perform `op` on `workflow`.
    fn allow<'a>(
        &'a self,
        caller: &'a Caller,
        op: Operation,
        workflow: Option<&'a str>,
    ) -> BoxFuture<'a, bool>;
}

impl<F> Policy for F
where
    F: Fn(&Caller, Operation, Option<&str>) -> bool + Send + Sync + 'static,
{
    fn allow<'a>(
        &'a self,
        caller: &'a Caller,
        op: Operation,
        workflow: Option<&'a str>,
    ) -> BoxFuture<'a, bool> {
        let ok = self(caller, op, workflow);
        Box::pin(async move { ok })
    }
}

/// Builds the workflow routes. [`RoutesBuilder::build`] fails without an authenticator.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use hookwire_workflow::{BoxError, Caller, Engine, Next, Operation, Routes, Step, Workflow};
/// let wf = Workflow::builder("hello", 1)
///     .step(Step::new("greet", |n: String, _| async move { Ok::<_, BoxError>(Next::output(n)) }))
///     .build()
///     .unwrap();
/// let engine = Engine::builder().workflow(wf).build().await.unwrap();
/// assert!(Routes::builder(engine.clone()).build().is_err(), "no authenticator: no router");
/// let app: axum::Router = Routes::builder(engine.clone())
///     .prefix("/workflows")
///     .authenticator(|h: &axum::http::HeaderMap| {
///         let org = h.get("x-org")?.to_str().ok()?;
///         Some(Caller::in_organization("someone", org))
///     })
///     .policy(|_c: &Caller, op: Operation, _w: Option<&str>| op != Operation::Rewind)
///     .build()
///     .unwrap();
/// # let _ = app; engine.shutdown().await;
/// # });
/// ```
pub struct RoutesBuilder {
    engine: Engine,
    prefix: String,
    auth: Option<Arc<dyn RouteAuthenticator>>,
    policy: Option<Arc<dyn Policy>>,
}

impl fmt::Debug for RoutesBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutesBuilder")
            .field("prefix", &self.prefix)
            .field("authenticator", &self.auth.is_some())
            .field("policy", &self.policy.is_some())
            .finish_non_exhaustive()
    }
}

/// The entry point of the HTTP routes: [`Routes::builder`].
#[derive(Debug)]
pub struct Routes;

impl Routes {
    /// A builder over `engine` (prefix `/workflows`, no authenticator yet, every authenticated
    /// caller allowed until a policy is set).
    pub fn builder(engine: Engine) -> RoutesBuilder {
        RoutesBuilder {
            engine,
            prefix: "/workflows".to_owned(),
            auth: None,
            policy: None,
        }
    }
}

impl RoutesBuilder {
    /// Where the routes are mounted (`/workflows` by default; must start with `/`).
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// The authenticator (required).
    #[must_use]
    pub fn authenticator(mut self, a: impl RouteAuthenticator) -> Self {
        self.auth = Some(Arc::new(a));
        self
    }
    /// The policy asked by every route (default: every authenticated caller may do everything
    /// within its scope).
    #[must_use]
    pub fn policy(mut self, p: impl Policy) -> Self {
        self.policy = Some(Arc::new(p));
        self
    }
    /// The router. Errors ([`ErrorKind::Config`]): no authenticator, a prefix that is not
    /// `/segment[/segment…]`.
    pub fn build(self) -> Result<Router> {
        let Some(auth) = self.auth else {
            return Err(Error::config(
                "the workflow routes need an authenticator; they never run open",
            ));
        };
        let p = self.prefix.trim_end_matches('/').to_owned();
        if !p.starts_with('/') || p.contains("//") || p.contains(['{', '}', '*']) {
            return Err(Error::config(format!(
                "route prefix {:?} must look like /segment[/segment…]",
                self.prefix
            )));
        }
        let state = Arc::new(Shared {
            engine: self.engine,
            prefix: p.clone(),
            auth,
            policy: self.policy,
        });
        let run = format!("{p}/{{id}}/runs/{{run}}");
        Ok(Router::new()
            .route(&p, get(list_workflows))
            .route(&format!("{p}/{{id}}/runs"), post(start).get(list_runs))
            .route(&run, get(get_run))
            .route(&format!("{run}/signals/{{name}}"), post(signal))
            .route(&format!("{run}/cancel"), post(cancel))
            .route(&format!("{run}/pause"), post(pause))
            .route(&format!("{run}/resume"), post(unpause))
            .route(&format!("{run}/rewind"), post(rewind))
            .route(&format!("{run}/events"), get(events))
            .with_state(state))
    }
}

struct Shared {
    engine: Engine,
    prefix: String,
    auth: Arc<dyn RouteAuthenticator>,
    policy: Option<Arc<dyn Policy>>,
}

type St = State<Arc<Shared>>;

/// A failed request: status and a JSON body `{"error": {"kind", "message"}}`.
struct Failed(StatusCode, &'static str, String);

impl IntoResponse for Failed {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "kind": self.1, "message": self.2 } });
        (self.0, axum::Json(body)).into_response()
    }
}

impl From<Error> for Failed {
    fn from(e: Error) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Failed(status, e.kind().as_str(), e.to_string())
    }
}

fn bad_request(msg: impl Into<String>) -> Failed {
    Failed(
        StatusCode::BAD_REQUEST,
        ErrorKind::Invalid.as_str(),
        msg.into(),
    )
}

type Answer = std::result::Result<Response, Failed>;

impl Shared {
    /// Authenticates, asks the policy, and checks the workflow exists.
    async fn authorize(
        &self,
        headers: &HeaderMap,
        op: Operation,
        workflow: Option<&str>,
    ) -> std::result::Result<Caller, Failed> {
        let Some(caller) = self.auth.authenticate(headers).await else {
            return Err(Failed(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid credentials".to_owned(),
            ));
        };
        if let Some(p) = &self.policy
            && !p.allow(&caller, op, workflow).await
        {
            return Err(Failed(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the policy refused this operation".to_owned(),
            ));
        }
        if let Some(w) = workflow
            && !self.engine.workflows().iter().any(|i| i.id == w)
        {
            return Err(
                Error::not_found(format!("no workflow {:?}", crate::def::truncate(w))).into(),
            );
        }
        Ok(caller)
    }

    /// The run, if it belongs to `workflow` and the caller's scope.
    async fn run(
        &self,
        caller: &Caller,
        workflow: &str,
        run: &str,
    ) -> std::result::Result<Run, Failed> {
        let r = self.engine.get(&caller.scope, run).await?;
        if r.workflow != workflow {
            return Err(Error::not_found(format!("no run {:?}", crate::def::truncate(run))).into());
        }
        Ok(r)
    }

    fn links(&self, r: &Run) -> Value {
        let base = format!("{}/{}/runs/{}", self.prefix, r.workflow, r.id);
        json!({
            "self": base,
            "events": format!("{base}/events"),
            "signals": format!("{base}/signals/{{name}}"),
            "cancel": format!("{base}/cancel"),
        })
    }

    fn accepted(&self, r: &Run, extra: Value) -> Response {
        let mut body = json!({ "run": r, "status": r.status.as_str(), "links": self.links(r) });
        if let (Some(b), Value::Object(m)) = (body.as_object_mut(), extra) {
            b.extend(m);
        }
        (StatusCode::ACCEPTED, axum::Json(body)).into_response()
    }
}

/// `?wait=` in seconds (`5`, `2.5`, `5s`), at most [`MAX_WAIT`].
fn parse_wait(w: Option<&str>) -> std::result::Result<Option<Duration>, Failed> {
    let Some(w) = w else { return Ok(None) };
    let secs: f64 = w
        .trim_end_matches('s')
        .parse()
        .map_err(|_| bad_request("wait must be a number of seconds, e.g. wait=5s"))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad_request(
            "wait must be a number of seconds, e.g. wait=5s",
        ));
    }
    Ok(Some(Duration::from_secs_f64(
        secs.min(MAX_WAIT.as_secs_f64()),
    )))
}

#[derive(Deserialize)]
struct WaitQuery {
    wait: Option<String>,
}

async fn list_workflows(State(s): St, headers: HeaderMap) -> Answer {
    s.authorize(&headers, Operation::ListWorkflows, None)
        .await?;
    Ok(axum::Json(json!({ "workflows": s.engine.workflows() })).into_response())
}

async fn start(
    State(s): St,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Answer {
    let caller = s.authorize(&headers, Operation::Start, Some(&id)).await?;
    let wait = parse_wait(q.wait.as_deref())?;
    let input = body.get("input").cloned().unwrap_or(Value::Null);
    let mut opts = StartOptions::new();
    match body.get("idempotencyKey") {
        None | Some(Value::Null) => {}
        Some(Value::String(k)) => opts = opts.idempotency_key(k.clone()),
        Some(_) => return Err(bad_request("idempotencyKey must be a string")),
    }
    let started = s.engine.start(&caller.scope, &id, &input, opts).await?;
    let created = json!({ "created": started.created });
    finish(&s, &caller, started.run, wait, created).await
}

/// Answers 202 with the run, or after a bounded long-poll 200 with the finished run.
async fn finish(
    s: &Shared,
    caller: &Caller,
    run: Run,
    wait: Option<Duration>,
    extra: Value,
) -> Answer {
    if let Some(w) = wait {
        let r = s.engine.wait_for(&caller.scope, &run.id, w).await?;
        if r.status.is_terminal() {
            let mut body = json!({ "run": r, "status": r.status.as_str(), "links": s.links(&r) });
            if let (Some(b), Value::Object(m)) = (body.as_object_mut(), extra) {
                b.extend(m);
            }
            return Ok((StatusCode::OK, axum::Json(body)).into_response());
        }
        return Ok(s.accepted(&r, extra));
    }
    Ok(s.accepted(&run, extra))
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_runs(
    State(s): St,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> Answer {
    let caller = s
        .authorize(&headers, Operation::ListRuns, Some(&id))
        .await?;
    let mut query = RunQuery::new(q.limit.unwrap_or(50)).workflow(id);
    if let Some(st) = q.status.as_deref() {
        let st = RunStatus::parse(st)
            .ok_or_else(|| bad_request(format!("unknown status {:?}", crate::def::truncate(st))))?;
        query = query.status(st);
    }
    if let Some(a) = q.after {
        query = query.after(a);
    }
    let page = s.engine.list(&caller.scope, query).await?;
    Ok(axum::Json(page).into_response())
}

async fn get_run(
    State(s): St,
    Path((id, run)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let caller = s.authorize(&headers, Operation::Get, Some(&id)).await?;
    let r = s.run(&caller, &id, &run).await?;
    Ok(axum::Json(json!({ "run": r, "links": s.links(&r) })).into_response())
}

async fn signal(
    State(s): St,
    Path((id, run, name)): Path<(String, String, String)>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Answer {
    let caller = s.authorize(&headers, Operation::Signal, Some(&id)).await?;
    let wait = parse_wait(q.wait.as_deref())?;
    s.run(&caller, &id, &run).await?;
    let payload = body.get("payload").cloned().unwrap_or(Value::Null);
    let key = match body.get("resumeKey") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return Err(bad_request("resumeKey must be a string")),
    };
    let (result, r) = s
        .engine
        .signal(&caller.scope, &run, &name, &payload, key)
        .await?;
    finish(&s, &caller, r, wait, json!({ "signal": result })).await
}

async fn control(s: &Shared, headers: &HeaderMap, op: Operation, id: &str, run: &str) -> Answer {
    let caller = s.authorize(headers, op, Some(id)).await?;
    s.run(&caller, id, run).await?;
    let r = match op {
        Operation::Cancel => s.engine.cancel(&caller.scope, run).await?,
        Operation::Pause => s.engine.pause(&caller.scope, run).await?,
        _ => s.engine.unpause(&caller.scope, run).await?,
    };
    Ok(s.accepted(&r, Value::Null))
}

async fn cancel(
    State(s): St,
    Path((id, run)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    control(&s, &headers, Operation::Cancel, &id, &run).await
}

async fn pause(
    State(s): St,
    Path((id, run)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    control(&s, &headers, Operation::Pause, &id, &run).await
}

async fn unpause(
    State(s): St,
    Path((id, run)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    control(&s, &headers, Operation::Unpause, &id, &run).await
}

async fn rewind(
    State(s): St,
    Path((id, run)): Path<(String, String)>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> Answer {
    let caller = s.authorize(&headers, Operation::Rewind, Some(&id)).await?;
    let wait = parse_wait(q.wait.as_deref())?;
    s.run(&caller, &id, &run).await?;
    let Some(step) = body.get("stepId").and_then(Value::as_str) else {
        return Err(bad_request("stepId is required"));
    };
    let input = body.get("input").cloned();
    let r = s.engine.rewind(&caller.scope, &run, step, input).await?;
    finish(&s, &caller, r, wait, Value::Null).await
}

#[derive(Deserialize)]
struct EventsQuery {
    after: Option<u64>,
}

/// Progress of a run. With `Accept: text/event-stream`, an SSE stream: the journal after the
/// sequence in `Last-Event-ID` (or `?after=`), then every later transition as it is stored,
/// closed once the run finished. Otherwise the journal after that sequence as JSON.
async fn events(
    State(s): St,
    Path((id, run)): Path<(String, String)>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Answer {
    let caller = s
        .authorize(&headers, Operation::Progress, Some(&id))
        .await?;
    s.run(&caller, &id, &run).await?;
    let after = q.after.or_else(|| {
        headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit('-').next())
            .and_then(|v| v.parse().ok())
    });
    let after = after.unwrap_or(0);
    let sse = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if sse {
        return Ok(progress_stream(s.engine.clone(), caller.scope, run, after).into_response());
    }
    let events = s.engine.journal(&caller.scope, &run, after).await?;
    Ok(axum::Json(json!({ "events": events })).into_response())
}

struct Progress {
    engine: Engine,
    scope: Scope,
    run: String,
    last: u64,
    rx: tokio::sync::broadcast::Receiver<String>,
    queue: std::collections::VecDeque<hookwire_core::Event>,
    finished: bool,
}

fn progress_stream(
    engine: Engine,
    scope: Scope,
    run: String,
    after: u64,
) -> Sse<impl futures_util::Stream<Item = std::result::Result<SseEvent, std::convert::Infallible>>>
{
    let state = Progress {
        rx: engine.changes(),
        engine,
        scope,
        run,
        last: after,
        queue: std::collections::VecDeque::new(),
        finished: false,
    };
    Sse::new(futures_util::stream::unfold(state, |mut p| async move {
        loop {
            if let Some(e) = p.queue.pop_front() {
                let frame = SseEvent::default()
                    .id(e.id.clone())
                    .event(e.name.clone())
                    .data(serde_json::to_string(&e).unwrap_or_default());
                return Some((Ok(frame), p));
            }
            if p.finished {
                return None;
            }
            // A store error or a run that vanished ends the stream; the client reconnects with
            // its Last-Event-ID.
            let (events, finished) = p.engine.progress(&p.scope, &p.run, p.last).await.ok()?;
            if let Some(last) = events.last() {
                p.last = last.version;
            }
            p.queue.extend(events);
            p.finished = finished;
            if p.queue.is_empty() && !p.finished {
                // Transitions stored by another node do not reach this channel: re-read every
                // 250 ms too.
                let tick = tokio::time::sleep(Duration::from_millis(250));
                tokio::pin!(tick);
                loop {
                    tokio::select! {
                        m = p.rx.recv() => match m {
                            Ok(id) if id != p.run => continue,
                            _ => break,
                        },
                        () = &mut tick => break,
                    }
                }
            }
        }
    }))
}
