//! A user's own data for the `train`, `predict` and `grid` binaries: a CSV or TSV file (gzip or
//! not), a folder of class subfolders of images, an IDX pair, or one of the six named
//! datasets, split into training and test parts and turned into [`Samples`].

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::image_folder::{Channels, channels_of, first_image, load_image_folder_sized};
use crate::tabular::{Impute, Table, TableEncoder, TableOptions, TargetSpec, Task};
use crate::{ClassNames, DataDirs, DatasetName, HoldOut, Samples, split_samples};

/// Where the data comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A delimited text file.
    Table(PathBuf),
    /// A folder of `<class>/<image>` (or `train/<class>` and `test/<class>`).
    Images(PathBuf),
    /// IDX images and their labels file.
    Idx {
        /// The images file.
        images: PathBuf,
        /// The labels file.
        labels: PathBuf,
    },
    /// One of the reports' datasets.
    Named(DatasetName),
}

impl Source {
    /// What `--data` names: an existing folder, an IDX images file (its labels file found
    /// beside it: `images-idx3` becomes `labels-idx1`), another existing file (a table), or
    /// a dataset name.
    pub fn of(data: &str) -> Result<Source> {
        let path = PathBuf::from(data);
        if path.is_dir() {
            return Ok(Source::Images(path));
        }
        if path.is_file() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name.contains("idx3") {
                let labels =
                    path.with_file_name(name.replace("images", "labels").replace("idx3", "idx1"));
                if !labels.is_file() {
                    return Err(DataError::format(
                        &path,
                        format!(
                            "an IDX images file needs its labels beside it, {} is missing",
                            labels.display()
                        ),
                    ));
                }
                return Ok(Source::Idx {
                    images: path,
                    labels,
                });
            }
            return Ok(Source::Table(path));
        }
        match DatasetName::parse(data) {
            Ok(name) => Ok(Source::Named(name)),
            Err(_) => Err(DataError::Missing(format!(
                "{data}: no such file or folder, and not a dataset name (iris, statlog, \
                 diabetes, mnist, fashion-mnist, cifar10)"
            ))),
        }
    }
}

/// How to read and split the data.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The target column of a table.
    pub target: TargetSpec,
    /// Classification or regression; `None` infers it (tables).
    pub task: Option<Task>,
    /// Whether a table has a header; `None` detects it.
    pub header: Option<bool>,
    /// Missing values in a table's features.
    pub impute: Impute,
    /// A separate test file or folder (same layout as the data).
    pub test: Option<PathBuf>,
    /// Fraction held out as the test set when there is no test file (stratified for
    /// classes).
    pub test_fraction: f64,
    /// Resize images of another size to the first image's.
    pub resize: bool,
    /// Seed of the split.
    pub seed: u64,
    /// Where the named datasets are (`--data-dir`).
    pub data_dir: Option<PathBuf>,
    /// Fetch a named dataset that is missing from its official addresses
    /// ([`DataDirs::load_or_fetch`]).
    pub fetch: bool,
}

/// Training and test samples, how a table was encoded, and what was done, in words.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Training part (the validation part is split from it later).
    pub train: Samples,
    /// Test part.
    pub test: Samples,
    /// The fitted encoding of a table's columns.
    pub encoder: Option<TableEncoder>,
    /// What was read and applied, one line each.
    pub notes: Vec<String>,
    /// The data's identity for result keys: the source's name and a SHA-256 of the
    /// training and test samples exactly as a model sees them (so the file's content, the
    /// target, the task, the encoding and the split are all in it).
    pub key: String,
}

/// SHA-256 (first 16 hex digits) of samples: shape, features, targets and class names.
pub fn fingerprint(parts: &[&Samples]) -> String {
    let mut hash = Sha256::new();
    for samples in parts {
        hash.update(format!("{:?}", samples.shape));
        for v in &samples.features {
            hash.update(v.to_le_bytes());
        }
        match &samples.targets {
            crate::Targets::Classes { labels, classes } => {
                hash.update(classes.0.join("\n"));
                for l in labels {
                    hash.update((*l as u64).to_le_bytes());
                }
            }
            crate::Targets::Values { values, names, .. } => {
                hash.update(names.join("\n"));
                for v in values {
                    hash.update(v.to_le_bytes());
                }
            }
        }
    }
    let digest = hash.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl Source {
    /// A short name: the file or folder name, or the dataset's.
    pub fn name(&self) -> String {
        let file = |p: &Path| {
            p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        };
        match self {
            Source::Table(p) | Source::Images(p) => file(p),
            Source::Idx { images, .. } => file(images),
            Source::Named(name) => name.id().to_string(),
        }
    }
}

/// Reads `source` and splits it as `options` say.
pub fn load(source: &Source, options: &LoadOptions) -> Result<Loaded> {
    let mut loaded = match source {
        Source::Table(path) => load_table(path, options)?,
        Source::Images(dir) => load_images(dir, options)?,
        Source::Idx { images, labels } => {
            let read = |images: &Path, labels: &Path| {
                crate::idx::load_idx_images(images, labels, ClassNames::numbered(10))
            };
            let all = read(images, labels)?;
            let test = match &options.test {
                Some(test) => match Source::of(&test.to_string_lossy())? {
                    Source::Idx { images, labels } => Some(read(&images, &labels)?),
                    _ => return Err(DataError::format(test, "expected an IDX images file")),
                },
                None => None,
            };
            split_or(
                all,
                test,
                options,
                vec![format!("IDX {}", images.display())],
            )?
        }
        Source::Named(name) => {
            let splits = DataDirs::new(options.data_dir.as_deref()).load_or_fetch(
                *name,
                options
                    .fetch
                    .then_some(&crate::fetch::FetchSource::Official),
            )?;
            let note = format!("dataset {}", name.id());
            split_or(splits.train, splits.test, options, vec![note])?
        }
    };
    check_sizes(&loaded)?;
    loaded.key = format!(
        "{}@{}",
        source.name(),
        fingerprint(&[&loaded.train, &loaded.test])
    );
    Ok(loaded)
}

/// `all` and its test part: `test` when given, else a seeded hold-out of `all`.
fn split_or(
    all: Samples,
    test: Option<Samples>,
    options: &LoadOptions,
    mut notes: Vec<String>,
) -> Result<Loaded> {
    if let Some(test) = test {
        notes.push(format!(
            "{} training and {} test items (the given test set)",
            all.len(),
            test.len()
        ));
        return Ok(Loaded {
            train: all,
            test,
            encoder: None,
            notes,
            key: String::new(),
        });
    }
    let split = split_samples(
        &all,
        HoldOut::Fraction(options.test_fraction),
        true,
        options.seed,
    )
    .map_err(|e| DataError::Invalid(format!("test split: {e}")))?;
    notes.push(format!(
        "{} training and {} test items ({:.0} % held out{}, seed {})",
        split.train.len(),
        split.held_out.len(),
        100.0 * options.test_fraction,
        if all.targets.classes().is_some() {
            ", stratified"
        } else {
            ""
        },
        options.seed
    ));
    Ok(Loaded {
        train: all.subset(&split.train),
        test: all.subset(&split.held_out),
        encoder: None,
        notes,
        key: String::new(),
    })
}

fn load_table(path: &Path, options: &LoadOptions) -> Result<Loaded> {
    let table_options = TableOptions {
        header: options.header,
        separator: None,
    };
    let table = Table::read(path, &table_options)?;
    let target = table.target_column(&options.target)?;
    let (task, why) = match options.task {
        Some(task) => (task, format!("{task:?} (given)").to_lowercase()),
        None => table.infer_task(target)?,
    };
    let mut notes = vec![
        format!(
            "{}: {} rows, {} columns; {}",
            path.display(),
            table.len(),
            table.columns.len(),
            table.header_reason
        ),
        format!("target {:?}: {why}", table.columns[target]),
    ];
    let test_table = options
        .test
        .as_ref()
        .map(|t| Table::read(t, &table_options))
        .transpose()?;
    let (train_rows, test_rows) = match &test_table {
        Some(t) => ((0..table.len()).collect(), (0..t.len()).collect()),
        None => held_out_rows(&table, target, task, options)?,
    };
    let encoder = TableEncoder::fit(&table, target, task, &train_rows, options.impute)?;
    notes.extend(encoder.describe());
    let train = encoder.samples(&table, &train_rows)?;
    let test = encoder.samples(test_table.as_ref().unwrap_or(&table), &test_rows)?;
    notes.push(format!(
        "{} training and {} test rows{}",
        train.len(),
        test.len(),
        match &options.test {
            Some(t) => format!(" (test rows from {})", t.display()),
            None => format!(
                " ({:.0} % held out{}, seed {})",
                100.0 * options.test_fraction,
                if task == Task::Classification {
                    ", stratified"
                } else {
                    ""
                },
                options.seed
            ),
        }
    ));
    Ok(Loaded {
        train,
        test,
        encoder: Some(encoder),
        notes,
        key: String::new(),
    })
}

/// The rows kept for training and those held out for the test, stratified by the target's
/// labels for classification.
fn held_out_rows(
    table: &Table,
    target: usize,
    task: Task,
    options: &LoadOptions,
) -> Result<(Vec<usize>, Vec<usize>)> {
    let hold_out = HoldOut::Fraction(options.test_fraction);
    let split = match task {
        Task::Classification => {
            let classes = ClassNames::from_labels(table.rows.iter().map(|r| r[target].as_str()));
            let labels: Vec<usize> = table
                .rows
                .iter()
                .map(|r| classes.index_of(&r[target]).unwrap_or_default())
                .collect();
            crate::stratified_split(&labels, hold_out, options.seed)
        }
        Task::Regression => crate::shuffle_split(table.len(), hold_out, options.seed),
    }
    .map_err(|e| DataError::format(&table.path, format!("test split: {e}")))?;
    if split.train.len() < 2 {
        return Err(DataError::format(
            &table.path,
            format!(
                "test split: {} rows leave {} for training, too few to learn from",
                table.len(),
                split.train.len()
            ),
        ));
    }
    Ok((split.train, split.held_out))
}

fn load_images(dir: &Path, options: &LoadOptions) -> Result<Loaded> {
    let (train_dir, test_dir) = match (&options.test, dir.join("train"), dir.join("test")) {
        (Some(test), _, _) => (dir.to_path_buf(), Some(test.clone())),
        (None, train, test) if train.is_dir() && test.is_dir() => (train, Some(test)),
        _ => (dir.to_path_buf(), None),
    };
    let first = first_image(&train_dir)?;
    let channels = channels_of(&first)?;
    let size = if options.resize {
        Some(image_size(&first)?)
    } else {
        None
    };
    let train = load_image_folder_sized(&train_dir, None, channels, size)?;
    let notes = vec![format!(
        "{}: {} images of {}x{} {} in {} classes ({}), scaled to 0-1",
        train_dir.display(),
        train.len(),
        train.shape[2],
        train.shape[1],
        match channels {
            Channels::Grey => "grey",
            Channels::Rgb => "RGB",
        },
        train.num_classes().unwrap_or(0),
        train
            .targets
            .classes()
            .map(|c| c.0.join(", "))
            .unwrap_or_default()
    )];
    let test = match test_dir {
        Some(t) => {
            let size = Some((train.shape[2] as u32, train.shape[1] as u32));
            let resize = if options.resize { size } else { None };
            let test = load_image_folder_sized(&t, train.targets.classes(), channels, resize)?;
            if test.shape != train.shape {
                return Err(DataError::format(
                    &t,
                    format!(
                        "test images are {}x{}, training images {}x{}: pass --resize",
                        test.shape[2], test.shape[1], train.shape[2], train.shape[1]
                    ),
                ));
            }
            Some(test)
        }
        None => None,
    };
    split_or(train, test, options, notes)
}

fn image_size(path: &Path) -> Result<(u32, u32)> {
    image::image_dimensions(path)
        .map_err(|e| DataError::format(path, format!("cannot read image: {e}")))
}

/// Enough rows on each side for training and a score.
fn check_sizes(loaded: &Loaded) -> Result<()> {
    if loaded.train.len() < 2 || loaded.test.is_empty() {
        return Err(DataError::Invalid(format!(
            "{} training and {} test items are too few: the split needs at least 2 and 1",
            loaded.train.len(),
            loaded.test.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> LoadOptions {
        LoadOptions {
            target: TargetSpec::Last,
            task: None,
            header: None,
            impute: Impute::None,
            test: None,
            test_fraction: 0.25,
            resize: false,
            seed: 3,
            data_dir: None,
            fetch: false,
        }
    }

    #[test]
    fn a_table_is_split_stratified_and_encoded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        let rows: String = (0..40)
            .map(|i| format!("{i},{},{}\n", ["x", "y"][i % 2], ["a", "b"][i % 2]))
            .collect();
        std::fs::write(&path, format!("n,c,label\n{rows}")).unwrap();
        let source = Source::of(&path.to_string_lossy()).unwrap();
        assert_eq!(source, Source::Table(path.clone()));
        let loaded = load(&source, &options()).unwrap();
        assert_eq!((loaded.train.len(), loaded.test.len()), (30, 10));
        assert_eq!(loaded.test.class_counts(), [5, 5]);
        assert_eq!(loaded.train.feature_names, ["n", "c=x", "c=y"]);
        assert!(
            loaded.notes[1].contains("text labels"),
            "{:?}",
            loaded.notes
        );
    }

    #[test]
    fn too_few_rows_and_unknown_sources_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, "n,label\n1,a\n2,b\n").unwrap();
        let err = load(&Source::Table(path), &options())
            .unwrap_err()
            .to_string();
        assert!(err.contains("test split"), "{err}");
        let err = Source::of("no-such-file.csv").unwrap_err().to_string();
        assert!(err.contains("no such file"), "{err}");
        assert_eq!(
            Source::of("iris").unwrap(),
            Source::Named(DatasetName::Iris)
        );
    }
}
