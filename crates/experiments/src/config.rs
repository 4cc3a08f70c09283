//! Experiment files: a report table as data. The dataset and split, the grid, the report's
//! published rows and final model with their figures, the choices made where the report
//! is silent, and how `--quick` shrinks the run. Users copy one to run their own study.

use std::path::Path;

use data::{DataDirs, DatasetName, HoldOut, Samples, TestSplit, split_samples};
pub use search::key::DataKey;
use serde::Deserialize;
use serde_json::{Map, Value};

/// An error reading or using an experiment file; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn default_validation_fraction() -> f64 {
    0.2
}

/// How `--quick` shrinks a run (a study without `[quick]` gets [`QuickConfig::default`]:
/// all the data, 5 epochs, the report's rows and no other trials).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuickConfig {
    /// Training items kept (a stratified subset); 0 keeps all.
    #[serde(default)]
    pub train_items: usize,
    /// Test items kept; 0 keeps all.
    #[serde(default)]
    pub test_items: usize,
    /// Epochs of every model (at most).
    #[serde(default = "default_quick_epochs")]
    pub epochs: usize,
    /// Grid trials besides the report's rows.
    #[serde(default)]
    pub extra_trials: usize,
}

fn default_quick_epochs() -> usize {
    5
}

impl Default for QuickConfig {
    fn default() -> Self {
        QuickConfig {
            train_items: 0,
            test_items: 0,
            epochs: default_quick_epochs(),
            extra_trials: 0,
        }
    }
}

/// A report table of MLP grid results (report 001's Tables 1-4, and the diabetes study).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpTableConfig {
    /// The table's caption (default: the file's name).
    #[serde(default)]
    pub title: String,
    /// Which report it comes from (default: none).
    #[serde(default)]
    pub report: String,
    /// The dataset: a name (iris, statlog, mnist, fashion-mnist, cifar10, diabetes), or a
    /// `[dataset]` table of your own data.
    pub dataset: DatasetConfig,
    /// Choices made where the report is silent, printed under the table.
    #[serde(default)]
    pub notes: Vec<String>,
    /// The split.
    pub split: TestSplit,
    /// What picks the best trial: `validation` (the default: a part of `validation_fraction`
    /// carved from the training data) or `test` (only where the report ranked so).
    #[serde(default)]
    pub rank: search::RankBy,
    /// The validation part's fraction of the training data, with `rank = "validation"`.
    #[serde(default = "default_validation_fraction")]
    pub validation_fraction: f64,
    /// The grid: named lists of report 001's MLP parameters.
    pub grid: toml::Table,
    /// Values of parameters the grid does not list.
    #[serde(default)]
    pub defaults: toml::Table,
    /// The report's rows: parameters and figures (`test_score`, `train_score`, `loss`, ...).
    #[serde(default)]
    pub published: Vec<toml::Table>,
    /// The report's final model, trained after the grid.
    #[serde(default, rename = "final")]
    pub final_model: Option<FinalModel>,
    /// Figures of other tools on the same split (for example scikit-learn), shown beside.
    #[serde(default)]
    pub baselines: Vec<toml::Table>,
    /// Give the report's rows a column from report 001's MLP class as its text writes it
    /// (`trainer::as_written`) beside this project's sound implementation.
    #[serde(default)]
    pub as_written: bool,
    /// The `--quick` scale.
    #[serde(default)]
    pub quick: QuickConfig,
}

/// The report's final model: its parameters and published figures.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinalModel {
    /// MLP parameters.
    pub params: toml::Table,
    /// The report's figures (`train_score`, `test_score`).
    #[serde(default)]
    pub published: toml::Table,
}

/// Reads a TOML file into `T`, naming the file in any error.
pub fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!(
            "{}: {e} (pass --config FILE, or run from the repository root)",
            path.display()
        ))
    })?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
    if let Some(field) = search::grid::non_finite(&toml::Value::Table(table)) {
        return Err(ConfigError(format!(
            "{}: {field}: nan and inf are not valid settings (write a finite number)",
            path.display()
        )));
    }
    toml::from_str(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
}

/// The report's section for a study's `notes` (the choices the project made where the
/// report is silent), or nothing when it has none.
pub fn notes_section(notes: &[String]) -> String {
    if notes.is_empty() {
        return String::new();
    }
    let items: Vec<String> = notes.iter().map(|n| format!("- {n}\n")).collect();
    format!(
        "## Choices where the report is silent\n\n{}\n",
        items.concat()
    )
}

/// `Report 001; ` for a study that names its report, nothing for one that does not.
pub fn report_prefix(report: &str) -> String {
    if report.trim().is_empty() {
        String::new()
    } else {
        format!("Report {report}; ")
    }
}

/// A study's caption: its `title`, else its file's name.
pub fn title_or_file_name(title: &str, path: &Path) -> String {
    if title.trim().is_empty() {
        path.file_stem()
            .map_or_else(|| "study".into(), |s| s.to_string_lossy().into_owned())
    } else {
        title.to_string()
    }
}

/// A TOML table as a JSON object (the form grids and trials use).
pub fn to_json(table: &toml::Table) -> Map<String, Value> {
    match serde_json::to_value(table) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// Where a study's data comes from: one of the six datasets by name (`dataset = "iris"`),
/// or a file or folder of the user's own (a `[dataset]` table), read as the `train` binary
/// reads it, so a study of your own data needs no code.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DatasetConfig {
    /// iris, statlog, mnist, fashion-mnist, cifar10 or diabetes.
    Named(String),
    /// Your own data.
    File(FileDataset),
}

/// A study's own data: `[dataset]` with `path` and, optionally, how to read it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDataset {
    /// A CSV/TSV file (`.gz` too), a folder of `<class>/<image>`, or an IDX images file;
    /// relative to the study file's folder.
    pub path: std::path::PathBuf,
    /// The target column: a header name or a 0-based index (default: the last column).
    #[serde(default)]
    pub target: Option<String>,
    /// `classification` or `regression` (default: inferred, as `train --task auto`).
    #[serde(default)]
    pub task: Option<data::tabular::Task>,
    /// Missing feature values: `none` (an error naming row and column), `mean` or `median`.
    #[serde(default)]
    pub impute: data::tabular::Impute,
    /// Whether the first row names the columns (default: detected).
    #[serde(default)]
    pub header: Option<bool>,
    /// A separate test file or folder (then `[split] kind = "official"`), relative to the
    /// study file's folder.
    #[serde(default)]
    pub test: Option<std::path::PathBuf>,
}

impl DatasetConfig {
    /// The dataset's name when it is one of the six.
    pub fn named(&self) -> Option<&str> {
        match self {
            DatasetConfig::Named(name) => Some(name),
            DatasetConfig::File(_) => None,
        }
    }
}

impl std::fmt::Display for DatasetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatasetConfig::Named(name) => f.write_str(name),
            DatasetConfig::File(file) => write!(f, "{}", file.path.display()),
        }
    }
}

/// The dataset name, checked.
pub fn dataset(name: &str) -> Result<DatasetName, ConfigError> {
    name.parse()
        .map_err(|e: data::DataError| ConfigError(format!("dataset: {e}")))
}

/// The data of a run.
#[derive(Debug, Clone)]
pub struct RunData {
    /// Training data.
    pub train: Samples,
    /// Test data.
    pub test: Samples,
    /// For a hold-out split of the full data: the items (0-based rows of the dataset's file)
    /// in each part, so that other tools can be run on exactly the same split.
    pub indices: Option<data::Split>,
    /// Which form of the dataset was read, where it has more than one (CIFAR-10).
    pub form: Option<data::DataForm>,
    /// For a study's own data: its name and fingerprint (`houses.csv@1f2e...`), the
    /// dataset part of result keys.
    pub key: Option<String>,
    /// For a study's own table: how its columns became inputs (saved with its models).
    pub encoder: Option<data::tabular::TableEncoder>,
}

impl RunData {
    /// The name result keys give the data: the dataset's, or the own data's fingerprint.
    pub fn data_name(&self, dataset: &DatasetConfig) -> String {
        self.key.clone().unwrap_or_else(|| dataset.to_string())
    }
}

/// Training and test data for a split, each shrunk to at most `train_items` /
/// `test_items` (class-stratified) when those are non-zero.
pub fn load_split(
    dirs: &DataDirs,
    dataset: DatasetName,
    split: TestSplit,
    seed: u64,
    limits: Option<(usize, usize)>,
) -> Result<RunData, ConfigError> {
    let splits = dirs
        .load_or_fetch(
            dataset,
            data::locate::at_a_terminal().then_some(&data::FetchSource::Official),
        )
        .map_err(|e| ConfigError(e.to_string()))?;
    let form = splits.form;
    let mut indices = None;
    let (train, test) = match (split, splits.test) {
        (TestSplit::Official, Some(test)) => (splits.train, test),
        (TestSplit::Official, None) => {
            return Err(ConfigError(format!(
                "{dataset} has no official test split: use kind = \"stratified\" or \"random\""
            )));
        }
        (split, _) => {
            let parts = split
                .hold_out(&splits.train, seed)
                .map_err(|e| ConfigError(format!("split: {e}")))?;
            let data = (
                splits.train.subset(&parts.train),
                splits.train.subset(&parts.held_out),
            );
            indices = Some(parts);
            data
        }
    };
    let Some((train_items, test_items)) = limits else {
        return Ok(RunData {
            train,
            test,
            indices,
            form,
            key: None,
            encoder: None,
        });
    };
    let (keep_train, keep_test) = (
        subset_indices(&train, train_items, seed)?,
        subset_indices(&test, test_items, seed)?,
    );
    // The rows of the dataset's file in each shrunk part, as for the full split.
    let indices = indices.map(|parts| data::Split {
        train: keep_train.iter().map(|&i| parts.train[i]).collect(),
        held_out: keep_test.iter().map(|&i| parts.held_out[i]).collect(),
    });
    Ok(RunData {
        train: train.subset(&keep_train),
        test: test.subset(&keep_test),
        indices,
        form,
        key: None,
        encoder: None,
    })
}

/// The data of a run of the experiment file at `path`: its dataset and split, shrunk to
/// its `[quick]` scale with `--quick`; errors name the file.
pub fn load_run_data(
    flags: &crate::cli::Flags,
    path: &Path,
    dataset_config: &DatasetConfig,
    split: TestSplit,
    quick: &QuickConfig,
) -> Result<RunData, crate::Error> {
    let dataset_name = match dataset_config {
        DatasetConfig::Named(name) => name,
        DatasetConfig::File(file) => return load_own_data(flags, path, file, split, quick),
    };
    let name = dataset(dataset_name).map_err(|e| format!("{}: {e}", path.display()))?;
    let dirs = DataDirs::new(flags.data_dir.as_deref());
    let limits = flags.quick.then_some((quick.train_items, quick.test_items));
    load_split(&dirs, name, split, flags.seed, limits)
        .map_err(|e| format!("{}: {e}", path.display()).into())
}

/// A study's own data, split as its `[split]` says (a class-stratified hold-out for
/// classes, a shuffled one for values, or `[dataset] test`), shrunk with `--quick`.
fn load_own_data(
    flags: &crate::cli::Flags,
    path: &Path,
    file: &FileDataset,
    split: TestSplit,
    quick: &QuickConfig,
) -> Result<RunData, crate::Error> {
    use data::user_data::{LoadOptions, Source, load};
    let at = |e: String| format!("{}: [dataset]: {e}", path.display());
    let folder = path.parent().unwrap_or(Path::new(""));
    let test = file.test.as_ref().map(|t| folder.join(t));
    match (split, &test) {
        (TestSplit::Official, None) => {
            return Err(crate::Error::from(at(
                "[split] kind \"official\" needs a test file: give `test` in [dataset], or use \
                 kind = \"stratified\" or \"random\""
                    .into(),
            )));
        }
        (TestSplit::Stratified(_) | TestSplit::Random(_), Some(_)) => {
            return Err(crate::Error::from(at(
                "a `test` file is the official split: set [split] kind = \"official\"".into(),
            )));
        }
        _ => {}
    }
    let options = LoadOptions {
        target: file.target.as_deref().map_or(
            data::tabular::TargetSpec::Last,
            data::tabular::TargetSpec::parse,
        ),
        task: file.task,
        header: file.header,
        impute: file.impute,
        test,
        // The official split's test file is given; a hold-out's fraction otherwise.
        test_fraction: split.test_fraction().unwrap_or(0.2),
        resize: false,
        seed: flags.seed,
        data_dir: flags.data_dir.clone(),
        fetch: data::locate::at_a_terminal(),
    };
    let source =
        Source::of(&folder.join(&file.path).to_string_lossy()).map_err(|e| at(e.to_string()))?;
    let loaded = load(&source, &options).map_err(|e| at(e.to_string()))?;
    for note in &loaded.notes {
        println!("{note}");
    }
    let (train, test) = match flags.quick {
        true => {
            let keep_train = subset_indices(&loaded.train, quick.train_items, flags.seed)
                .map_err(|e| at(e.to_string()))?;
            let keep_test = subset_indices(&loaded.test, quick.test_items, flags.seed)
                .map_err(|e| at(e.to_string()))?;
            (
                loaded.train.subset(&keep_train),
                loaded.test.subset(&keep_test),
            )
        }
        false => (loaded.train, loaded.test),
    };
    Ok(RunData {
        train,
        test,
        indices: None,
        form: None,
        key: Some(loaded.key),
        encoder: loaded.encoder,
    })
}

/// What a run's data is, in the canonical form of result keys: dataset, task, split and
/// its seed, and the `--quick` subset when there is one. Every stored result carries it,
/// so a result on other data (another split, seed or subset) is never reused.
pub fn data_config<'a>(
    dataset: &'a str,
    train: &Samples,
    form: Option<data::DataForm>,
    split: TestSplit,
    seed: u64,
    quick: Option<&QuickConfig>,
) -> DataKey<'a> {
    DataKey {
        dataset,
        classification: matches!(train.targets, data::Targets::Classes { .. }),
        split,
        split_seed: seed,
        subset: quick.map(|q| (q.train_items, q.test_items)),
        validation_fraction: None,
        form: form.and_then(data::DataForm::key),
    }
}

/// DatasetParts `all` into a training part and a held-out part of `held_out`'s size,
/// stratified by class (the validation part of a run, or a test-fold's hold-out).
pub fn hold_out(
    all: &Samples,
    held_out: HoldOut,
    seed: u64,
) -> Result<(Samples, Samples), ConfigError> {
    let split = split_indices(all, held_out, seed)?;
    Ok((all.subset(&split.train), all.subset(&split.held_out)))
}

fn split_indices(all: &Samples, held_out: HoldOut, seed: u64) -> Result<data::Split, ConfigError> {
    split_samples(all, held_out, true, seed).map_err(|e| ConfigError(format!("split: {e}")))
}

/// The positions of at most `items` of `all` (stratified for classes); 0 or more than
/// there are keeps all.
fn subset_indices(all: &Samples, items: usize, seed: u64) -> Result<Vec<usize>, ConfigError> {
    if items == 0 || items >= all.len() {
        return Ok((0..all.len()).collect());
    }
    let split = split_indices(all, HoldOut::Count(all.len() - items), seed)?;
    Ok(split.train)
}
