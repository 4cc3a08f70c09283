//! Errors of the search crate.

use std::path::Path;

/// What can go wrong running a search.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// A grid that cannot be read or used.
    #[error("{0}")]
    Grid(String),
    /// A results file that cannot be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl SearchError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, e: std::io::Error) -> Self {
        SearchError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }
}
