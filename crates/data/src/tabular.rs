//! A user's own table: a CSV or TSV file (gzip-compressed or not, with or without a header,
//! quoted fields) read as text into a [`Table`], then turned into numbers by a
//! [`TableEncoder`] fitted on the training rows: numeric columns as they are (the model's
//! preprocessing standardises them), text columns one-hot, missing values refused or
//! imputed, constant columns dropped. The encoder is saved with a model, so prediction
//! encodes new rows exactly as training did.
//!
//! ```
//! use data::tabular::{Impute, Table, TableEncoder, TableOptions, TargetSpec, Task};
//! # fn main() -> data::Result<()> {
//! let text = "size,colour,price\n1.0,red,10\n2.0,blue,20\n3.0,red,30\n4.0,blue,41\n";
//! let table = Table::parse("houses.csv".as_ref(), text, &TableOptions::default())?;
//! let target = table.target_column(&TargetSpec::Name("price".into()))?;
//! let (task, why) = table.infer_task(target)?;
//! assert_eq!(task, Task::Regression, "{why}");
//! let rows: Vec<usize> = (0..table.len()).collect();
//! let encoder = TableEncoder::fit(&table, target, task, &rows, Impute::None)?;
//! let samples = encoder.samples(&table, &rows)?;
//! assert_eq!(samples.feature_names, ["size", "colour=blue", "colour=red"]);
//! assert_eq!(samples.item(0), [1.0, 0.0, 1.0]);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::delimited::Separator;
use crate::error::{DataError, Result};
use crate::io::read_maybe_gzip;
use crate::samples::{ClassNames, Samples, Targets};

/// How to read a table; `None` fields are detected from the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableOptions {
    /// Whether the first row names the columns (detected when `None`).
    pub header: Option<bool>,
    /// Field separator (from the name, `.tsv`/`.tab`, or the first line when `None`).
    pub separator: Option<Separator>,
}

/// A table as text: column names and rows of fields, each with its line in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The file (for messages).
    pub path: PathBuf,
    /// Column names: the header's, or `column 1`, `column 2`, ... without one.
    pub columns: Vec<String>,
    /// Whether the file had a header row.
    pub has_header: bool,
    /// Why the header was or was not taken as one (for the run's log).
    pub header_reason: String,
    /// Rows of fields, as long as `columns`.
    pub rows: Vec<Vec<String>>,
    /// The one-based line of each row.
    pub lines: Vec<usize>,
}

/// Which column is the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TargetSpec {
    /// The last column.
    Last,
    /// A zero-based column index.
    Index(usize),
    /// A header name.
    Name(String),
}

impl TargetSpec {
    /// `"3"` is an index, `"-1"` or `"last"` the last column, anything else a name.
    pub fn parse(text: &str) -> Self {
        match text.trim() {
            "-1" | "last" => TargetSpec::Last,
            t => t
                .parse::<usize>()
                .map_or_else(|_| TargetSpec::Name(t.to_string()), TargetSpec::Index),
        }
    }
}

/// Classification or regression: the project's one name for it (`data::Task`, re-exported
/// as `trainer::Task`; report 001's MLP, the tables and `train` all use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// The target holds class labels.
    Classification,
    /// The target holds real values.
    Regression,
}

/// A task as the command lines choose it: given, or `auto` (`None`: inferred from the data
/// by [`Table::infer_task`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskChoice(pub Option<Task>);

impl std::str::FromStr for TaskChoice {
    type Err = String;

    /// `auto`, `classification` or `regression`.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "auto" => Ok(TaskChoice(None)),
            "classification" => Ok(TaskChoice(Some(Task::Classification))),
            "regression" => Ok(TaskChoice(Some(Task::Regression))),
            other => Err(format!("{other:?}: use auto, classification or regression")),
        }
    }
}

/// What to do with a missing value (an empty field, `NA`, `NaN`, `?`, `null`) in a feature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Impute {
    /// Refuse it, naming line and column.
    #[default]
    None,
    /// The training rows' mean (numeric columns; the most frequent value for text).
    Mean,
    /// The training rows' median (numeric columns; the most frequent value for text).
    Median,
}

impl std::str::FromStr for Impute {
    type Err = String;

    /// `none`, `mean` or `median`, as the command lines write it.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "none" => Ok(Impute::None),
            "mean" => Ok(Impute::Mean),
            "median" => Ok(Impute::Median),
            other => Err(format!("{other:?}: use none, mean or median")),
        }
    }
}

/// How one feature column becomes numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Encoding {
    /// The number itself; a missing value becomes `fill` when set.
    Number {
        /// Imputed value.
        fill: Option<f32>,
    },
    /// One 0/1 feature per category, in this order; a missing value becomes `fill`.
    OneHot {
        /// Every category of the column.
        categories: Vec<String>,
        /// Imputed category.
        fill: Option<String>,
    },
    /// Left out of the model.
    Dropped {
        /// Why (a constant column).
        reason: String,
    },
}

/// One feature column of the training file and its encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// Name (the header's, or `column N`).
    pub name: String,
    /// How it becomes numbers.
    pub encoding: Encoding,
}

/// How a table's rows become a model's inputs and targets, fitted on training rows and saved
/// with the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableEncoder {
    /// The target column's name and zero-based index in the training file.
    pub target: (String, usize),
    /// Classification or regression.
    pub task: Task,
    /// The class names (classification).
    pub classes: Option<ClassNames>,
    /// Every other column of the training file, in file order.
    pub columns: Vec<Column>,
    /// How many columns the training file had (to find columns in a file without header).
    pub width: usize,
    /// Whether the training file had a header (then columns are found by name).
    pub header: bool,
}

/// The spellings of a missing value (pandas' defaults, and UCI's `?`).
fn is_missing(field: &str) -> bool {
    matches!(
        field,
        "" | "?" | "NA" | "N/A" | "n/a" | "NaN" | "nan" | "NAN" | "null" | "NULL" | "None"
    )
}

fn number(field: &str) -> Option<f32> {
    field.parse::<f32>().ok().filter(|v| v.is_finite())
}

/// DatasetParts one line at `separator`, honouring double quotes (a separator inside quotes is
/// part of the field, `""` inside quotes is one quote). Fields are trimmed.
fn split_quoted(line: &str, separator: Separator) -> std::result::Result<Vec<String>, String> {
    let is_sep = |c: char| match separator {
        Separator::Comma => c == ',',
        Separator::Tab => c == '\t',
        Separator::Whitespace => c == ' ' || c == '\t',
        Separator::Char(s) => c == s,
    };
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                c => field.push(c),
            }
        } else if c == '"' && field.trim().is_empty() {
            field.clear();
            quoted = true;
        } else if is_sep(c) {
            if separator == Separator::Whitespace && field.is_empty() {
                continue;
            }
            fields.push(std::mem::take(&mut field).trim().to_string());
        } else {
            field.push(c);
        }
    }
    if quoted {
        return Err(
            "a quoted field is not closed on this line (a field spanning lines is not \
                    supported)"
                .into(),
        );
    }
    if !(separator == Separator::Whitespace && field.is_empty()) {
        fields.push(field.trim().to_string());
    }
    Ok(fields)
}

/// The separator a file's name or first line suggests: tab for `.tsv`/`.tab`, else the most
/// frequent of comma, tab and semicolon on the first line (comma when none occurs).
fn detect_separator(path: &Path, first_line: &str) -> Separator {
    let name = path.to_string_lossy().to_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".tsv") || name.ends_with(".tab") {
        return Separator::Tab;
    }
    let count = |c: char| first_line.matches(c).count();
    let (commas, tabs, semis) = (count(','), count('\t'), count(';'));
    if tabs > commas && tabs >= semis {
        Separator::Tab
    } else if semis > commas {
        Separator::Char(';')
    } else if commas == 0 && tabs == 0 && first_line.trim().contains(' ') {
        Separator::Whitespace
    } else {
        Separator::Comma
    }
}

/// Whether the first row is a header: some column is text in the first row and a number in
/// every following row checked; or every first-row field is text that its column never
/// repeats. Returns the decision and the reason.
fn detect_header(first: &[String], rest: &[Vec<String>]) -> (bool, String) {
    let sample = &rest[..rest.len().min(100)];
    for (j, name) in first.iter().enumerate() {
        let below_numeric = !sample.is_empty()
            && sample.iter().all(|r| {
                r.get(j)
                    .is_some_and(|f| is_missing(f) || number(f).is_some())
            });
        if number(name).is_none() && !is_missing(name) && below_numeric {
            return (
                true,
                format!(
                    "header detected: column {} is {name:?} above numbers",
                    j + 1
                ),
            );
        }
    }
    let all_text = first.iter().all(|f| number(f).is_none() && !is_missing(f));
    let unrepeated = first
        .iter()
        .enumerate()
        .all(|(j, name)| sample.iter().all(|r| r.get(j) != Some(name)));
    if all_text && unrepeated && !sample.is_empty() {
        (
            true,
            "header detected: the first row is text its columns never repeat".into(),
        )
    } else {
        (
            false,
            "no header: the first row looks like data (--header to read it as names)".into(),
        )
    }
}

impl Table {
    /// Reads a delimited file, gzip-compressed or not (whatever its name).
    pub fn read(path: &Path, options: &TableOptions) -> Result<Table> {
        let bytes = read_maybe_gzip(path)?;
        let text = String::from_utf8(bytes).map_err(|e| {
            DataError::format(
                path,
                format!(
                    "not UTF-8 text (byte {}): save the table as UTF-8 CSV",
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        Table::parse(path, &text, options)
    }

    /// Parses delimited text read from `path` (used in messages); see [`Table::read`].
    pub fn parse(path: &Path, text: &str, options: &TableOptions) -> Result<Table> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let lines: Vec<(usize, &str)> = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(_, l)| !l.trim().is_empty())
            .collect();
        let Some(&(_, first_line)) = lines.first() else {
            return Err(DataError::format(path, "the file is empty: no rows"));
        };
        let separator = options
            .separator
            .unwrap_or_else(|| detect_separator(path, first_line));
        let mut rows = Vec::with_capacity(lines.len());
        for &(n, line) in &lines {
            rows.push(split_quoted(line, separator).map_err(|m| DataError::line(path, n, m))?);
        }
        let mut numbers: Vec<usize> = lines.iter().map(|(n, _)| *n).collect();
        let (has_header, header_reason) = match options.header {
            Some(h) => (h, format!("header {}", if h { "given" } else { "absent" })),
            None => detect_header(&rows[0], &rows[1..]),
        };
        let width = rows[0].len();
        let columns = if has_header {
            numbers.remove(0);
            rows.remove(0)
        } else {
            (1..=width).map(|i| format!("column {i}")).collect()
        };
        if let Some(dup) = columns
            .iter()
            .enumerate()
            .find(|(i, c)| columns[..*i].contains(c))
        {
            return Err(DataError::line(
                path,
                lines[0].0,
                format!("the header names column {:?} twice", dup.1),
            ));
        }
        for (row, &line) in rows.iter().zip(&numbers) {
            if row.len() != width {
                return Err(DataError::line(
                    path,
                    line,
                    format!(
                        "{} fields, but the {} has {width}",
                        row.len(),
                        if has_header { "header" } else { "first row" }
                    ),
                ));
            }
        }
        if rows.is_empty() {
            return Err(DataError::format(path, "the file has a header but no rows"));
        }
        Ok(Table {
            path: path.to_path_buf(),
            columns,
            has_header,
            header_reason,
            rows,
            lines: numbers,
        })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    fn error(&self, row: usize, message: impl Into<String>) -> DataError {
        DataError::line(&self.path, self.lines[row], message)
    }

    /// The zero-based index of the target column.
    pub fn target_column(&self, target: &TargetSpec) -> Result<usize> {
        let width = self.columns.len();
        if width < 2 {
            return Err(DataError::format(
                &self.path,
                "a row needs at least one feature and the target: only one column found \
                 (is the separator right?)",
            ));
        }
        match target {
            TargetSpec::Last => Ok(width - 1),
            TargetSpec::Index(i) if *i < width => Ok(*i),
            TargetSpec::Index(i) => Err(DataError::format(
                &self.path,
                format!("target column {i} does not exist: rows have {width} columns (0-based)"),
            )),
            TargetSpec::Name(name) => {
                self.columns.iter().position(|c| c == name).ok_or_else(|| {
                    DataError::format(
                        &self.path,
                        format!(
                            "no column named {name:?}{}; the columns are: {}",
                            if self.has_header {
                                ""
                            } else {
                                " (the file has no header: give the target's index)"
                            },
                            self.columns.join(", ")
                        ),
                    )
                })
            }
        }
    }

    /// Classification for text labels or a few distinct whole numbers, regression
    /// otherwise, with the reason in words. A missing target value is an error.
    pub fn infer_task(&self, target: usize) -> Result<(Task, String)> {
        let name = &self.columns[target];
        let mut distinct = BTreeSet::new();
        let mut all_numbers = true;
        let mut all_whole = true;
        for (r, row) in self.rows.iter().enumerate() {
            let field = row[target].as_str();
            if is_missing(field) {
                return Err(self.error(r, format!("the target {name:?} is missing")));
            }
            match number(field) {
                Some(v) => all_whole &= v.fract() == 0.0,
                None => all_numbers = false,
            }
            distinct.insert(field);
        }
        let few = distinct.len() <= 20 && distinct.len() * 5 <= self.len().max(1);
        Ok(if !all_numbers {
            (
                Task::Classification,
                format!("classification: {name:?} holds text labels"),
            )
        } else if all_whole && few {
            (
                Task::Classification,
                format!(
                    "classification: {name:?} holds {} distinct whole numbers (--task \
                     regression to predict them as values)",
                    distinct.len()
                ),
            )
        } else {
            (
                Task::Regression,
                format!(
                    "regression: {name:?} holds {} distinct numbers",
                    distinct.len()
                ),
            )
        })
    }

    /// Class labels of the target column, as indices of `classes` (rows `rows`).
    fn labels(&self, target: usize, classes: &ClassNames, rows: &[usize]) -> Result<Vec<usize>> {
        rows.iter()
            .map(|&r| {
                let label = self.rows[r][target].as_str();
                classes.index_of(label).ok_or_else(|| {
                    self.error(
                        r,
                        format!(
                            "unknown class {label:?} in column {:?}; the model's classes: {}",
                            self.columns[target],
                            classes.0.join(", ")
                        ),
                    )
                })
            })
            .collect()
    }

    /// Real target values of the target column (rows `rows`).
    fn values(&self, target: usize, rows: &[usize]) -> Result<Vec<f32>> {
        rows.iter()
            .map(|&r| {
                let field = self.rows[r][target].as_str();
                number(field).ok_or_else(|| {
                    self.error(
                        r,
                        format!(
                            "the target {:?} is {field:?}, not a number",
                            self.columns[target]
                        ),
                    )
                })
            })
            .collect()
    }
}

/// The numbers of a numeric column over `rows` (missing ones skipped); `Err` with the first
/// row holding text otherwise.
fn numeric_values(
    table: &Table,
    column: usize,
    rows: &[usize],
) -> std::result::Result<Vec<f32>, usize> {
    let mut out = Vec::with_capacity(rows.len());
    for &r in rows {
        let field = table.rows[r][column].as_str();
        if is_missing(field) {
            continue;
        }
        out.push(number(field).ok_or(r)?);
    }
    Ok(out)
}

fn mean(values: &[f32]) -> f32 {
    (values.iter().map(|&v| v as f64).sum::<f64>() / values.len().max(1) as f64) as f32
}

fn median(values: &[f32]) -> f32 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

impl TableEncoder {
    /// Fits the encoding of every feature column on the training rows `rows` of `table`.
    /// A column is numeric when every training value is a number (a text value in a column
    /// that is numeric elsewhere is named as an error: one-hot encoding a typo is never
    /// what was meant), text otherwise; a text column's categories are those of the whole
    /// file (a category list is not a statistic of the training rows, and a rare category
    /// seen only in the test rows must not fail the run). A missing value is an error unless
    /// `impute` is set; a column with one value over the training rows is dropped.
    pub fn fit(
        table: &Table,
        target: usize,
        task: Task,
        rows: &[usize],
        impute: Impute,
    ) -> Result<TableEncoder> {
        let all: Vec<usize> = (0..table.len()).collect();
        let mut columns = Vec::new();
        for (j, name) in table.columns.iter().enumerate() {
            if j == target {
                continue;
            }
            let encoding = Self::fit_column(table, j, rows, &all, impute)?;
            columns.push(Column {
                name: name.clone(),
                encoding,
            });
        }
        if columns
            .iter()
            .all(|c| matches!(c.encoding, Encoding::Dropped { .. }))
        {
            return Err(DataError::format(
                &table.path,
                "no feature column varies over the training rows: nothing to learn from",
            ));
        }
        let classes = match task {
            Task::Classification => {
                let classes =
                    ClassNames::from_labels(table.rows.iter().map(|r| r[target].as_str()));
                if classes.len() < 2 {
                    return Err(DataError::format(
                        &table.path,
                        format!(
                            "the target {:?} has a single class ({}): classification needs two \
                             or more",
                            table.columns[target],
                            classes.0.join("")
                        ),
                    ));
                }
                Some(classes)
            }
            Task::Regression => {
                table.values(target, &all)?;
                None
            }
        };
        Ok(TableEncoder {
            target: (table.columns[target].clone(), target),
            task,
            classes,
            columns,
            width: table.columns.len(),
            header: table.has_header,
        })
    }

    fn fit_column(
        table: &Table,
        j: usize,
        rows: &[usize],
        all: &[usize],
        impute: Impute,
    ) -> Result<Encoding> {
        let name = &table.columns[j];
        let missing = rows.iter().find(|&&r| is_missing(&table.rows[r][j]));
        if let (Some(&r), Impute::None) = (missing, impute) {
            return Err(table.error(
                r,
                format!(
                    "column {name:?} has a missing value ({:?}): fill it in, or pass --impute \
                     mean|median",
                    table.rows[r][j]
                ),
            ));
        }
        let present: Vec<&str> = rows
            .iter()
            .map(|&r| table.rows[r][j].as_str())
            .filter(|f| !is_missing(f))
            .collect();
        let distinct: BTreeSet<&str> = present.iter().copied().collect();
        if distinct.len() <= 1 {
            return Ok(Encoding::Dropped {
                reason: format!(
                    "constant over the training rows ({})",
                    distinct
                        .first()
                        .map_or("all missing".into(), |v| format!("{v:?}"))
                ),
            });
        }
        match numeric_values(table, j, all) {
            Ok(_) => {
                let values = numeric_values(table, j, rows).unwrap_or_default();
                let fill = missing.map(|_| match impute {
                    Impute::Median => median(&values),
                    _ => mean(&values),
                });
                Ok(Encoding::Number { fill })
            }
            Err(text_row) => {
                let numbers = present.iter().filter(|f| number(f).is_some()).count();
                if numbers * 2 > present.len() {
                    return Err(table.error(
                        text_row,
                        format!(
                            "column {name:?} is {:?}, not a number, while most of the column \
                             is numeric",
                            table.rows[text_row][j]
                        ),
                    ));
                }
                let categories: BTreeSet<&str> = all
                    .iter()
                    .map(|&r| table.rows[r][j].as_str())
                    .filter(|f| !is_missing(f))
                    .collect();
                let fill = missing.map(|_| most_frequent(&present));
                Ok(Encoding::OneHot {
                    categories: categories.into_iter().map(String::from).collect(),
                    fill,
                })
            }
        }
    }

    /// Names of the model's input features (`colour=red` for a one-hot category).
    pub fn feature_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        for c in &self.columns {
            match &c.encoding {
                Encoding::Number { .. } => names.push(c.name.clone()),
                Encoding::OneHot { categories, .. } => {
                    names.extend(categories.iter().map(|v| format!("{}={v}", c.name)))
                }
                Encoding::Dropped { .. } => {}
            }
        }
        names
    }

    /// Lines for the run's log: each column's encoding.
    pub fn describe(&self) -> Vec<String> {
        self.columns
            .iter()
            .map(|c| match &c.encoding {
                Encoding::Number { fill: None } => format!("{}: number", c.name),
                Encoding::Number { fill: Some(v) } => {
                    format!("{}: number, missing values imputed as {v}", c.name)
                }
                Encoding::OneHot { categories, fill } => format!(
                    "{}: text, one-hot over {} categories{}",
                    c.name,
                    categories.len(),
                    fill.as_ref()
                        .map(|f| format!(", missing values imputed as {f:?}"))
                        .unwrap_or_default()
                ),
                Encoding::Dropped { reason } => format!("{}: dropped, {reason}", c.name),
            })
            .collect()
    }

    /// Where each of the encoder's columns is in `table`: by name when both files have a
    /// header, else by position (the table has the training file's width, or one column
    /// fewer when the target is left out). The target need not be there.
    fn locate(&self, table: &Table) -> Result<Vec<usize>> {
        let trained: Vec<&str> = self.columns.iter().map(|c| c.name.as_str()).collect();
        if table.has_header && self.header {
            return trained
                .iter()
                .map(|name| {
                    table.columns.iter().position(|c| c == name).ok_or_else(|| {
                        DataError::format(
                            &table.path,
                            format!(
                                "no column {name:?}: the model was trained on {}",
                                trained.join(", ")
                            ),
                        )
                    })
                })
                .collect();
        }
        let width = table.columns.len();
        let target = self.target.1;
        if width == self.width {
            Ok((0..width).filter(|&j| j != target).collect())
        } else if width + 1 == self.width {
            Ok((0..width).collect())
        } else {
            Err(DataError::format(
                &table.path,
                format!(
                    "rows have {width} columns; the model was trained on {} ({} features and \
                     the target)",
                    self.width,
                    self.width - 1
                ),
            ))
        }
    }

    /// The encoded features of rows `rows` of `table`, item after item.
    pub fn features(&self, table: &Table, rows: &[usize]) -> Result<Vec<f32>> {
        let at = self.locate(table)?;
        let mut out = Vec::with_capacity(rows.len() * self.feature_names().len());
        for &r in rows {
            for (column, &j) in self.columns.iter().zip(&at) {
                Self::encode_field(table, r, j, column, &mut out)?;
            }
        }
        Ok(out)
    }

    fn encode_field(
        table: &Table,
        r: usize,
        j: usize,
        column: &Column,
        out: &mut Vec<f32>,
    ) -> Result<()> {
        let field = table.rows[r][j].as_str();
        let name = &column.name;
        let absent = || {
            table.error(
                r,
                format!(
                    "column {name:?} has a missing value ({field:?}) and the model imputes none"
                ),
            )
        };
        match &column.encoding {
            Encoding::Dropped { .. } => {}
            Encoding::Number { fill } => {
                let value = if is_missing(field) {
                    fill.ok_or_else(absent)?
                } else {
                    number(field).ok_or_else(|| {
                        table.error(r, format!("column {name:?} is {field:?}, not a number"))
                    })?
                };
                out.push(value);
            }
            Encoding::OneHot { categories, fill } => {
                let value = if is_missing(field) {
                    fill.as_deref().ok_or_else(absent)?
                } else {
                    field
                };
                let index = categories.iter().position(|c| c == value).ok_or_else(|| {
                    table.error(
                        r,
                        format!(
                            "column {name:?} is {value:?}, a value the model never saw (it \
                             knows {})",
                            categories.join(", ")
                        ),
                    )
                })?;
                out.extend((0..categories.len()).map(|i| f32::from(u8::from(i == index))));
            }
        }
        Ok(())
    }

    /// Rows `rows` of `table` with their targets (the table must hold the target column).
    pub fn samples(&self, table: &Table, rows: &[usize]) -> Result<Samples> {
        let features = self.features(table, rows)?;
        let (name, index) = &self.target;
        let target = if table.has_header && self.header && table.columns.contains(name) {
            table
                .columns
                .iter()
                .position(|c| c == name)
                .unwrap_or(*index)
        } else if table.columns.len() == self.width {
            *index
        } else {
            return Err(DataError::format(
                &table.path,
                format!("no target column {name:?}: it is needed to score the model"),
            ));
        };
        let targets = match &self.classes {
            Some(classes) => Targets::Classes {
                labels: table.labels(target, classes, rows)?,
                classes: classes.clone(),
            },
            None => Targets::Values {
                values: table.values(target, rows)?,
                width: 1,
                names: vec![name.clone()],
            },
        };
        let names = self.feature_names();
        Samples::new(features, vec![names.len()], names, targets)
    }

    /// Rows `rows` of `table` without targets (prediction): the targets are placeholders.
    pub fn inputs(&self, table: &Table, rows: &[usize]) -> Result<Samples> {
        let features = self.features(table, rows)?;
        let names = self.feature_names();
        Samples::new(
            features,
            vec![names.len()],
            names,
            Targets::Values {
                values: vec![0.0; rows.len()],
                width: 1,
                names: vec![self.target.0.clone()],
            },
        )
    }
}

fn most_frequent(values: &[&str]) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(v, _)| v.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Result<Table> {
        Table::parse(Path::new("t.csv"), text, &TableOptions::default())
    }

    fn fit_all(t: &Table, impute: Impute) -> Result<TableEncoder> {
        let target = t.target_column(&TargetSpec::Last)?;
        let (task, _) = t.infer_task(target)?;
        let rows: Vec<usize> = (0..t.len()).collect();
        TableEncoder::fit(t, target, task, &rows, impute)
    }

    #[test]
    fn quoted_fields_keep_separators_and_quotes() {
        let fields = split_quoted(r#"1, "a, b" ,"say ""hi""",x"#, Separator::Comma).unwrap();
        assert_eq!(fields, ["1", "a, b", r#"say "hi""#, "x"]);
        let err = split_quoted(r#"1,"open"#, Separator::Comma).unwrap_err();
        assert!(err.contains("not closed"), "{err}");
        assert_eq!(
            split_quoted("  1   2\t3 ", Separator::Whitespace).unwrap(),
            ["1", "2", "3"]
        );
    }

    #[test]
    fn header_and_separator_are_detected() {
        let t = table("a;b;y\n1;2;x\n3;4;z\n").unwrap();
        assert!(t.has_header, "{}", t.header_reason);
        assert_eq!(t.columns, ["a", "b", "y"]);
        assert_eq!(t.rows[1], ["3", "4", "z"]);
        assert_eq!(t.lines, [2, 3]);
        let t = table("1,2,x\n3,4,z\n").unwrap();
        assert!(!t.has_header);
        assert_eq!(t.columns, ["column 1", "column 2", "column 3"]);
        let t = Table::parse(
            Path::new("t.tsv.gz"),
            "a,b\tc\n1,5\t2\n",
            &TableOptions::default(),
        )
        .unwrap();
        assert_eq!(t.columns, ["a,b", "c"]);
        let forced = Table::parse(
            Path::new("t.csv"),
            "a,b\n1,2\n",
            &TableOptions {
                header: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(forced.len(), 2);
    }

    #[test]
    fn bad_tables_name_file_and_line() {
        let err = table("a,b,y\n1,2,p\n\n3,q\n").unwrap_err().to_string();
        assert!(
            err.contains("t.csv, line 4") && err.contains("2 fields, but the header has 3"),
            "{err}"
        );
        assert!(table("\n \n").unwrap_err().to_string().contains("empty"));
        let header = TableOptions {
            header: Some(true),
            ..Default::default()
        };
        let err = Table::parse(Path::new("t.csv"), "a,b\n", &header).unwrap_err();
        assert!(err.to_string().contains("no rows"), "{err}");
        let t = table("a,b\n1,2\n").unwrap();
        let err = t
            .target_column(&TargetSpec::Name("price".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("no column named \"price\"") && err.contains("a, b"),
            "{err}"
        );
    }

    #[test]
    fn task_is_inferred_with_a_reason() {
        let t = table("x,y\n1,cat\n2,dog\n").unwrap();
        let (task, why) = t.infer_task(1).unwrap();
        assert_eq!(task, Task::Classification);
        assert!(why.contains("text labels"), "{why}");
        let rows: String = (0..40).map(|i| format!("{i},{}\n", i % 3)).collect();
        let t = table(&format!("x,y\n{rows}")).unwrap();
        assert_eq!(t.infer_task(1).unwrap().0, Task::Classification);
        let rows: String = (0..40).map(|i| format!("{i},{}.5\n", i % 3)).collect();
        let t = table(&format!("x,y\n{rows}")).unwrap();
        assert_eq!(t.infer_task(1).unwrap().0, Task::Regression);
        let t = table("x,y\n1,2\n2,\n").unwrap();
        let err = t.infer_task(1).unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("target \"y\" is missing"),
            "{err}"
        );
    }

    #[test]
    fn encoder_one_hot_imputes_and_drops_constant_columns() {
        let t = table("n,colour,k,y\n1,red,5,a\nNA,blue,5,b\n3,,5,a\n5,red,5,b\n").unwrap();
        let err = fit_all(&t, Impute::None).unwrap_err().to_string();
        assert!(
            err.contains("line 3") && err.contains("column \"n\" has a missing value"),
            "{err}"
        );
        let e = fit_all(&t, Impute::Median).unwrap();
        assert_eq!(e.feature_names(), ["n", "colour=blue", "colour=red"]);
        assert!(
            e.describe()[2].contains("dropped, constant"),
            "{:?}",
            e.describe()
        );
        let s = e.samples(&t, &[0, 1, 2]).unwrap();
        assert_eq!(
            s.features,
            [1.0, 0.0, 1.0, 3.0, 1.0, 0.0, 3.0, 0.0, 1.0],
            "median of 1, 3, 5 fills n; red (most frequent) fills colour"
        );
        assert_eq!(s.targets.labels().unwrap(), [0, 1, 0]);
        let e = fit_all(&t, Impute::Mean).unwrap();
        assert_eq!(e.samples(&t, &[1]).unwrap().features[0], 3.0);
    }

    #[test]
    fn encoder_refuses_text_in_a_numeric_column_and_single_classes() {
        let t = table("n,y\n1,a\n2,b\nx3,a\n4,b\n").unwrap();
        let err = fit_all(&t, Impute::None).unwrap_err().to_string();
        assert!(
            err.contains("line 4") && err.contains("\"x3\", not a number"),
            "{err}"
        );
        let t = table("n,y\n1,a\n2,a\n").unwrap();
        let err = fit_all(&t, Impute::None).unwrap_err().to_string();
        assert!(err.contains("single class"), "{err}");
    }

    #[test]
    fn new_rows_are_found_by_name_or_position() {
        let t = table("n,colour,y\n1,red,a\n2,blue,b\n").unwrap();
        let e = fit_all(&t, Impute::None).unwrap();
        // By name, in another order, without the target.
        let new = table("colour,n\nblue,7\n").unwrap();
        assert_eq!(e.inputs(&new, &[0]).unwrap().features, [7.0, 1.0, 0.0]);
        let unknown = table("colour,n\ngreen,7\n").unwrap();
        let err = e.inputs(&unknown, &[0]).unwrap_err().to_string();
        assert!(err.contains("line 2") && err.contains("never saw"), "{err}");
        let missing = table("colour,m\nred,7\n").unwrap();
        let err = e.inputs(&missing, &[0]).unwrap_err().to_string();
        assert!(err.contains("no column \"n\""), "{err}");
        // Without a header: with or without the target column.
        let t = table("1,red,a\n2,blue,b\n").unwrap();
        let e = fit_all(&t, Impute::None).unwrap();
        let new = table("4,red\n").unwrap();
        assert_eq!(e.inputs(&new, &[0]).unwrap().features, [4.0, 0.0, 1.0]);
        let new = table("4,red,b\n").unwrap();
        assert_eq!(
            e.samples(&new, &[0]).unwrap().targets.labels().unwrap(),
            [1]
        );
        let new = table("4\n").unwrap();
        assert!(
            e.inputs(&new, &[0])
                .unwrap_err()
                .to_string()
                .contains("1 columns")
        );
    }

    #[test]
    fn reads_gzip_files() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("tabular-gz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.csv.gz");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"a,y\n1,p\n2,q\n").unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let t = Table::read(&path, &TableOptions::default()).unwrap();
        assert_eq!(t.columns, ["a", "y"]);
        assert_eq!(t.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
