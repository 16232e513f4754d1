//! The binary's error type: what went wrong, and which exit code it maps to.

/// An error that ends a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the user (a flag, a file): exit code 2.
    #[error("{0}")]
    Usage(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The work did not finish (failures after retries, or interrupted): exit code 1.
    #[error("{0}")]
    Incomplete(String),
    /// What was asked for is not there: exit code 1.
    #[error("{0}")]
    NotFound(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn usage(msg: impl Into<String>) -> Error {
        Error::Usage(msg.into())
    }

    /// 2 for bad input, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// A store that fails mid-command (unreachable, a corrupt entry): the work did not finish.
impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Error {
        Error::Incomplete(e.to_string())
    }
}
