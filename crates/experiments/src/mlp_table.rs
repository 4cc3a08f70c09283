//! Report 001's MLP tables (and the diabetes regression study): run the grid, put the
//! project's figures beside each published row, list the best trials, train the report's
//! final model, and write everything to the output folder.

use std::fmt::Write as _;
use std::time::Instant;

use data::{Samples, Targets};
use models::{Shape, select_device};
use search::halving::with_epochs;
use search::{
    Grid, MLP_COLUMNS, MLP_PARAMS, MlpSearch, RankBy, ResultsFile, SearchOptions, Table, Trial,
    TrialRecord, ranked,
};
use serde_json::{Map, Value};
use trainer::as_written::{AsWrittenFit, fit_as_written};
use trainer::{History, Mlp, Task, TrainedModel};

use crate::cli::Flags;
use crate::config::{self, MlpTableConfig};
use crate::output::{Output, format_value};
use crate::plot;

/// The project's figure that a published figure's name stands for.
fn our_figure(record: &TrialRecord, name: &str) -> Option<f64> {
    match name {
        "test_score" | "test_accuracy" | "test_r2" => record.test_score,
        "train_score" | "train_accuracy" | "train_r2" => record.train_score,
        "loss" | "train_loss" | "train_mse" => record.train_loss,
        "test_loss" | "test_mse" => record.test_loss,
        _ => None,
    }
}

fn mlp_params(table: &Map<String, Value>) -> Map<String, Value> {
    table
        .iter()
        .filter(|(k, _)| MLP_PARAMS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Checks a study file without its data or training: it parses, and its defaults, every
/// grid trial, published row and final model make an MLP that builds for `like` (any data
/// of the dataset's shape and targets, one item is enough). Returns the number of trials.
pub fn check_study(path: &std::path::Path, like: &Samples) -> Result<usize, crate::Error> {
    let at = |what: &str, e: String| format!("{}: {what}: {e}", path.display());
    let config: MlpTableConfig = config::read(path)?;
    let task = match like.targets {
        Targets::Classes { .. } => Task::Classification,
        Targets::Values { .. } => Task::Regression,
    };
    let device = burn::tensor::Device::default();
    let defaults = MlpSearch::new(like, Mlp::new(task, 0), device.clone())
        .mlp(&Trial::new(0, config::to_json(&config.defaults)))
        .map_err(|e| at("[defaults]", e.to_string()))?;
    let search = MlpSearch::new(like, defaults, device);
    let grid = Grid::from_value(Value::Object(config::to_json(&config.grid)))
        .map_err(|e| at("[grid]", e.to_string()))?;
    let mut trials = grid.trials();
    for (i, row) in config.published.iter().enumerate() {
        trials.push(Trial::new(trials.len(), mlp_params(&config::to_json(row))));
        search
            .check(&trials[trials.len() - 1..])
            .map_err(|e| at(&format!("published row {}", i + 1), e.to_string()))?;
    }
    if let Some(f) = &config.final_model {
        let last = Trial::new(trials.len(), config::to_json(&f.params));
        search
            .check(std::slice::from_ref(&last))
            .map_err(|e| at("[final]", e.to_string()))?;
    }
    search
        .check(&trials)
        .map_err(|e| at("[grid]", e.to_string()))?;
    // Both rules carve it: `validation` to rank on, `test` for the validation pick shown beside.
    if !(config.validation_fraction > 0.0 && config.validation_fraction < 1.0) {
        return Err(crate::Error::from(at(
            "validation_fraction",
            format!("{} must be between 0 and 1", config.validation_fraction),
        )));
    }
    Ok(grid.len())
}

/// Runs the MLP table experiment `name` (the binary's name) with `flags`.
///
/// Longer than this codebase's functions should be (about 250 lines): it is the sequence of
/// a table run, each step a call (read the study, load and split the data, build the
/// search, run it, write the rows, the best trials, the charts, the final model, the
/// footer and the files), and the steps share a dozen values (data, search, records,
/// report) that a struct would only rename.
pub fn run(name: &str, flags: &Flags) -> Result<(), crate::Error> {
    let started = Instant::now();
    if flags.only.is_some() {
        return Err(
            "--only picks sections and models of tables of Keras-style models; this table is \
             one grid: use --limit, or copy its experiment file and shrink the grid"
                .into(),
        );
    }
    let config_path = flags.config_path(name);
    let mut config: MlpTableConfig = config::read(&config_path)?;
    config.title = config::title_or_file_name(&config.title, &config_path);
    let loaded = config::load_run_data(
        flags,
        &config_path,
        &config.dataset,
        config.split,
        &config.quick,
    )?;
    let form = loaded.form;
    let data_name = loaded.data_name(&config.dataset);
    let encoder = loaded.encoder.clone();
    let (train, test) = (loaded.train, loaded.test);
    let task = match train.targets {
        Targets::Classes { .. } => Task::Classification,
        Targets::Values { .. } => Task::Regression,
    };
    let (fit_part, validation) = match config.rank {
        RankBy::Test => (train.clone(), None),
        RankBy::Validation => {
            let (fit, validation) =
                carve_validation(&train, config.validation_fraction, flags.seed)
                    .map_err(|e| format!("{}: {e}", config_path.display()))?;
            (fit, Some(validation))
        }
    };
    let selected = select_device(flags.device)?;
    let base = Mlp::new(task, flags.seed);
    let defaults = MlpSearch::new(&train, base, selected.device.clone())
        .mlp(&Trial::new(0, config::to_json(&config.defaults)))
        .map_err(|e| format!("{}: [defaults]: {e}", config_path.display()))?;
    let mut search = MlpSearch::new(&fit_part, defaults, selected.device.clone());
    search.validation = validation.as_ref();
    search.test = Some(&test);
    // Only a run with a validation part states its fraction: without one the data are what
    // they were before validation splits existed, and so are the keys.
    search.data = config::DataKey {
        validation_fraction: validation.as_ref().map(|_| config.validation_fraction),
        ..config::data_config(
            &data_name,
            &train,
            form,
            config.split,
            flags.seed,
            flags.quick.then_some(&config.quick),
        )
    }
    .to_value();
    let grid = Grid::from_value(Value::Object(config::to_json(&config.grid)))
        .map_err(|e| format!("{}: [grid]: {e}", config_path.display()))?;

    let Planned {
        trials,
        row_trials,
        final_mlp,
    } = plan_trials(&config, &grid, &search, flags)
        .map_err(|e| format!("{}: {e}", config_path.display()))?;

    let input = Shape::from_dims(&train.shape)?;
    let outputs = match &train.targets {
        Targets::Classes { classes, .. } => classes.len(),
        Targets::Values { width, .. } => *width,
    };
    if flags.summary {
        return print_summaries(&trials, final_mlp.as_ref(), &search, input, outputs);
    }

    let out = Output::create(&flags.out_dir(name))?;
    println!(
        "{}{}\n{} trials on {} ({} train, {} test items), {} worker(s), device {}",
        config.title,
        if flags.quick { " [quick]" } else { "" },
        trials.len(),
        config.dataset,
        train.len(),
        test.len(),
        flags.workers(),
        selected.description
    );
    if let Some(split) = &loaded.indices {
        // Rows of the dataset's file in each part, for running other tools on this split.
        let json = serde_json::json!({ "train": split.train, "test": split.held_out });
        out.write("split.json", &json.to_string())?;
    }
    flags.merge_shards(&out.dir)?;
    let mut results = ResultsFile::open(&out.path("trials.jsonl"))?;
    let options = SearchOptions {
        workers: flags.workers(),
        progress: true,
        rank: config.rank,
    };
    let summary = search.run(&flags.shard_of(trials.clone()), &mut results, &options)?;
    if let Some(shard) = flags.shard {
        return crate::model_table::shard_done(shard, &summary, &out);
    }
    if summary.skipped > 0 {
        println!(
            "{} trial(s) were already in {} (delete it to rerun them)",
            summary.skipped,
            out.path("trials.jsonl").display()
        );
    }
    let records = results.records_of(&trials);
    // Beside the report's test ranking: the trial a validation split would have picked.
    let pick = match config.rank {
        RankBy::Test => Some(
            validation_pick(
                &config,
                &search,
                &trials,
                &mut results,
                &options,
                flags.seed,
            )
            .map_err(|e| format!("{}: {e}", config_path.display()))?,
        ),
        RankBy::Validation => None,
    };

    let mut report = String::new();
    let _ = writeln!(
        report,
        "# {}{}\n",
        config.title,
        if flags.quick {
            " (quick run: a subset of the data, fewer epochs and trials; not the report's scale)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        report,
        "{}{} ({} train, {} test items); {} trials; device {}; seed {}.\n",
        config::report_prefix(&config.report),
        config.dataset,
        train.len(),
        test.len(),
        trials.len(),
        selected.description,
        flags.seed
    );

    // The report's rows with the project's figures beside them.
    let as_written = if config.as_written {
        as_written_rows(&search, &row_trials, &train, &test, &selected.device)
    } else {
        Vec::new()
    };
    let (rows_table, mut run_rows) =
        report_rows(&config, &trials, &row_trials, &records, &as_written);
    if !rows_table.rows.is_empty() {
        let _ = writeln!(
            report,
            "## The report's rows, with this project's figures\n\n{}",
            rows_table.to_markdown()
        );
    }
    if config.as_written {
        let _ = writeln!(
            report,
            "{}\n",
            as_written_verdict(&config.published, &as_written)
        );
    }

    // The project's best trials.
    let best = ranked(&records, config.rank);
    let score_name = if task == Task::Classification {
        "accuracy"
    } else {
        "R²"
    };
    let best_table = best_table(&best, &search, task, flags.top);
    let _ = writeln!(
        report,
        "## This project's {} best trials ({score_name}; {}; ties by the lower loss)\n\n{}",
        best_table.rows.len(),
        config.rank.describe(),
        best_table.to_markdown()
    );
    if let Some(pick) = &pick {
        let _ = writeln!(report, "{pick}\n");
    }
    best_charts(
        &out, &best, &records, &search, &config, score_name, flags.top,
    )?;

    // The report's final model, or, where the report has none, the best trial's model.
    // A diverged or failed trial has no score and is never the best one.
    let (chosen, heading, published) = choose_final(final_mlp.as_ref(), &config, &best, &search);
    // A final model that cannot be trained (it diverged) is said in the table, which is
    // still written with every trial's figures; the run then exits non-zero.
    let mut final_error = None;
    let trained = chosen.as_ref().and_then(|mlp| {
        train_final(
            mlp,
            heading,
            FinalData {
                train: &train,
                test: &test,
                encoder: encoder.as_ref(),
            },
            &selected.device,
            &out,
            &published,
        )
        .map_err(|e| {
            let _ = writeln!(report, "## {heading}\n\n{e}\n");
            final_error = Some(e);
        })
        .ok()
    });
    if let Some((section, scores)) = trained {
        report.push_str(&section);
        if config.final_model.is_some() {
            run_rows.push(crate::book::RunRow {
                index: config.published.len(),
                row: "final model".into(),
                ours: Map::from_iter([
                    ("train_score".to_string(), Value::from(scores.0)),
                    ("test_score".to_string(), Value::from(scores.1)),
                ]),
                commit: None,
            });
        }
    }
    crate::book::write_run_rows(&out, &config_path, flags, run_rows)?;
    write_footer(&mut report, &config, started, &summary, chosen.is_some());
    out.write("table.md", &report)?;
    crate::page::write_index(&out, &config.title, &report)?;
    out.write("table.csv", &rows_table.to_csv())?;
    out.write("best.csv", &best_table.to_csv())?;
    println!("\n{report}");
    println!("written to {}", out.dir.display());
    crate::model_table::failures(&records, |r| format!("trial {}", r.index))?;
    if let Some(e) = final_error {
        return Err(e);
    }
    some_trial_scored(&records, chosen.is_some())
}

/// The figures the as-written column gives.
const AS_WRITTEN_FIGURES: [&str; 3] = ["test_score", "train_score", "loss"];

/// The report's figures named in its rows (the columns that are not hyperparameters), in
/// the order they first appear.
fn figure_names(published: &[toml::Table]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for row in published {
        for k in row.keys() {
            if !MLP_PARAMS.contains(&k.as_str()) && !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    names
}

/// The report's rows with this project's figures beside each published one (and the
/// as-written fit's, where the study asks for it), and the rows for the results book.
fn report_rows(
    config: &MlpTableConfig,
    trials: &[Trial],
    row_trials: &[Trial],
    records: &[TrialRecord],
    as_written: &[Result<AsWrittenFit, crate::Error>],
) -> (Table, Vec<crate::book::RunRow>) {
    let figure_names = figure_names(&config.published);
    let shows_as_written = |f: &str| config.as_written && AS_WRITTEN_FIGURES.contains(&f);
    let mut table = Table {
        header: MLP_COLUMNS.iter().map(|c| c.to_string()).collect(),
        rows: Vec::new(),
    };
    for f in &figure_names {
        table.header.push(format!("{f} (report)"));
        table.header.push(format!("{f} (ours)"));
        if shows_as_written(f) {
            table.header.push(format!("{f} (as written)"));
        }
    }
    let mut run_rows: Vec<crate::book::RunRow> = Vec::new();
    for (index, (row, trial)) in config.published.iter().zip(row_trials).enumerate() {
        let row = config::to_json(row);
        let trial_key = trials
            .iter()
            .find(|t| t.index == trial.index)
            .map(Trial::key)
            .unwrap_or_default();
        let ours = records.iter().find(|r| r.key == trial_key);
        let mut cells: Vec<String> = MLP_COLUMNS
            .iter()
            .map(|c| match (c, ours) {
                (&"epoch", Some(r)) => r.params.get("epoch").map_or("-".into(), format_value),
                _ => row.get(*c).map_or("-".into(), format_value),
            })
            .collect();
        let written = as_written.get(index).and_then(|r| r.as_ref().ok());
        for f in &figure_names {
            cells.push(row.get(f).map_or("-".into(), format_value));
            cells.push(match ours.map(|r| (our_figure(r, f), &r.status)) {
                Some((Some(v), _)) => format!("{v:.4}"),
                Some((None, status)) => format!("{status:?}").to_lowercase(),
                None => "not run (--limit)".into(),
            });
            if shows_as_written(f) {
                cells.push(match as_written.get(index) {
                    Some(Ok(fit)) => format!("{:.4}", as_written_figure(fit, f)),
                    Some(Err(e)) => format!("failed ({e})"),
                    None => "-".into(),
                });
            }
        }
        if let Some(r) = ours {
            let mut figures: Map<String, Value> = figure_names
                .iter()
                .filter_map(|f| our_figure(r, f).map(|v| (f.clone(), Value::from(v))))
                .collect();
            for f in AS_WRITTEN_FIGURES {
                if let Some(fit) = written {
                    figures.insert(
                        format!("{f}_as_written"),
                        Value::from(as_written_figure(fit, f)),
                    );
                }
            }
            run_rows.push(crate::book::RunRow {
                index,
                row: cells[..MLP_COLUMNS.len()].join(", "),
                ours: figures,
                commit: r.commit.clone(),
            });
        }
        table.rows.push(cells);
    }
    (table, run_rows)
}

/// The `top` best trials: their hyperparameters (the search's defaults where a trial does
/// not set one) and every figure.
fn best_table(best: &[&TrialRecord], search: &MlpSearch, task: Task, top: usize) -> Table {
    let figures = if task == Task::Classification {
        [
            "val_score",
            "test_score",
            "train_score",
            "train_loss",
            "test_loss",
            "seconds",
        ]
    } else {
        [
            "val_r2",
            "test_r2",
            "train_r2",
            "train_mse",
            "test_mse",
            "seconds",
        ]
    };
    let mut table = Table {
        header: MLP_COLUMNS
            .iter()
            .map(|c| c.to_string())
            .chain(figures.map(String::from))
            .collect(),
        rows: Vec::new(),
    };
    for r in best.iter().take(top) {
        let mut cells: Vec<String> = MLP_COLUMNS
            .iter()
            .map(|c| {
                r.params.get(*c).map_or_else(
                    || {
                        search
                            .mlp(&Trial::new(r.index, r.params.clone()))
                            .map_or("-".into(), |m| default_cell(&m, c))
                    },
                    format_value,
                )
            })
            .collect();
        for v in [
            r.val_score,
            r.test_score,
            r.train_score,
            r.train_loss,
            r.test_loss,
        ] {
            cells.push(v.map_or("-".into(), |v| format!("{v:.4}")));
        }
        cells.push(format!("{:.2}", r.seconds));
        table.rows.push(cells);
    }
    table
}

/// The charts of the search: the `top` best trials' test scores, the scores by
/// hyperparameter, and the best trials' training loss (retrained).
fn best_charts(
    out: &Output,
    best: &[&TrialRecord],
    records: &[TrialRecord],
    search: &MlpSearch,
    config: &MlpTableConfig,
    score_name: &str,
    top: usize,
) -> Result<(), crate::Error> {
    let bars: Vec<(String, Vec<Option<f64>>)> = best
        .iter()
        .take(top)
        .filter_map(|r| r.test_score.map(|s| (trial_label(r), vec![Some(s)])))
        .collect();
    plot::render(
        out,
        "best-trials",
        &plot::Bars {
            title: format!(
                "{}: the {} best trials ({})",
                config.dataset,
                bars.len(),
                config.rank.describe()
            ),
            axis: format!("test {score_name}"),
            series: &["this project"],
            rows: &bars,
        },
    )?;
    plot::render(
        out,
        "scores-by-hyperparameter",
        &scores_by_hyperparameter(records, config, score_name),
    )?;
    plot::render(
        out,
        "best-trials-loss",
        &best_trials_loss(best, search, config),
    )?;
    Ok(())
}

/// The model to train and save after the search, its section's heading and the report's
/// figures for it: the report's final model, or, where the report has none, the best
/// trial's (a diverged or failed trial has no score and is never the best one).
fn choose_final(
    final_mlp: Option<&Mlp>,
    config: &MlpTableConfig,
    best: &[&TrialRecord],
    search: &MlpSearch,
) -> (Option<Mlp>, &'static str, Map<String, Value>) {
    let best_mlp = best
        .iter()
        .find(|r| r.test_score.is_some())
        .and_then(|r| search.mlp(&Trial::new(r.index, r.params.clone())).ok());
    match (final_mlp, &config.final_model, best_mlp) {
        (Some(m), Some(f), _) => (
            Some(m.clone()),
            "The report's final model",
            config::to_json(&f.published),
        ),
        (None, _, Some(m)) => (
            Some(m),
            "This project's best trial, retrained and saved",
            Map::new(),
        ),
        _ => (None, "", Map::new()),
    }
}

/// The end of the report: baselines, the study's notes, the run time and the files.
fn write_footer(
    report: &mut String,
    config: &MlpTableConfig,
    started: Instant,
    summary: &search::SearchSummary,
    saved_final: bool,
) {
    for b in &config.baselines {
        let _ = writeln!(
            report,
            "Baseline on the same split: {}\n",
            config::to_json(b)
                .iter()
                .map(|(k, v)| format!("{k} {}", format_value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    report.push_str(&config::notes_section(&config.notes));
    let _ = writeln!(
        report,
        "Run time {:.1} s ({} trial(s) trained now, {} from trials.jsonl).\n\nFiles: table.md, table.csv \
         (the report's rows), best.csv, trials.jsonl (every trial), best-trials and best-trials-loss (the 5 best trials' training loss, retrained), scores-by-hyperparameter (SVG and PNG){}, \
         index.html (this report with every chart).",
        started.elapsed().as_secs_f64(),
        summary.ran,
        summary.skipped,
        if saved_final {
            ", final/ (model, history.csv, curves, and a confusion matrix or predicted against \
             true values, as SVG and PNG)"
        } else {
            ""
        }
    );
}

/// An error when trials ran and every one diverged or failed: no model is the best one.
fn some_trial_scored(records: &[TrialRecord], saved_final: bool) -> Result<(), crate::Error> {
    if !records.is_empty() && records.iter().all(|r| r.test_score.is_none()) {
        return Err(crate::Error::from(format!(
            "every one of the {} trial(s) diverged or failed: no model is the best one{}",
            records.len(),
            if saved_final {
                ""
            } else {
                ", and none was saved"
            }
        )));
    }
    Ok(())
}

/// What a run of an MLP table trains.
struct Planned {
    /// Every trial, keyed, with the epochs `--epochs` or `--quick` sets.
    trials: Vec<Trial>,
    /// The trial of each of the report's rows, in the report's order (before keying).
    row_trials: Vec<Trial>,
    /// The report's final model, if it has one.
    final_mlp: Option<Mlp>,
}

/// The trials a run trains: the report's rows first (as grid trials where the grid has
/// them), then the rest of the grid as `--limit` and `--quick` allow; and the report's
/// final model.
fn plan_trials(
    config: &MlpTableConfig,
    grid: &Grid,
    search: &MlpSearch,
    flags: &Flags,
) -> Result<Planned, crate::Error> {
    let all = grid.trials();
    let all_mlps: Vec<Option<Mlp>> = all.iter().map(|t| search.mlp(t).ok()).collect();
    let mut row_trials: Vec<Trial> = Vec::new();
    for (i, row) in config.published.iter().enumerate() {
        let params = mlp_params(&config::to_json(row));
        let wanted = search
            .mlp(&Trial::new(all.len() + i, params.clone()))
            .map_err(|e| format!("published row {}: {e}", i + 1))?;
        let trial = match all_mlps.iter().position(|m| m.as_ref() == Some(&wanted)) {
            Some(j) => all[j].clone(),
            None => Trial::new(all.len() + i, params),
        };
        row_trials.push(trial);
    }
    let mut trials: Vec<Trial> = Vec::new();
    for t in row_trials.iter().cloned() {
        if !trials.iter().any(|x| x.key() == t.key()) {
            trials.push(t);
        }
    }
    let rest: Vec<Trial> = all
        .iter()
        .filter(|t| !trials.iter().any(|x| x.key() == t.key()))
        .cloned()
        .collect();
    let trials = flags.pick_rest(trials, rest, config.quick.extra_trials);
    let epochs_for = |mlp_epochs: usize| -> usize {
        match (flags.epochs, flags.quick) {
            (Some(e), _) => e as usize,
            (None, true) => mlp_epochs.min(config.quick.epochs),
            (None, false) => mlp_epochs,
        }
    };
    let trials: Vec<Trial> = trials
        .iter()
        .map(|t| {
            let e = search.mlp(t).map(|m| m.epochs).unwrap_or(1);
            if epochs_for(e) == e {
                t.clone()
            } else {
                with_epochs(t, epochs_for(e))
            }
        })
        .collect();
    search.check(&trials)?;
    let trials = search.keyed(&trials);
    let final_mlp = match &config.final_model {
        Some(f) => {
            let mut m = search
                .mlp(&Trial::new(0, config::to_json(&f.params)))
                .map_err(|e| format!("[final]: {e}"))?;
            m.epochs = epochs_for(m.epochs);
            Some(m)
        }
        None => None,
    };
    Ok(Planned {
        trials,
        row_trials,
        final_mlp,
    })
}

/// `--summary`: the Keras summary of every distinct architecture of the run, no training.
fn print_summaries(
    trials: &[Trial],
    final_mlp: Option<&Mlp>,
    search: &MlpSearch,
    input: Shape,
    outputs: usize,
) -> Result<(), crate::Error> {
    let mut seen: Vec<String> = Vec::new();
    let mlps = trials
        .iter()
        .filter_map(|t| search.mlp(t).ok())
        .chain(final_mlp.cloned());
    for m in mlps {
        let spec = m.spec(input, outputs);
        let text = spec.summary()?;
        if !seen.contains(&text) {
            println!("{text}");
            seen.push(text);
        }
    }
    println!(
        "{} distinct architecture(s) in {} trial(s){}",
        seen.len(),
        trials.len(),
        if final_mlp.is_some() {
            " and the final model"
        } else {
            ""
        }
    );
    Ok(())
}

fn as_written_figure(fit: &AsWrittenFit, name: &str) -> f64 {
    match name {
        "test_score" => fit.test_score,
        "train_score" => fit.train_score,
        _ => fit.loss,
    }
}

/// Report 001's class as its text writes it ([`trainer::as_written`]), trained on the
/// training data with each published row's hyperparameters and scored on the test data.
fn as_written_rows(
    search: &MlpSearch,
    row_trials: &[Trial],
    train: &Samples,
    test: &Samples,
    device: &burn::tensor::Device,
) -> Vec<Result<AsWrittenFit, crate::Error>> {
    println!("report 001's class as written, on the report's rows:");
    row_trials
        .iter()
        .map(|trial| {
            let mlp = search.mlp(trial)?;
            let fit = fit_as_written(&mlp, train, test, device)?;
            println!(
                "  {}: test {:.4}, train {:.4}, loss {:.2}",
                trial_label_of(&trial.params),
                fit.test_score,
                fit.train_score,
                fit.loss
            );
            Ok(fit)
        })
        .collect()
}

/// Whether the as-written column reproduces the table: at least half of its rows within
/// 0.05 of the report's test score.
fn as_written_verdict(
    published: &[toml::Table],
    as_written: &[Result<AsWrittenFit, crate::Error>],
) -> String {
    let mut close = 0;
    let mut compared = 0;
    for (row, fit) in published.iter().zip(as_written) {
        let report = config::to_json(row)
            .get("test_score")
            .and_then(Value::as_f64);
        if let (Some(report), Ok(fit)) = (report, fit) {
            compared += 1;
            if (fit.test_score - report).abs() <= 0.05 {
                close += 1;
            }
        }
    }
    let verdict = if compared > 0 && 2 * close >= compared {
        "reproduced (at least half of the rows within 0.05)"
    } else {
        "not reproduced (fewer than half of the rows within 0.05; see the notes for what still \
         differs)"
    };
    format!(
        "As written (report 001's MLP class as its text writes it: no bias, beta x N(0, 1) \
         weights, the unsquared Frobenius-norm penalty, equation 8's element-wise output delta, \
         and the loss column's saturated cross-entropy clipped at 1e-10; `trainer::as_written`): \
         {close} of {compared} rows within 0.05 of the report's test score: {verdict}."
    )
}

/// What a validation split would have picked in a study ranked by test score: the same
/// trials trained again on the training part less a validation part (`validation_fraction`,
/// stratified for classes), ranked on that part; its test figure only reported. Its trials
/// are stored under their own keys beside the study's.
fn validation_pick(
    config: &MlpTableConfig,
    search: &MlpSearch,
    trials: &[Trial],
    results: &mut ResultsFile,
    options: &SearchOptions,
    seed: u64,
) -> Result<String, crate::Error> {
    let (fit, validation) = carve_validation(search.train, config.validation_fraction, seed)?;
    let mut validated = MlpSearch::new(&fit, search.defaults.clone(), search.device.clone());
    validated.validation = Some(&validation);
    validated.test = search.test;
    validated.data = search.data.clone();
    validated.data["validation_fraction"] = Value::from(config.validation_fraction);
    let keyed = validated.keyed(trials);
    println!(
        "the same {} trial(s) with a validation split ({} of the training part), for the pick \
         it would make",
        keyed.len(),
        config.validation_fraction
    );
    validated.run(
        &keyed,
        results,
        &SearchOptions {
            rank: RankBy::Validation,
            ..options.clone()
        },
    )?;
    let records = results.records_of(&keyed);
    let Some(best) = search::best(&records, RankBy::Validation) else {
        return Ok("A validation split would have picked no trial: every one diverged.".into());
    };
    Ok(format!(
        "The report's rule ranks by test score. A validation split ({} of the training part, \
         the trials trained on the rest) would have picked {} (validation {:.4}, test {:.4}).",
        config.validation_fraction,
        best.params
            .iter()
            .map(|(k, v)| format!("{k} {}", format_value(v)))
            .collect::<Vec<_>>()
            .join(", "),
        best.val_score.unwrap_or(f64::NAN),
        best.test_score.unwrap_or(f64::NAN)
    ))
}

/// The part of the training data the trials fit on, and a validation part of `fraction`
/// carved from it (stratified for classes; `split_samples` shuffles values).
fn carve_validation(
    train: &Samples,
    fraction: f64,
    seed: u64,
) -> Result<(Samples, Samples), crate::Error> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(crate::Error::from(format!(
            "validation_fraction {fraction} must be between 0 and 1 (the best trial is picked \
             on that part of the training data)"
        )));
    }
    config::hold_out(train, data::HoldOut::Fraction(fraction), seed).map_err(crate::Error::from)
}

fn default_cell(m: &Mlp, column: &str) -> String {
    match column {
        "hidden_layer" => format_value(&Value::from(m.hidden_layers.clone())),
        "activation" => m.activation.to_string(),
        "epoch" => m.epochs.to_string(),
        "eta" => m.learning_rate.to_string(),
        "beta" => m.init_scale.to_string(),
        "alpha" => m.l2.to_string(),
        "mu" => m.momentum.to_string(),
        "batch_size" => m.batch_size.to_string(),
        _ => "-".into(),
    }
}

/// A short label of a trial's parameters for charts.
fn trial_label(r: &TrialRecord) -> String {
    trial_label_of(&r.params)
}

/// A trial's parameters in words, its epochs left out.
fn trial_label_of(params: &Map<String, Value>) -> String {
    params
        .iter()
        .filter(|(k, _)| k.as_str() != "epoch")
        .map(|(_, v)| format_value(v))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every scored trial's figure on the ranking split (validation, or test where the study
/// ranks by it), by the value of each hyperparameter the grid varies.
fn scores_by_hyperparameter<'a>(
    records: &[TrialRecord],
    config: &MlpTableConfig,
    score_name: &'a str,
) -> plot::Strip<'a> {
    let scored: Vec<(&TrialRecord, f64)> = records
        .iter()
        .filter_map(|r| r.score(config.rank).map(|s| (r, s)))
        .collect();
    let mut names: Vec<&String> = Vec::new();
    for (r, _) in &scored {
        for name in r.params.keys() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let params = names
        .into_iter()
        .filter_map(|name| {
            let points: Vec<(String, f64)> = scored
                .iter()
                .filter_map(|(r, s)| r.params.get(name).map(|v| (format_value(v), *s)))
                .collect();
            let distinct: std::collections::BTreeSet<&String> =
                points.iter().map(|p| &p.0).collect();
            (distinct.len() > 1).then(|| (name.clone(), points))
        })
        .collect();
    plot::Strip {
        title: format!(
            "{}: {} trials' {} by hyperparameter value",
            config.dataset,
            scored.len(),
            match config.rank {
                RankBy::Validation => "validation score",
                RankBy::Test => "test score",
            }
        ),
        score: score_name,
        params,
    }
}

/// The training loss per epoch of the 5 best trials (by the study's ranking), retrained for
/// their histories (a grid keeps only each trial's final figures): report 001's Figures 7,
/// 9, 10 and 12, "loss value of the best architectures".
fn best_trials_loss(
    best: &[&TrialRecord],
    search: &MlpSearch,
    config: &MlpTableConfig,
) -> plot::Overlay {
    let series: Vec<(String, Vec<(f64, f64)>)> = best
        .iter()
        .filter(|r| r.score(config.rank).is_some())
        .take(5)
        .filter_map(|r| {
            let (_, history) = search.refit(r).ok()?;
            let points = history
                .epochs
                .iter()
                .map(|e| (e.epoch as f64, e.loss))
                .collect();
            Some((trial_label(r), points))
        })
        .collect();
    plot::Overlay {
        title: format!(
            "{}: training loss of the {} best trials ({})",
            config.dataset,
            series.len(),
            config.rank.describe()
        ),
        axis: "training loss".into(),
        series,
    }
}

/// The data of the final model: training and test parts, and for a study's own table the
/// encoding of its columns (saved with the model).
struct FinalData<'a> {
    train: &'a Samples,
    test: &'a Samples,
    encoder: Option<&'a data::tabular::TableEncoder>,
}

/// Trains the report's final model, validating on the test set each epoch for the curves
/// the report draws, saves it with its history and pictures, and returns its section of
/// the report.
fn train_final(
    mlp: &Mlp,
    heading: &str,
    data: FinalData,
    device: &burn::tensor::Device,
    out: &Output,
    published: &Map<String, Value>,
) -> Result<(String, (f64, f64)), crate::Error> {
    println!(
        "final model: MLP({}, {}, batch {}, {} epochs, eta {}, mu {}, beta {}, alpha {})",
        format_value(&Value::from(mlp.hidden_layers.clone())),
        mlp.activation,
        mlp.batch_size,
        mlp.epochs,
        mlp.learning_rate,
        mlp.momentum,
        mlp.init_scale,
        mlp.l2
    );
    let mut verbose = mlp.clone();
    verbose.verbose = true;
    let started = Instant::now();
    let FinalData {
        train,
        test,
        encoder,
    } = data;
    let (mut model, history): (TrainedModel, History) =
        verbose.fit_watching(train, Some(test), trainer::HeldOut::Test, device)?;
    model.card.table = encoder.cloned();
    if let trainer::Outcome::Diverged { epoch } = history.outcome {
        return Err(crate::Error::from(format!(
            "{heading} diverged (loss NaN or infinite at epoch {epoch}): no model saved; lower \
             the learning rate"
        )));
    }
    let seconds = started.elapsed().as_secs_f64();
    let dir = out.subdir("final")?;
    model.save(&dir.dir)?;
    // The test set is watched each epoch for the report's curves: named test, not validation.
    dir.write("history.csv", &history.to_csv_as(trainer::HeldOut::Test))?;
    plot::model_charts(
        &dir,
        &plot::ModelCharts {
            title: &format!(
                "final model MLP{}",
                format_value(&Value::from(mlp.hidden_layers.clone()))
            ),
            model: &model,
            history: &history,
            held_out: trainer::HeldOut::Test,
            kept: history.kept_epoch(None),
            test,
        },
    )?;
    let scores = (model.score(train)?, model.score(test)?);
    let figures = FinalFigures {
        scores,
        epochs: history.epochs.len(),
        seconds,
    };
    let section = final_section(mlp, heading, &model, test, published, &figures)?;
    if matches!(mlp.task, Task::Classification) {
        dir.write("classification_report.txt", &section.1)?;
    }
    Ok((section.0, scores))
}

/// What the final model's training measured.
struct FinalFigures {
    /// Train and test score.
    scores: (f64, f64),
    /// Epochs trained.
    epochs: usize,
    /// Wall seconds of training.
    seconds: f64,
}

/// The final model's section of the report: train and test score beside the report's, and
/// its classification report (also returned, for its file) or test mean squared error.
fn final_section(
    mlp: &Mlp,
    heading: &str,
    model: &TrainedModel,
    test: &Samples,
    published: &Map<String, Value>,
    figures: &FinalFigures,
) -> Result<(String, String), crate::Error> {
    let FinalFigures {
        scores: (train_score, test_score),
        epochs,
        seconds,
    } = *figures;
    let classification = matches!(mlp.task, Task::Classification);
    let score_name = if classification { "accuracy" } else { "R²" };
    let mut section = format!("## {heading}\n\n");
    let figure = |name: &str| published.get(name).map_or("-".into(), format_value);
    let _ = writeln!(
        section,
        "| model | train {score_name} (report) | train (ours) | test {score_name} (report) | \
         test (ours) | epochs | seconds |\n|---|---|---|---|---|---|---|\n| MLP({}, {}) | {} | \
         {train_score:.4} | {} | {test_score:.4} | {} | {seconds:.1} |\n",
        format_value(&Value::from(mlp.hidden_layers.clone())),
        mlp.activation,
        figure("train_score"),
        figure("test_score"),
        epochs
    );
    let mut report_text = String::new();
    if classification {
        let (report, log_loss) = model.classification_report(test)?;
        report_text = report.to_text();
        let _ = writeln!(
            section,
            "Test set classification report (log loss {log_loss:.4}):\n\n```\n{report_text}```\n"
        );
    } else {
        let mse = model.mse(test)?;
        let _ = writeln!(
            section,
            "Test mean squared error {mse:.1} (target units).\n"
        );
    }
    Ok((section, report_text))
}
