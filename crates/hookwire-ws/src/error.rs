//! Errors of building a gateway.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    MissingAuthenticator,
    Invalid(String),
}

/// Why [`crate::WsGatewayBuilder::build`] refused a configuration.
///
/// ```
/// let err = hookwire_ws::WsGateway::builder().build().unwrap_err();
/// assert!(err.is_missing_authenticator());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    kind: Kind,
}

impl BuildError {
    pub(crate) fn missing_authenticator() -> Self {
        Self {
            kind: Kind::MissingAuthenticator,
        }
    }
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self {
            kind: Kind::Invalid(msg.into()),
        }
    }

    /// Auth is on (the default) but no authenticator was given: fail closed, do not serve.
    pub fn is_missing_authenticator(&self) -> bool {
        self.kind == Kind::MissingAuthenticator
    }

    /// An option is out of range (for example a zero `max_message_bytes`).
    pub fn is_invalid_option(&self) -> bool {
        matches!(self.kind, Kind::Invalid(_))
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::MissingAuthenticator => f.write_str(
                "auth is on but no authenticator is set: call .authenticator(..) or .auth(false)",
            ),
            Kind::Invalid(m) => write!(f, "invalid option: {m}"),
        }
    }
}

impl std::error::Error for BuildError {}
