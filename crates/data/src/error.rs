//! The one error type of the crate: every variant names the file (or URL) and, where it
//! applies, the position in it, so a user can find the bad byte or line.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading, checking or fetching data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused to read or write a file.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The content of a binary file (IDX, CIFAR, image) is not what its format requires.
    #[error("{path}: {message}")]
    Format {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong and where (byte offset, record or item number).
        message: String,
    },
    /// A line of a delimited text file is malformed.
    #[error("{path}, line {line}: {message}")]
    Line {
        /// The file concerned.
        path: PathBuf,
        /// One-based line number.
        line: usize,
        /// What is wrong with the line (field number, value).
        message: String,
    },
    /// A file's SHA-256 is not the published one.
    #[error("{path}: SHA-256 mismatch: expected {expected}, found {found}")]
    Checksum {
        /// The file concerned.
        path: PathBuf,
        /// The published checksum.
        expected: String,
        /// The checksum of what was read.
        found: String,
    },
    /// A download failed.
    #[error("downloading {url}: {message}")]
    Download {
        /// The address that was asked for.
        url: String,
        /// The reason.
        message: String,
    },
    /// A dataset's files are not where the lookup order says they should be.
    #[error("{0}")]
    Missing(String),
    /// A caller asked for something impossible (a split fraction out of range, say).
    #[error("{0}")]
    Invalid(String),
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A format error in `path`.
    pub fn format(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        DataError::Format {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    /// An error on one line of a text file.
    pub fn line(path: impl AsRef<Path>, line: usize, message: impl Into<String>) -> Self {
        DataError::Line {
            path: path.as_ref().to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

/// Result with [`DataError`].
pub type Result<T> = std::result::Result<T, DataError>;
