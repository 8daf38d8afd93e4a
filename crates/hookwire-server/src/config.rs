//! The server's options: a builder whose [`ServerConfigBuilder::build`] refuses an unusable
//! option with an [`Error`] naming it, instead of changing it silently.

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::Semaphore;

/// Default time a client has to send a complete request head (10 s); hyper starts the same
/// timer when a kept-alive connection goes idle, so it is also the idle keep-alive timeout.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a request body has to arrive completely after its head (30 s).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time a graceful shutdown waits for open connections before closing them (30 s).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default largest request head hyper buffers (64 KiB); a larger head is answered 431.
pub const DEFAULT_MAX_HEAD_BYTES: usize = 64 * 1024;
/// The smallest head buffer hyper accepts (8 KiB).
pub const MIN_HEAD_BYTES: usize = 8 * 1024;
/// File descriptors left to the rest of the process when the connection cap is derived from
/// the open-file limit.
pub const FD_RESERVE: usize = 256;
/// The connection cap when the open-file limit cannot be read (not Linux): 1 024 − 256.
pub const FALLBACK_MAX_CONNECTIONS: usize = 768;
/// The largest connection cap (tokio's largest permit count).
pub const MAX_CONNECTIONS: usize = if Semaphore::MAX_PERMITS < u32::MAX as usize {
    Semaphore::MAX_PERMITS
} else {
    u32::MAX as usize
};
const MIN_DEFAULT_CONNECTIONS: usize = 64;

/// The default connection cap: the process's open-file soft limit minus [`FD_RESERVE`] (at
/// least 64), read once from `/proc/self/limits`; [`FALLBACK_MAX_CONNECTIONS`] where that
/// cannot be read. So a server never accepts connections it has no descriptors for.
pub fn default_max_connections() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        open_file_limit().map_or(FALLBACK_MAX_CONNECTIONS, |n| {
            // A derived default, not a user option: kept usable rather than refused.
            n.saturating_sub(FD_RESERVE)
                .clamp(MIN_DEFAULT_CONNECTIONS, MAX_CONNECTIONS)
        })
    })
}

fn open_file_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.get("Max open files".len()..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// An option [`ServerConfigBuilder::build`] refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    option: &'static str,
    message: String,
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    fn invalid(option: &'static str, message: String) -> Self {
        Self { option, message }
    }

    /// Always true: the only error of this crate is a refused option (I/O errors while
    /// serving are `std::io::Error`).
    pub fn is_invalid_option(&self) -> bool {
        true
    }

    /// The builder method whose value was refused, e.g. `"max_connections"`.
    pub fn option(&self) -> &'static str {
        self.option
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid server option `{}`: {}",
            self.option, self.message
        )
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

/// A checked server configuration: every limit of the accept loop. Built with
/// [`ServerConfig::builder`]; [`ServerConfig::default`] is the documented defaults.
///
/// ```
/// use std::time::Duration;
/// use hookwire_server::ServerConfig;
/// let config = ServerConfig::builder()
///     .header_read_timeout(Duration::from_secs(5))
///     .max_connections(10_000)
///     .build()?;
/// assert_eq!(config.body_timeout(), Duration::from_secs(30));
/// assert!(ServerConfig::builder().max_connections(0).build().is_err());
/// # Ok::<(), hookwire_server::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    pub(crate) header_read_timeout: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) max_connections: usize,
    pub(crate) shutdown_grace: Duration,
    pub(crate) max_head_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: default_max_connections(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
        }
    }
}

impl ServerConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> ServerConfigBuilder {
        ServerConfigBuilder {
            config: Self::default(),
        }
    }

    /// Time to send a complete request head; also the idle keep-alive timeout.
    pub fn header_read_timeout(&self) -> Duration {
        self.header_read_timeout
    }

    /// Time for a whole request body after its head.
    pub fn body_timeout(&self) -> Duration {
        self.body_timeout
    }

    /// Most connections open at once.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// How long a graceful shutdown waits for open connections.
    pub fn shutdown_grace(&self) -> Duration {
        self.shutdown_grace
    }

    /// Largest request head hyper buffers.
    pub fn max_head_bytes(&self) -> usize {
        self.max_head_bytes
    }
}

/// Builds a [`ServerConfig`]; [`build`](Self::build) refuses unusable values.
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct ServerConfigBuilder {
    config: ServerConfig,
}

impl ServerConfigBuilder {
    /// Time a client has to send a complete request head, and how long a kept-alive connection
    /// may sit idle (default 10 s). The connection is closed when it runs out. Must be above 0.
    pub fn header_read_timeout(mut self, d: Duration) -> Self {
        self.config.header_read_timeout = d;
        self
    }

    /// Time for the whole request body after its head (default 30 s); reading it then fails
    /// with [`BodyTimeout`](crate::BodyTimeout). Must be above 0.
    pub fn body_timeout(mut self, d: Duration) -> Self {
        self.config.body_timeout = d;
        self
    }

    /// Most connections open at once, upgraded WebSockets included (default
    /// [`default_max_connections`]). At the cap the server stops accepting (new connections
    /// wait in the kernel's backlog) until one closes. Between 1 and [`MAX_CONNECTIONS`];
    /// keep it below `ulimit -n`.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// How long a graceful shutdown waits for open connections to finish before closing them
    /// (default 30 s; 0 closes them at once).
    pub fn shutdown_grace(mut self, d: Duration) -> Self {
        self.config.shutdown_grace = d;
        self
    }

    /// Largest request head hyper buffers (default 64 KiB, at least [`MIN_HEAD_BYTES`]).
    pub fn max_head_bytes(mut self, n: usize) -> Self {
        self.config.max_head_bytes = n;
        self
    }

    /// The checked configuration, or the first unusable option.
    pub fn build(self) -> Result<ServerConfig> {
        let c = self.config;
        if c.header_read_timeout.is_zero() {
            return Err(Error::invalid(
                "header_read_timeout",
                "must be above zero (every connection would be closed at once)".to_owned(),
            ));
        }
        if c.body_timeout.is_zero() {
            return Err(Error::invalid(
                "body_timeout",
                "must be above zero (every request body would fail at once)".to_owned(),
            ));
        }
        if !(1..=MAX_CONNECTIONS).contains(&c.max_connections) {
            return Err(Error::invalid(
                "max_connections",
                format!(
                    "must be between 1 and {MAX_CONNECTIONS}, got {}",
                    c.max_connections
                ),
            ));
        }
        if c.max_head_bytes < MIN_HEAD_BYTES {
            return Err(Error::invalid(
                "max_head_bytes",
                format!(
                    "must be at least {MIN_HEAD_BYTES}, got {}",
                    c.max_head_bytes
                ),
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_build_and_match_default() {
        assert_eq!(ServerConfig::builder().build(), Ok(ServerConfig::default()));
        assert!(default_max_connections() >= MIN_DEFAULT_CONNECTIONS);
    }

    #[test]
    fn unusable_options_are_refused_by_name() {
        let b = ServerConfig::builder;
        let cases = [
            (b().max_connections(0).build(), "max_connections"),
            (b().max_connections(usize::MAX).build(), "max_connections"),
            (
                b().header_read_timeout(Duration::ZERO).build(),
                "header_read_timeout",
            ),
            (b().body_timeout(Duration::ZERO).build(), "body_timeout"),
            (b().max_head_bytes(100).build(), "max_head_bytes"),
        ];
        for (got, option) in cases {
            let e = got.unwrap_err();
            assert_eq!(e.option(), option);
            assert!(e.to_string().contains(option), "{e}");
            assert_eq!(
                std::io::Error::from(e).kind(),
                std::io::ErrorKind::InvalidInput
            );
        }
        assert_eq!(
            b().max_connections(MAX_CONNECTIONS)
                .build()
                .map(|c| c.max_connections()),
            Ok(MAX_CONNECTIONS)
        );
    }
}
