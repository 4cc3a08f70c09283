//! The experiments library's error: which kind of thing went wrong (a file, a dataset, a
//! layer list, training, a search, a study file or flag), each with the file, line, field or
//! flag it concerns in its message, so that a caller can tell a missing file from a bad
//! study file and a user can find what to fix.

use std::path::PathBuf;

/// An error of a report run, the results book, the benchmark or the charts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operating system refused to read or write a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A dataset could not be read, checked, fetched or split.
    #[error(transparent)]
    Data(#[from] data::DataError),
    /// A study file is missing, malformed or names a field wrongly.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A layer list does not make a model for its input.
    #[error("{}", .0.0)]
    Spec(#[from] models::SpecError),
    /// The chosen device is not available.
    #[error("{}", .0.0)]
    Device(#[from] models::DeviceError),
    /// Training could not start or go on.
    #[error(transparent)]
    Fit(#[from] trainer::FitError),
    /// A model could not be built, trained, saved or loaded.
    #[error(transparent)]
    Model(#[from] trainer::ModelError),
    /// A search, its grid or its results file failed.
    #[error(transparent)]
    Search(#[from] search::SearchError),
    /// A value could not be written or read as JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// Anything else a run refuses: a flag, a stored result, a chart or a table that cannot
    /// be made; the message says which and why.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::Invalid(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::Invalid(message.to_string())
    }
}

/// The binaries' own helpers keep `String` errors: an [`Error`] becomes its message.
impl From<Error> for String {
    fn from(e: Error) -> Self {
        e.to_string()
    }
}

/// A result whose error is the experiments library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
