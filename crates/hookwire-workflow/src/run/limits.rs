//! The limits a run is held to, with their defaults.

/// The limits a run is held to. Each is enforced with [`crate::ErrorKind::Limit`] at the
/// operation or step that would exceed it.
///
/// ```
/// let l = hookwire_workflow::Limits::default().with_max_steps(50);
/// assert_eq!(l.max_steps, 50);
/// assert_eq!(l.max_step_output, 256 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest step output, signal payload or memoized value (JSON bytes). Default 256 KiB.
    pub max_step_output: usize,
    /// Largest stored run document (input, outputs, history, memo, queued signals, journal).
    /// Default 4 MiB.
    pub max_run_state: usize,
    /// Most step executions per run, counting retries of a step once and every re-run after a
    /// rewind or a loop. Default 1000.
    pub max_steps: u32,
    /// Most signals one run accepts in its life (their resume keys are kept for de-duplication).
    /// Default 1000.
    pub max_signals: u32,
    /// Most signals queued for a wait the run has not reached. Default 100.
    pub max_pending_signals: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_step_output: 256 * 1024,
            max_run_state: 4 * 1024 * 1024,
            max_steps: 1000,
            max_signals: 1000,
            max_pending_signals: 100,
        }
    }
}

impl Limits {
    /// Sets [`Limits::max_step_output`].
    #[must_use]
    pub fn with_max_step_output(mut self, n: usize) -> Self {
        self.max_step_output = n;
        self
    }
    /// Sets [`Limits::max_run_state`].
    #[must_use]
    pub fn with_max_run_state(mut self, n: usize) -> Self {
        self.max_run_state = n;
        self
    }
    /// Sets [`Limits::max_steps`].
    #[must_use]
    pub fn with_max_steps(mut self, n: u32) -> Self {
        self.max_steps = n;
        self
    }
    /// Sets [`Limits::max_signals`].
    #[must_use]
    pub fn with_max_signals(mut self, n: u32) -> Self {
        self.max_signals = n;
        self
    }
    /// Sets [`Limits::max_pending_signals`].
    #[must_use]
    pub fn with_max_pending_signals(mut self, n: u32) -> Self {
        self.max_pending_signals = n;
        self
    }
}
