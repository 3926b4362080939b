//! Exit codes of SPEC §5 and the errors that carry them.

use std::fmt;

/// The process exit codes cron and CI act on.
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

/// An error that decides the exit code. Anything else that reaches `main` exits with 2.
#[derive(Debug)]
pub struct Fatal {
    /// The exit code it maps to.
    pub exit: Exit,
    /// What went wrong, already free of secrets.
    pub message: String,
}

impl Fatal {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Fatal { exit: Exit::Usage, message: message.into() }
    }

    /// A state error (exit 4).
    pub fn state(message: impl Into<String>) -> Self {
        Fatal { exit: Exit::State, message: message.into() }
    }
}

impl fmt::Display for Fatal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fatal {}

/// The exit code an error maps to: the first [`Fatal`] in its chain, else 2.
pub fn exit_of(err: &anyhow::Error) -> Exit {
    err.chain().find_map(|e| e.downcast_ref::<Fatal>().map(|f| f.exit)).unwrap_or(Exit::Usage)
}
