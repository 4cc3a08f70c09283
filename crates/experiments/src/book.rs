//! The results book: every row of the reports' tables, the report's figure, ours, and
//! whether ours is current. A row is counted from the study files (`experiments/<binary>.toml`:
//! each published grid row, each named model, each final model with published figures);
//! each full run of a table leaves `rows.json` in its results folder with its figure for every
//! row; `book` joins the two into `experiments/results/BOOK.md`.
//!
//! Current means: made with the row's full configuration (no `--quick` or `--epochs`; seed 0;
//! `--only` and `--limit` only choose rows) from the study file as it is now (the SHA-256 of
//! its configuration: [`study_hash`]), under this build's result-key and numerics versions,
//! with a figure for the row. A run of another study configuration or version is `stale`; a
//! row no run answered is `queued`, and where its training has started, the book says which
//! epoch the checkpoint in the table's `checkpoints/` folder holds (a checkpoint is labelled
//! with its row: [`trainer::Checkpointing::label`]).

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use trainer::Progress;

use crate::config::MlpTableConfig;
use crate::estimate::{self, Kind, Rates};
use crate::model_config::{BELOW_REPORT, ModelTableConfig, split_published};
use crate::output::format_value;

/// The file a table run with seed 0 writes into its output folder.
pub const RUN_ROWS: &str = "rows.json";

/// The rows file of a run with `seed`: `rows.json` for seed 0 (the rows the book's figures
/// come from), `rows-seed-<seed>.json` for the others (the spread over seeds).
pub fn rows_file(seed: u64) -> String {
    if seed == 0 {
        RUN_ROWS.to_string()
    } else {
        format!("rows-seed-{seed}.json")
    }
}

/// One row of a report's table, as its study file lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct StudyRow {
    /// The table (a section's name, or the study's title for an MLP table).
    pub table: String,
    /// The row: a model's name, or a grid row's parameters in words.
    pub row: String,
    /// The report's figures for it.
    pub report: Map<String, Value>,
    /// The study's reason why the report's figure is above ours over seeds, if it gives one.
    pub below_report: Option<String>,
}

impl StudyRow {
    /// `table / row`: the line a checkpoint of its training is labelled with.
    pub fn label(&self) -> String {
        format!("{} / {}", self.table, self.row)
    }
}

/// What a table run says about one row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    /// The row's position in the study's list ([`study_rows`]).
    pub index: usize,
    /// The row, as the run labelled it.
    pub row: String,
    /// This project's figures, by the report's names for them.
    pub ours: Map<String, Value>,
    /// The commit that made them (a reused trial's own commit), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// What a table run leaves for the book.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRows {
    /// [`study_hash`] of the study file: SHA-256 of its configuration, its prose left out.
    pub study_sha256: String,
    /// [`search::key::KEY_VERSION`] of the build that ran it.
    pub key_version: u32,
    /// [`trainer::NUMERICS_VERSION`] of the build that ran it.
    pub numerics: u32,
    /// [`trainer::stacked::STACKED_NUMERICS_VERSION`] of the build that ran it, for report
    /// 001's MLP tables (their grids train stacked); absent for other tables, and in MLP
    /// tables' runs before version 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacked_numerics: Option<u32>,
    /// The commit of the build that wrote it (rows give their own where they were made by
    /// an earlier run).
    pub commit: String,
    /// Why the run is not the study's full run, if it is not (`--quick`, `--epochs 3`, ...).
    pub partial: Option<String>,
    /// The seed.
    pub seed: u64,
    /// Every row the run has a figure for.
    pub rows: Vec<RunRow>,
}

/// The file (`experiments/figures.toml`, without its extension) that lists every figure of
/// the reports and the chart of ours answering it; not a study.
pub const FIGURES: &str = "figures";

/// One figure of a report and our answer to it (`[[figure]]` of `figures.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FigureEntry {
    /// 001-004.
    pub report: String,
    /// Its caption in the report.
    pub figure: String,
    /// The binary whose run folder holds our charts.
    #[serde(default)]
    pub table: Option<String>,
    /// Chart files in that folder without extension; `*` stands for any one folder name.
    #[serde(default)]
    pub charts: Vec<String>,
    /// Why no chart answers it, or in what it answers only in part.
    #[serde(default)]
    pub none: Option<String>,
}

#[derive(Deserialize)]
struct FigureFile {
    figure: Vec<FigureEntry>,
}

/// The committed charts matching `pattern` (`models/*/curves`) in `folder`, as paths
/// relative to `folder` with the extension found (SVG preferred).
fn charts_matching(folder: &Path, pattern: &str) -> Vec<String> {
    let mut bases = vec![std::path::PathBuf::new()];
    let parts: Vec<&str> = pattern.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let mut next = Vec::new();
        for base in &bases {
            if *part == "*" {
                let Ok(entries) = std::fs::read_dir(folder.join(base)) else {
                    continue;
                };
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| base.join(n)));
            } else if last {
                for ext in ["svg", "png"] {
                    let file = base.join(format!("{part}.{ext}"));
                    if folder.join(&file).is_file() {
                        next.push(file);
                        break;
                    }
                }
            } else {
                next.push(base.join(part));
            }
        }
        bases = next;
    }
    bases.iter().map(|p| p.display().to_string()).collect()
}

/// The book's list of the reports' figures: each with the committed charts of ours that
/// answer it (linked, relative to the book), or why none does.
fn figure_list(studies: &Path, results: &Path) -> Result<String, crate::Error> {
    let path = studies.join(format!("{FIGURES}.toml"));
    if !path.exists() {
        return Ok(String::new());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| crate::Error::io(&path, e))?;
    let file: FigureFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = String::from(
        "\n## Figures\n\nEvery figure of the reports, as `experiments/figures.toml` lists them, and \
         the charts of ours in the committed run folders that answer it (each written as SVG and \
         PNG by the runs of main; folders made before the charts were drawn with plotters hold \
         SVG only).\n\n| report | figure | ours | note |\n|---|---|---|---|\n",
    );
    for f in &file.figure {
        let ours = match &f.table {
            Some(table) => {
                let folder = results.join(table);
                let found: Vec<String> = f
                    .charts
                    .iter()
                    .flat_map(|c| charts_matching(&folder, c))
                    .collect();
                if found.is_empty() {
                    format!(
                        "`{table}`: {} (not in the committed run yet)",
                        f.charts.join(", ")
                    )
                } else {
                    let shown: Vec<String> = found
                        .iter()
                        .take(4)
                        .map(|c| format!("[{c}]({table}/{c})"))
                        .collect();
                    let more = found.len().saturating_sub(4);
                    format!(
                        "`{table}`: {}{}",
                        shown.join(", "),
                        if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        }
                    )
                }
            }
            None => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {ours} | {} |",
            f.report,
            f.figure.replace('|', "/"),
            f.none.as_deref().unwrap_or("").replace('|', "/")
        );
    }
    Ok(out)
}

/// A study file's top-level keys that are prose: they caption its tables and explain them,
/// and change no figure, so rewording them leaves its runs current.
const PROSE_KEYS: [&str; 2] = ["title", "notes"];

/// SHA-256, in hex, of what in a study file determines its runs: the parsed TOML without its
/// prose (`title` and `notes` at its top, every `below_report`) and comments, written out
/// again; the raw text where it does not parse (such a file runs nothing).
pub fn study_hash(text: &str) -> String {
    let keyed = toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|mut table| {
            for key in PROSE_KEYS {
                table.remove(key);
            }
            remove_below_report(&mut table);
            toml::to_string(&table).ok()
        })
        .unwrap_or_else(|| text.to_string());
    data::fetch::sha256_hex(keyed.as_bytes()).unwrap_or_default()
}

/// Removes [`BELOW_REPORT`] from `table` and every table within it.
fn remove_below_report(table: &mut toml::Table) {
    table.remove(BELOW_REPORT);
    for (_, value) in table.iter_mut() {
        match value {
            toml::Value::Table(t) => remove_below_report(t),
            toml::Value::Array(items) => {
                for item in items {
                    if let toml::Value::Table(t) = item {
                        remove_below_report(t);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Why a run with these flags is not the study's full run, if it is not.
pub fn partial_run(flags: &crate::cli::Flags) -> Option<String> {
    let mut why = Vec::new();
    if flags.quick {
        why.push("--quick".to_string());
    }
    if let Some(e) = flags.epochs {
        why.push(format!("--epochs {e}"));
    }
    // `--limit`, `--rows` and `--only` choose which rows run, not how: a row they ran is made
    // with its full configuration, and one they skipped has no figure.
    (!why.is_empty()).then(|| why.join(" "))
}

/// A study file, read as the binary that runs it reads it.
#[derive(Debug, Clone)]
pub enum Study {
    /// Sections of Keras-style models (`[[section]]`).
    Models(Box<ModelTableConfig>),
    /// One grid of report 001's MLP (`[grid]`).
    Mlp(Box<MlpTableConfig>),
}

impl Study {
    /// Parses a study file's `text` (read from `path`, named in errors): a file with
    /// `[[section]]`s is a table of models, any other an MLP table.
    pub fn parse(text: &str, path: &Path) -> Result<Self, crate::Error> {
        let at = |e: toml::de::Error| format!("{}: {e}", path.display());
        let table: toml::Table = toml::from_str(text).map_err(at)?;
        Ok(if table.contains_key("section") {
            Study::Models(Box::new(toml::from_str(text).map_err(at)?))
        } else {
            Study::Mlp(Box::new(toml::from_str(text).map_err(at)?))
        })
    }
}

/// `name value, ...` of a row's parameters.
fn params_text(params: &Map<String, Value>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k} {}", format_value(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every report row a study lists, in the order its run reports them: per section its named
/// models, then its published grid rows; for an MLP table its published rows, then the final
/// model where the report gives its figures.
pub fn study_rows(study: &Study) -> Vec<StudyRow> {
    let json = crate::config::to_json;
    let mut rows = Vec::new();
    match study {
        Study::Models(config) => {
            for section in &config.sections {
                for model in &section.models {
                    let mut report = json(&model.published);
                    report.remove("label");
                    rows.push(StudyRow {
                        table: section.name.clone(),
                        row: model.name.clone(),
                        report,
                        below_report: model.below_report.clone(),
                    });
                }
                let dims: Vec<String> = section.grid.keys().cloned().collect();
                for published in &section.published {
                    let (mut figures, params) = split_published(json(published), &dims);
                    figures.remove("label");
                    let below_report = published.get(BELOW_REPORT).and_then(|v| v.as_str());
                    rows.push(StudyRow {
                        table: section.name.clone(),
                        row: params_text(&params),
                        report: figures,
                        below_report: below_report.map(str::to_string),
                    });
                }
            }
        }
        Study::Mlp(config) => {
            for published in &config.published {
                let (params, figures): (Map<String, Value>, Map<String, Value>) = json(published)
                    .into_iter()
                    .partition(|(k, _)| search::MLP_PARAMS.contains(&k.as_str()));
                rows.push(StudyRow {
                    table: config.title.clone(),
                    row: params_text(&params),
                    report: figures,
                    below_report: None,
                });
            }
            let final_figures = config.final_model.as_ref().map(|f| json(&f.published));
            if let Some(figures) = final_figures.filter(|f| !f.is_empty()) {
                rows.push(StudyRow {
                    table: config.title.clone(),
                    row: "final model".into(),
                    report: figures,
                    below_report: None,
                });
            }
        }
    }
    rows
}

/// Where a row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowStatus {
    /// Ours comes from a full run of the study as it is, under this build's versions.
    Current,
    /// Ours comes from a run of another study configuration, version, or a partial run.
    Stale,
    /// No run has a figure for it yet.
    Queued,
}

/// The figure a row is read by: the first of these that the report gives.
const MAIN_FIGURES: [&str; 8] = [
    "test_accuracy",
    "test_score",
    "test_r2",
    "val_accuracy",
    "train_accuracy",
    "train_score",
    "epochs",
    "loss",
];

fn main_figure(report: &Map<String, Value>) -> Option<&str> {
    MAIN_FIGURES
        .into_iter()
        .find(|f| report.contains_key(*f))
        .or_else(|| report.keys().next().map(String::as_str))
}

fn cell(value: Option<&Value>) -> String {
    match value {
        Some(Value::Number(n)) => n
            .as_f64()
            .map_or_else(|| n.to_string(), |x| format!("{x:.4}")),
        Some(other) => format_value(other),
        None => "-".into(),
    }
}

/// Rows counted so far: current ones, and all.
#[derive(Default)]
struct Count {
    current: usize,
    total: usize,
}

/// The study files' names in `studies` (without `.toml`), sorted, less the benchmark's and
/// the figure list.
fn study_names(studies: &Path) -> Result<Vec<String>, crate::Error> {
    let mut names: Vec<String> = std::fs::read_dir(studies)
        .map_err(|e| crate::Error::io(studies, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".toml").map(String::from))
        .filter(|n| n != "bench" && n != FIGURES)
        .collect();
    names.sort();
    Ok(names)
}

/// The book's section for the study `name`: a line per row with the report's figure, ours,
/// the seeds' spread, the commit and the status; counts its rows into `count` and its
/// queued rows' estimates into `queued`.
fn table_lines(
    name: &str,
    studies: &Path,
    results: &Path,
    rates: &Rates,
    count: &mut Count,
    queued: &mut Queued,
) -> Result<String, crate::Error> {
    let path = studies.join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).map_err(|e| crate::Error::io(&path, e))?;
    let study = Study::parse(&text, &path)?;
    let rows = study_rows(&study);
    let estimates = row_estimates(&study, &path, rates)?;
    let run = read_run(&results.join(name).join(RUN_ROWS))?;
    let seeds = seed_runs(&results.join(name), &text)?;
    let started = checkpoints(&results.join(name).join("checkpoints"));
    let mut lines = format!(
        "\n## `{name}` ({} row(s)): `cargo run --release -p experiments --bin {name}`\n\n",
        rows.len()
    );
    lines.push_str("| table | row | figure | report | ours | seeds | commit | status |\n");
    lines.push_str("|---|---|---|---|---|---|---|---|\n");
    for (i, row) in rows.iter().enumerate() {
        count.total += 1;
        let figure = main_figure(&row.report).unwrap_or("-");
        let ours = run
            .as_ref()
            .and_then(|r| r.rows.iter().find(|o| o.index == i).map(|o| (r, o)))
            .filter(|(_, o)| o.ours.get(figure).is_some_and(|v| !v.is_null()));
        let status = match ours {
            None => RowStatus::Queued,
            Some((r, _)) if is_current(r, &text) => RowStatus::Current,
            Some(_) => RowStatus::Stale,
        };
        if status == RowStatus::Current {
            count.current += 1;
        }
        let spread = (status == RowStatus::Current)
            .then(|| seed_spread(&seeds, ours.map(|(_, o)| o), i, figure))
            .flatten();
        let commit = ours.map_or("-".to_string(), |(r, o)| {
            o.commit
                .as_ref()
                .unwrap_or(&r.commit)
                .chars()
                .take(7)
                .collect()
        });
        let _ = writeln!(
            lines,
            "| {} | {} | {figure} | {} | {} | {} | {commit} | {} |",
            row.table.replace('|', "/"),
            row.row.replace('|', "/"),
            cell(row.report.get(figure)),
            ours.map_or("-".into(), |(_, o)| cell(o.ours.get(figure))),
            spread.map_or("-".into(), |s| s.text()),
            match (status, ours) {
                (RowStatus::Current, _) => current_status(row, figure, spread),
                (RowStatus::Stale, Some((r, _))) => format!("stale ({})", stale_reason(r, &text)),
                _ => queued.add(
                    estimates.get(i).copied().flatten(),
                    started.iter().find(|p| p.label == row.label()),
                ),
            }
        );
    }
    Ok(lines)
}

/// The book's text for the studies in `studies` (`experiments/`) and the runs in
/// `results` (`experiments/results/`): its first line `rows with a current figure of
/// ours: N / M`, then one line per row.
pub fn book(studies: &Path, results: &Path) -> Result<String, crate::Error> {
    let rates = Rates::measure(results)?;
    let mut count = Count::default();
    let mut queued = Queued::default();
    let mut lines = String::new();
    for name in study_names(studies)? {
        lines.push_str(&table_lines(
            &name,
            studies,
            results,
            &rates,
            &mut count,
            &mut queued,
        )?);
    }
    let Count { current, total } = count;
    Ok(format!(
        "rows with a current figure of ours: {current} / {total}\n\n# The results book\n\n\
         Every row of the four reports' tables, as the study files in `experiments/` list them, \
         with the report's figure and this project's from the committed runs in \
         `experiments/results/`. Made by `cargo run --release -p experiments --bin book`, never \
         by hand; CI checks that it matches the committed results. A row is current when its \
         figure was made with the row's full configuration (no `--quick` or `--epochs`; seed 0; \
         `--only`, `--rows` and `--limit` only choose rows) from the study file as it is now, under this build's result-key and numerics versions; stale when its figure \
         comes from another study configuration (its title, notes and reasons aside), version or a partial run; queued when no run has one (where its training has started, with the epoch its \
         checkpoint in `<table>/checkpoints/` holds). Seeds: the mean and standard deviation of a current row's figure over seed 0 and \
         every current run with another seed (`--seed N --out experiments/results/<table>/seed-N` \
         writes its `rows-seed-N.json`).\n\n\
         {}\n{lines}{}",
        queued.summary(&rates),
        figure_list(studies, results)?
    ))
}

/// Each row's estimated training time on this machine, where its model and a measured rate
/// of its kind are known (tables of Keras-style models; report 001's MLP grids train
/// stacked, at rates of their own, and are all run).
fn row_estimates(
    study: &Study,
    path: &Path,
    rates: &Rates,
) -> Result<Vec<Option<f64>>, crate::Error> {
    let Study::Models(config) = study else {
        return Ok(Vec::new());
    };
    let Some(Ok(dataset)) = config.dataset.named().map(data::DatasetName::parse) else {
        return Ok(Vec::new());
    };
    let size = dataset.size();
    let input = models::Shape::from_dims(size.shape)?;
    let trainings = crate::model_table::row_trainings(config, input, path)?;
    Ok(trainings
        .iter()
        .map(|t| {
            let (spec, training) = t.as_ref()?;
            let flops =
                estimate::training_flops(spec, size.train, training.validation, training.epochs)
                    .ok()?;
            let passes =
                estimate::training_passes(size.train, training.validation, training.epochs);
            let forward = spec.forward_flops().ok()? as f64;
            rates.seconds(Kind::of(spec), forward, flops, passes)
        })
        .collect())
}

/// What the checkpoints in `folder` (a table's `checkpoints/`) say of their trainings, in
/// file-name order; a file that cannot be read is reported and left out (its run starts
/// over).
fn checkpoints(folder: &Path) -> Vec<Progress> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ckpt"))
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|p| {
            trainer::checkpoint::progress(p)
                .map_err(|e| eprintln!("warning: {e}"))
                .ok()
        })
        .collect()
}

/// The queued rows and their estimated time.
#[derive(Default)]
struct Queued {
    rows: usize,
    seconds: f64,
    unestimated: usize,
}

impl Queued {
    /// Counts a queued row; its status cell, with the epochs its checkpoint holds where
    /// its training has started.
    fn add(&mut self, seconds: Option<f64>, started: Option<&Progress>) -> String {
        self.rows += 1;
        let mut cell = match seconds {
            Some(s) => {
                self.seconds += s;
                format!("queued, about {}", estimate::duration_text(s))
            }
            None => {
                self.unestimated += 1;
                "queued".into()
            }
        };
        if let Some(p) = started {
            let _ = write!(cell, "; checkpoint after epoch {}", p.epochs_done);
            if p.epochs > 0 {
                let _ = write!(cell, " of {}", p.epochs);
            }
        }
        cell
    }

    fn summary(&self, rates: &Rates) -> String {
        let runs = |kind: Kind| {
            rates
                .span(kind)
                .map_or(format!("no {} run yet", kind.name()), |(n, low, high)| {
                    format!(
                        "{n} committed runs of {} models at {low:.1}-{high:.1} GFLOP/s, at most \
                         {:.0} item passes/s (the 90th percentile of them)",
                        kind.name(),
                        rates.fastest_passes(kind).unwrap_or(f64::NAN)
                    )
                })
        };
        format!(
            "Queued: {} row(s), about {} of training on the machine that made the committed \
             runs ({}; {}){}. An estimate is the row's training FLOPs (3x the forward FLOPs per \
             training item, 1x per validation item, times the configured epochs: an upper \
             bound where early stopping ends sooner) over the median GFLOP/s of the {} \
             committed runs of its kind nearest to it in forward FLOPs per item (larger models \
             keep the cores busier), and never less than its item passes (3 per training item, \
             1 per validation item, per epoch) over nearly the fastest pace per item of its \
             kind (the 90th percentile): small models are bound by per-item work, not FLOPs.\n",
            self.rows,
            estimate::duration_text(self.seconds),
            runs(Kind::Convolutional),
            runs(Kind::Dense),
            if self.unestimated > 0 {
                format!(", {} of them without an estimate", self.unestimated)
            } else {
                String::new()
            },
            estimate::NEAREST
        )
    }
}

/// `current`, and where the report's figure lies above our mean over seeds by more than two
/// standard deviations, that and the study's reason.
fn current_status(row: &StudyRow, figure: &str, spread: Option<Spread>) -> String {
    let report = row.report.get(figure).and_then(Value::as_f64);
    match (report, spread) {
        (Some(r), Some(s)) if r > s.mean + 2.0 * s.std => format!(
            "current; the report is above our mean + 2σ: {}",
            row.below_report
                .as_deref()
                .unwrap_or("no reason stated yet")
                .replace('|', "/")
        ),
        _ => "current".into(),
    }
}

/// The `rows-seed-*.json` files in `folder`, sorted.
fn seed_files(folder: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("rows-seed-") && n.ends_with(".json"))
        })
        .collect();
    files.sort();
    files
}

/// The current runs of seeds other than 0 of a table: `rows-seed-*.json` in its folder and
/// in its `seed-*` subfolders (where `--seed N --out <table>/seed-N` puts a run, so that
/// its table, histories and models do not replace seed 0's).
fn seed_runs(folder: &Path, study_text: &str) -> Result<Vec<RunRows>, crate::Error> {
    let mut files = seed_files(folder);
    if let Ok(entries) = std::fs::read_dir(folder) {
        let mut subfolders: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("seed-"))
            })
            .collect();
        subfolders.sort();
        for sub in subfolders {
            files.extend(seed_files(&sub));
        }
    }
    let mut runs = Vec::new();
    for file in files {
        // Current as seed 0's run is, apart from the seed itself.
        if let Some(run) = read_run(&file)?
            && run.seed != 0
            && departures_from_study(&run, study_text).is_empty()
            && !runs.iter().any(|r: &RunRows| r.seed == run.seed)
        {
            runs.push(run);
        }
    }
    Ok(runs)
}

/// A row's figure over seeds: seed 0's and every current other seed's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Mean over the seeds.
    pub mean: f64,
    /// Sample standard deviation (n - 1).
    pub std: f64,
    /// Seeds.
    pub seeds: usize,
}

impl Spread {
    /// The spread of `values` (at least two).
    pub fn of(values: &[f64]) -> Option<Spread> {
        let n = values.len();
        if n < 2 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        Some(Spread {
            mean,
            std: var.sqrt(),
            seeds: n,
        })
    }

    fn text(&self) -> String {
        format!("{:.4} ± {:.4} ({} seeds)", self.mean, self.std, self.seeds)
    }
}

fn seed_spread(
    seeds: &[RunRows],
    seed0: Option<&RunRow>,
    index: usize,
    figure: &str,
) -> Option<Spread> {
    let value = |r: &RunRow| r.ours.get(figure).and_then(Value::as_f64);
    let mut values: Vec<f64> = seed0.and_then(value).into_iter().collect();
    for run in seeds {
        if let Some(v) = run.rows.iter().find(|r| r.index == index).and_then(value) {
            values.push(v);
        }
    }
    Spread::of(&values)
}

fn read_run(path: &Path) -> Result<Option<RunRows>, crate::Error> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()).into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(crate::Error::from(format!("{}: {e}", path.display()))),
    }
}

fn is_current(run: &RunRows, study_text: &str) -> bool {
    stale_reason(run, study_text).is_empty()
}

/// Why a run's figures are not current ("" when they are): [`departures_from_study`], and seed 0.
fn stale_reason(run: &RunRows, study_text: &str) -> String {
    let mut why = departures_from_study(run, study_text);
    if run.seed != 0 {
        why.push(format!("seed {}", run.seed));
    }
    why.join(", ")
}

/// Why a run was not made from the study as it is now, whatever its seed: another study
/// text, key or numerics version, or a partial run (empty when it was).
fn departures_from_study(run: &RunRows, study_text: &str) -> Vec<String> {
    let mut why = Vec::new();
    if run.study_sha256 != study_hash(study_text) {
        why.push("study file changed since".to_string());
    }
    if run.key_version != search::key::KEY_VERSION {
        why.push(format!("key version {}", run.key_version));
    }
    if run.numerics != trainer::NUMERICS_VERSION {
        why.push(format!("numerics version {}", run.numerics));
    }
    if run.stacked_numerics != stacked_numerics(study_text) {
        why.push(format!(
            "stacked numerics version {}",
            run.stacked_numerics.unwrap_or(1)
        ));
    }
    if let Some(p) = &run.partial {
        why.push(p.clone());
    }
    why
}

/// The stacked numerics version a current run of the study with `study_text` records: this
/// build's for an MLP table (no `[[section]]`), none for a table of models.
fn stacked_numerics(study_text: &str) -> Option<u32> {
    let sections =
        toml::from_str::<toml::Table>(study_text).is_ok_and(|t| t.contains_key("section"));
    (!sections).then_some(trainer::stacked::STACKED_NUMERICS_VERSION)
}

/// Writes `rows.json` for a run of the study at `study` with `flags`. The rows of an earlier
/// run of the same study text, versions, seed and scale that this run did not answer (it ran
/// other rows with `--only`) are kept.
pub fn write_run_rows(
    out: &crate::output::Output,
    study: &Path,
    flags: &crate::cli::Flags,
    mut rows: Vec<RunRow>,
) -> Result<(), crate::Error> {
    let text = std::fs::read_to_string(study).map_err(|e| crate::Error::io(study, e))?;
    let file = rows_file(flags.seed);
    if let Some(earlier) = read_run(&out.path(&file))?
        && earlier.study_sha256 == study_hash(&text)
        && earlier.key_version == search::key::KEY_VERSION
        && earlier.numerics == trainer::NUMERICS_VERSION
        && earlier.stacked_numerics == stacked_numerics(&text)
        && earlier.partial == partial_run(flags)
        && earlier.seed == flags.seed
    {
        let answered: Vec<usize> = rows.iter().map(|r| r.index).collect();
        rows.extend(
            earlier
                .rows
                .into_iter()
                .filter(|r| !answered.contains(&r.index)),
        );
        rows.sort_by_key(|r| r.index);
    }
    let run = RunRows {
        study_sha256: study_hash(&text),
        key_version: search::key::KEY_VERSION,
        numerics: trainer::NUMERICS_VERSION,
        stacked_numerics: stacked_numerics(&text),
        commit: search::key::commit().to_string(),
        partial: partial_run(flags),
        seed: flags.seed,
        rows,
    };
    let json = serde_json::to_string_pretty(&run)?;
    out.write(&file, &format!("{json}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_both_kinds_of_study() {
        let study = |text: &str| Study::parse(text, Path::new("t.toml")).unwrap();
        let split = "dataset = \"iris\"\n[split]\nkind = \"stratified\"\n";
        let mlp = study(&format!(
            "title = \"T\"\n{split}[grid]\neta = [0.1]\n[[published]]\nhidden_layer = [8]\n\
             eta = 0.1\ntest_score = 0.9\n[final]\nparams = {{ eta = 0.1 }}\n\
             published = {{ test_score = 0.8 }}\n"
        ));
        let rows = study_rows(&mlp);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].row, "hidden_layer (8,), eta 0.1");
        assert_eq!(rows[0].report["test_score"], 0.9);
        assert_eq!(rows[1].row, "final model");
        let models = study(&format!(
            "{split}[[section]]\nname = \"S\"\n[[section.model]]\nname = \"a\"\n\
             layers = \"dense(3)\"\npublished = {{ test_accuracy = 0.5 }}\n[[section]]\n\
             name = \"G\"\nlayers = \"x\"\n[section.grid]\nf = [1, 2]\n[[section.published]]\n\
             f = 2\nlabel = \"two\"\nval_accuracy = 0.7\nbelow_report = \"why\"\n"
        ));
        let rows = study_rows(&models);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].table.as_str(), rows[1].row.as_str()), ("G", "f 2"));
        assert_eq!(main_figure(&rows[1].report), Some("val_accuracy"));
        // A grid row's reason is neither a parameter nor a figure.
        assert_eq!(rows[1].below_report.as_deref(), Some("why"));
        assert_eq!(rows[1].report.len(), 1, "{:?}", rows[1].report);
    }

    #[test]
    fn the_spread_is_the_sample_standard_deviation() {
        let s = Spread::of(&[0.90, 0.92, 0.94]).unwrap();
        assert!((s.mean - 0.92).abs() < 1e-12);
        assert!((s.std - 0.02).abs() < 1e-12);
        assert_eq!(s.seeds, 3);
        assert!(Spread::of(&[0.9]).is_none());
    }

    #[test]
    fn the_study_key_leaves_out_prose_and_comments_only() {
        let text = "title = \"T\"\nnotes = [\"about 130 s an epoch\"]\ndataset = \"iris\"\n\
                    [[section]]\nname = \"S\"\nlayers = \"dense(3)\"\n";
        let key = study_hash(text);
        let reworded = text
            .replace("\"T\"", "\"Another title\"")
            .replace("about 130 s an epoch", "27 s an epoch, measured")
            .replace("[[section]]", "# a comment\n[[section]]");
        assert_eq!(study_hash(&reworded), key);
        let with_reason = |reason: &str| {
            format!(
                "{text}[[section.model]]\nname = \"m\"\nlayers = \"dense(3)\"\nbelow_report = \"{reason}\"\n"
            )
        };
        assert_eq!(study_hash(&with_reason("a")), study_hash(&with_reason("b")));
        for changed in [
            text.replace("dense(3)", "dense(4)"),
            text.replace("\"S\"", "\"S2\""),
            text.replace("iris", "mnist"),
            format!("{text}published = {{ test_accuracy = 0.5 }}\n"),
        ] {
            assert_ne!(study_hash(&changed), key, "{changed}");
        }
        // A file that does not parse is keyed by its text.
        assert_ne!(study_hash("x = ["), study_hash("x = [ "));
    }

    #[test]
    fn an_mlp_table_is_current_only_under_this_builds_stacked_numerics() {
        let mlp = "dataset = \"iris\"\n[grid]\nhidden_layer = [[5]]\n";
        let models = "dataset = \"iris\"\n[[section]]\nname = \"S\"\n";
        let run = |text: &str, stacked: Option<u32>| RunRows {
            study_sha256: study_hash(text),
            key_version: search::key::KEY_VERSION,
            numerics: trainer::NUMERICS_VERSION,
            stacked_numerics: stacked,
            commit: "abcdef0".into(),
            partial: None,
            seed: 0,
            rows: Vec::new(),
        };
        let current = Some(trainer::stacked::STACKED_NUMERICS_VERSION);
        assert!(departures_from_study(&run(mlp, current), mlp).is_empty());
        let before = departures_from_study(&run(mlp, None), mlp);
        assert_eq!(before, ["stacked numerics version 1"]);
        assert!(!departures_from_study(&run(mlp, Some(1)), mlp).is_empty());
        // A table of models trains nothing stacked: it records none and needs none.
        assert!(departures_from_study(&run(models, None), models).is_empty());
        assert!(!departures_from_study(&run(models, current), models).is_empty());
    }

    #[test]
    fn the_book_spreads_a_current_row_over_current_seed_runs() {
        let dir = tempfile::tempdir().unwrap();
        let (studies, results) = (dir.path().join("studies"), dir.path().join("results"));
        std::fs::create_dir_all(&studies).unwrap();
        let study = "dataset = \"iris\"\n[split]\nkind = \"stratified\"\n[[section]]\n\
                     name = \"S\"\n[[section.model]]\nname = \"a\"\nlayers = \"dense(3, softmax)\"\n\
                     published = { test_accuracy = 0.5 }\n";
        std::fs::write(studies.join("t.toml"), study).unwrap();
        let run = |seed: u64, accuracy: f64, text: &str| RunRows {
            study_sha256: study_hash(text),
            key_version: search::key::KEY_VERSION,
            numerics: trainer::NUMERICS_VERSION,
            stacked_numerics: None,
            commit: "abcdef0".into(),
            partial: None,
            seed,
            rows: vec![RunRow {
                index: 0,
                row: "a".into(),
                ours: serde_json::json!({ "test_accuracy": accuracy })
                    .as_object()
                    .unwrap()
                    .clone(),
                commit: None,
            }],
        };
        let write = |path: std::path::PathBuf, run: RunRows| {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, serde_json::to_string(&run).unwrap()).unwrap();
        };
        let table = results.join("t");
        write(table.join(RUN_ROWS), run(0, 0.90, study));
        write(table.join("seed-1").join(rows_file(1)), run(1, 0.92, study));
        write(table.join(rows_file(2)), run(2, 0.94, study));
        // Another study text's seed: not counted.
        write(
            table.join("seed-3").join(rows_file(3)),
            run(3, 0.10, "other"),
        );
        let text = book(&studies, &results).unwrap();
        assert!(
            text.starts_with("rows with a current figure of ours: 1 / 1\n"),
            "{text}"
        );
        assert!(
            text.contains("| 0.9000 | 0.9200 ± 0.0200 (3 seeds) |"),
            "{text}"
        );
        assert!(text.contains("| current |"), "{text}");
    }

    #[test]
    fn a_report_above_our_mean_by_two_sigma_is_marked_with_its_reason() {
        let mut row = StudyRow {
            table: "T".into(),
            row: "a".into(),
            report: serde_json::json!({ "test_accuracy": 0.95 })
                .as_object()
                .unwrap()
                .clone(),
            below_report: None,
        };
        let spread = Spread::of(&[0.90, 0.92, 0.94]);
        let status = current_status(&row, "test_accuracy", spread);
        assert_eq!(status, "current");
        row.report["test_accuracy"] = Value::from(0.97);
        let status = current_status(&row, "test_accuracy", spread);
        assert!(status.ends_with("no reason stated yet"), "{status}");
        row.below_report = Some("its validation part differs".into());
        let status = current_status(&row, "test_accuracy", spread);
        assert!(status.ends_with("its validation part differs"), "{status}");
        assert_eq!(current_status(&row, "test_accuracy", None), "current");
    }
}
