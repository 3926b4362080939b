//! The exit codes of SPEC §5 and the one error type that carries them.

use crate::config::ConfigError;
use crate::state::StateError;
use std::fmt;

/// The process exit codes cron and CI act on. No other code is ever returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Exit {
    /// Nothing to do, everything deployed, or another run holds the lock.
    Success = 0,
    /// At least one deployment failed or timed out.
    DeployFailed = 1,
    /// Usage or configuration error: nothing was checked or deployed.
    Usage = 2,
    /// Some repositories could not be checked (and no deployment failed).
    CheckFailed = 3,
    /// State could not be read, locked or saved.
    State = 4,
}

impl Exit {
    /// The numeric code.
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Why a command could not do its work. Every variant maps to one exit code ([`Error::exit`]).
#[derive(Debug)]
pub enum Error {
    /// A command line that cannot be carried out: unknown repository, bad `--commit` (exit 2).
    Usage(String),
    /// An invalid configuration file (exit 2).
    Config(ConfigError),
    /// The state could not be read, locked or saved (exit 4; `poll` handles a held lock itself).
    State(StateError),
    /// The run could not be set up from valid configuration: CA file, proxy variables (exit 2).
    Setup(String),
    /// stdout could not be written for another reason than a closed pipe (exit 2).
    Output(std::io::Error),
    /// A bug in sentry (a panic caught at the top): exit 2, with a message that says so.
    Internal(String),
}

impl Error {
    /// The exit code SPEC §5 assigns.
    pub fn exit(&self) -> Exit {
        match self {
            Error::State(_) => Exit::State,
            Error::Usage(_) | Error::Config(_) | Error::Setup(_) | Error::Output(_) | Error::Internal(_) => Exit::Usage,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) | Error::Setup(m) => f.write_str(m),
            Error::Config(e) => e.fmt(f),
            Error::State(e) => e.fmt(f),
            Error::Output(e) => write!(f, "cannot write to stdout: {e}"),
            Error::Internal(m) => write!(f, "internal error (a bug in sentry, please report it): {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(e)
    }
}

impl From<StateError> for Error {
    fn from(e: StateError) -> Error {
        Error::State(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_spec_exit_code() {
        let busy = StateError::Busy { location: "s".into(), holder: "h".into() };
        let lost = StateError::LeaseLost { location: "s".into(), holder: "h".into() };
        assert_eq!(Error::State(busy).exit(), Exit::State);
        assert_eq!(Error::State(lost).exit(), Exit::State);
        assert_eq!(Error::Usage("x".into()).exit(), Exit::Usage);
        assert!(Error::Internal("boom".into()).to_string().contains("bug"));
    }
}
