//! Correlation: the event being handled (or the request being served) is kept in a task-local,
//! so events published from inside inherit its correlation id and name it as their cause.

use std::future::Future;

use hookwire_core::Event;

#[derive(Debug, Clone)]
pub(crate) struct Parent {
    /// The id of the event being handled; `None` inside a plain request scope.
    pub(crate) causation: Option<String>,
    pub(crate) correlation: String,
}

tokio::task_local! {
    static CURRENT: Parent;
}

/// Runs `fut` as part of the business flow `correlation_id` (a request id, a trace id): events
/// published inside it without a correlation id get this one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let corr = hookwire_events::with_correlation("req-42", async {
///     hookwire_events::current_correlation_id()
/// }).await;
/// assert_eq!(corr.as_deref(), Some("req-42"));
/// # }
/// ```
pub async fn with_correlation<F: Future>(correlation_id: impl Into<String>, fut: F) -> F::Output {
    let parent = Parent {
        causation: None,
        correlation: correlation_id.into(),
    };
    CURRENT.scope(parent, fut).await
}

/// The correlation id of the flow the current task runs in, if any.
///
/// ```
/// assert_eq!(hookwire_events::current_correlation_id(), None);
/// ```
pub fn current_correlation_id() -> Option<String> {
    CURRENT.try_with(|p| p.correlation.clone()).ok()
}

/// Runs a handler future with `event` as the current parent.
pub(crate) fn scope_event<F: Future>(event: &Event, fut: F) -> impl Future<Output = F::Output> {
    let parent = Parent {
        causation: Some(event.id.clone()),
        correlation: event
            .meta
            .correlation_id
            .clone()
            .unwrap_or_else(|| event.id.clone()),
    };
    CURRENT.scope(parent, fut)
}

/// Fills in the correlation and causation ids of an event about to be published, unless set.
pub(crate) fn inherit(event: &mut Event) {
    let _ = CURRENT.try_with(|p| {
        if event.meta.correlation_id.is_none() {
            event.meta.correlation_id = Some(p.correlation.clone());
        }
        if event.meta.causation_id.is_none() {
            event.meta.causation_id.clone_from(&p.causation);
        }
    });
}
