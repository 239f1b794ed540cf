//! Knowledge-base and skill search.
//!
//! Indexes any number of folders of markdown notes plus a skill library with
//! [tantivy](https://docs.rs/tantivy), on disk. Notes are split into sections at their
//! headings ([`chunk`]), so a hit names the file, the heading path and the line range, with a
//! highlighted snippet. Skills are indexed by name, description and body, with name and
//! description weighted above the body; a note's title and headings likewise weigh more than
//! its text. Words are matched after English stemming, so "deploying" finds "deploy".
//!
//! [`SearchIndex::update`] is incremental (size, modification time, then content hash) and
//! commits once, so a crash mid-update leaves the previous index usable. [`SearchIndex`]
//! implements [`skill_core::Retriever`] for the agent loop and the recall checks.

pub mod chunk;
mod hybrid;
mod index;

pub use hybrid::{DEFAULT_MEANING_WEIGHT, HybridSearch};

pub use index::{
    BOOST_NOTE_HEADINGS, BOOST_NOTE_TITLE, BOOST_SKILL_DESCRIPTION, BOOST_SKILL_NAME, DEFAULT_MAX_FILE_BYTES, HitKind,
    IndexReport, Progress, SearchHit, SearchIndex, SearchOptions, Skipped, Sources,
};

use std::path::{Path, PathBuf};

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the retrieval crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// tantivy reported an error for the index in `dir`.
    #[error("search index {dir}: {message}")]
    Tantivy {
        /// The index folder.
        dir: PathBuf,
        /// tantivy's message.
        message: String,
    },
    /// No index has been built yet.
    #[error("no search index at {0}: run `skd index` first")]
    NoIndex(PathBuf),
    /// The index was built by another version of skd.
    #[error("the search index at {0} was built by another version of skd: run `skd index` to rebuild it")]
    Stale(PathBuf),
    /// Another process holds the index writer.
    #[error("the search index at {0} is being updated by another process; try again when it finishes")]
    Busy(PathBuf),
    /// A file of the index could not be understood.
    #[error("{0}: {1}")]
    Corrupt(PathBuf, String),
    /// An error from skill-core.
    #[error(transparent)]
    Core(#[from] skill_core::Error),
}

impl Error {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), source }
    }

    fn tantivy(dir: &Path, err: impl std::fmt::Display) -> Self {
        Error::Tantivy { dir: dir.to_path_buf(), message: err.to_string() }
    }
}
