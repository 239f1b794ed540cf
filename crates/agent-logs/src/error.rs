//! The crate's error type.

use std::path::PathBuf;

/// What can go wrong reading logs or keeping episodes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line of a log is not what its format says (not JSON, or a known line type with the
    /// wrong fields).
    #[error("{}:{line}: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The episode store cannot be used.
    #[error("{}: {message}", path.display())]
    Store {
        /// The store's file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
