//! Where datasets are looked for: the `--data-dir` flag, then the `BURN_REPORTS_DATA`
//! environment variable, then `datasets/` in the repository. The first of these that holds a
//! dataset is where it loads from; the first one given is where `fetch` writes.

use std::path::{Path, PathBuf};

use crate::catalog::{DatasetName, DatasetParts};
use crate::error::{DataError, Result};

/// Environment variable naming a data directory.
pub const DATA_DIR_ENV: &str = "BURN_REPORTS_DATA";

/// How a data directory was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The `--data-dir` flag.
    Flag,
    /// The `BURN_REPORTS_DATA` environment variable.
    Environment,
    /// `datasets/` in the repository.
    Repository,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Flag => "--data-dir",
            Origin::Environment => DATA_DIR_ENV,
            Origin::Repository => "repository",
        })
    }
}

/// The data directories to search, in lookup order.
#[derive(Debug, Clone)]
pub struct DataDirs {
    candidates: Vec<(PathBuf, Origin)>,
}

/// Whether a person is at the command line (stdin and stdout are terminals): then the
/// commands fetch a dataset they lack on first use ([`DataDirs::load_or_fetch`]), as
/// `keras.datasets` does; in logs, CI, Slurm or tests they never fetch, and a missing dataset
/// is an error saying how to get it.
pub fn at_a_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// The repository's `datasets/` folder: next to the workspace when run through cargo,
/// else `./datasets`.
pub fn repository_datasets() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets");
    match built.canonicalize() {
        Ok(path) => path,
        Err(_) => PathBuf::from("datasets"),
    }
}

impl DataDirs {
    /// The lookup order for a `--data-dir` value (if given) and the environment.
    pub fn new(flag: Option<&Path>) -> Self {
        let env = std::env::var_os(DATA_DIR_ENV).filter(|v| !v.is_empty());
        Self::with(flag, env.as_deref().map(Path::new))
    }

    /// The lookup order for explicit flag and environment values.
    pub fn with(flag: Option<&Path>, env: Option<&Path>) -> Self {
        let mut candidates = Vec::new();
        if let Some(dir) = flag {
            candidates.push((dir.to_path_buf(), Origin::Flag));
        }
        if let Some(dir) = env {
            candidates.push((dir.to_path_buf(), Origin::Environment));
        }
        candidates.push((repository_datasets(), Origin::Repository));
        DataDirs { candidates }
    }

    /// The directories in lookup order.
    pub fn candidates(&self) -> &[(PathBuf, Origin)] {
        &self.candidates
    }

    /// Where `fetch` writes: the first directory of the lookup order.
    pub fn fetch_target(&self) -> &Path {
        &self.candidates[0].0
    }

    /// The folder of `name` in the first directory that holds it. A folder of the dataset
    /// in a directory the user named (`--data-dir`, `BURN_REPORTS_DATA`) that lacks some of
    /// its files is an error naming them: the user meant that copy, and silently loading
    /// another one would hide that it is broken.
    pub fn find(&self, name: DatasetName) -> Result<(PathBuf, Origin)> {
        for (dir, origin) in &self.candidates {
            let folder = dir.join(name.folder());
            if name.is_present_in(&folder) {
                return Ok((folder, *origin));
            }
            if *origin != Origin::Repository && folder.is_dir() {
                return Err(DataError::Missing(incomplete_message(
                    name, &folder, *origin,
                )));
            }
        }
        Err(DataError::Missing(self.missing_message(name)))
    }

    /// Finds and loads `name`.
    pub fn load(&self, name: DatasetName) -> Result<DatasetParts> {
        let (folder, _) = self.find(name)?;
        name.load_from(&folder)
    }

    /// Finds and loads `name`; when no directory holds it and `fetch` names a source (the
    /// official addresses, for a person at the command line), first fetches it from there
    /// into [`DataDirs::fetch_target`] with a progress bar, as `keras.datasets` does on first
    /// use. A fetch that fails (offline) is an error that says where the dataset was looked
    /// for, how to get it, and why the fetch failed.
    pub fn load_or_fetch(
        &self,
        name: DatasetName,
        fetch: Option<&crate::fetch::FetchSource>,
    ) -> Result<DatasetParts> {
        match (self.find(name), fetch) {
            (Ok((folder, _)), _) => name.load_from(&folder),
            (Err(DataError::Missing(message)), Some(source)) if !name.is_committed() => {
                let target = self.fetch_target();
                eprintln!(
                    "{name} is not here yet: fetching it into {}",
                    target.display()
                );
                crate::fetch::fetch_dataset(name, target, source, true).map_err(|e| {
                    DataError::Missing(format!("{message}\n(fetching it failed: {e})"))
                })?;
                self.load(name)
            }
            (Err(e), _) => Err(e),
        }
    }

    fn missing_message(&self, name: DatasetName) -> String {
        let looked: Vec<String> = self
            .candidates
            .iter()
            .map(|(d, o)| format!("{} ({o})", d.join(name.folder()).display()))
            .collect();
        let needs = match name {
            DatasetName::Cifar10 => "cifar-10-batches-bin/ (official binary) or cifar10-jpeg/ \
                                     (image folders)"
                .to_string(),
            other => other.required_files().join(", "),
        };
        format!(
            "dataset {name} not found; looked in {}. It needs {needs} in {}. Fetch it with \
             `cargo run --release -p data --bin datasets -- fetch {name}` (add `--from \
             <mirror dir>` to copy from a local mirror such as ../shared/datasets when offline)",
            looked.join(", "),
            self.fetch_target().join(name.folder()).display(),
        )
    }
}

/// What an incomplete copy of `name` in `folder` lacks.
fn incomplete_message(name: DatasetName, folder: &Path, origin: Origin) -> String {
    let missing: Vec<String> = name
        .required_files()
        .into_iter()
        .filter(|f| crate::catalog::present_file(&folder.join(f)).is_none())
        .collect();
    let lacks = if missing.is_empty() {
        "cifar-10-batches-bin/ (official binary) or cifar10-jpeg/ (image folders)".to_string()
    } else {
        missing.join(", ")
    };
    format!(
        "{} ({origin}) is an incomplete copy of {name}: it lacks {lacks}. Complete it (`cargo \
         run --release -p data --bin datasets -- fetch {name} --data-dir DIR`) or remove the \
         folder; no other copy is used in its place",
        folder.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_order_is_flag_env_repository() {
        let dirs = DataDirs::with(Some(Path::new("/a")), Some(Path::new("/b")));
        let origins: Vec<Origin> = dirs.candidates().iter().map(|c| c.1).collect();
        assert_eq!(
            origins,
            [Origin::Flag, Origin::Environment, Origin::Repository]
        );
        assert_eq!(dirs.fetch_target(), Path::new("/a"));
        let dirs = DataDirs::with(None, None);
        assert_eq!(dirs.candidates().len(), 1);
    }

    #[test]
    fn first_directory_holding_the_dataset_wins() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(b.path().join("iris")).unwrap();
        std::fs::write(b.path().join("iris/iris.data"), "1,2,x\n").unwrap();
        let dirs = DataDirs::with(Some(a.path()), Some(b.path()));
        let (folder, origin) = dirs.find(DatasetName::Iris).unwrap();
        assert_eq!(folder, b.path().join("iris"));
        assert_eq!(origin, Origin::Environment);
    }

    #[test]
    fn an_incomplete_copy_the_user_named_is_an_error_not_a_fallback() {
        let a = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(a.path().join("mnist")).unwrap();
        std::fs::write(a.path().join("mnist/train-labels-idx1-ubyte.gz"), b"x").unwrap();
        let dirs = DataDirs::with(Some(a.path()), None);
        let err = dirs.find(DatasetName::Mnist).unwrap_err().to_string();
        assert!(err.contains("incomplete copy of mnist"), "{err}");
        assert!(err.contains("train-images-idx3-ubyte"), "{err}");
        assert!(
            !err.contains("train-labels-idx1-ubyte"),
            "present, not listed: {err}"
        );
        assert!(err.contains("--data-dir"), "{err}");
    }

    #[test]
    fn a_failed_fetch_on_first_use_says_why_and_how() {
        let a = tempfile::tempdir().unwrap();
        let empty_mirror = tempfile::tempdir().unwrap();
        let dirs = DataDirs {
            candidates: vec![(a.path().to_path_buf(), Origin::Flag)],
        };
        let source = crate::fetch::FetchSource::MirrorDir(empty_mirror.path().to_path_buf());
        let error = |fetch| match dirs.load_or_fetch(DatasetName::Mnist, fetch) {
            Ok(_) => panic!("mnist loaded from an empty folder"),
            Err(e) => e.to_string(),
        };
        let err = error(Some(&source));
        assert!(err.contains("datasets -- fetch mnist"), "{err}");
        assert!(err.contains("fetching it failed"), "{err}");
        let err = error(None);
        assert!(
            !err.contains("fetching it failed"),
            "no source, no fetch: {err}"
        );
    }

    #[test]
    fn missing_dataset_says_what_where_and_how() {
        let a = tempfile::tempdir().unwrap();
        let dirs = DataDirs {
            candidates: vec![(a.path().to_path_buf(), Origin::Flag)],
        };
        let err = dirs.find(DatasetName::Mnist).unwrap_err().to_string();
        assert!(err.contains("train-images-idx3-ubyte.gz"), "{err}");
        assert!(
            err.contains(&a.path().join("mnist").display().to_string()),
            "{err}"
        );
        assert!(err.contains("datasets -- fetch mnist"), "{err}");
    }
}
