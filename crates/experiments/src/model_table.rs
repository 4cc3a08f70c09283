//! Tables of Keras-style models (reports 001's CNNs, 002, 003 and 004): train every named
//! model and every grid trial of each section, put the project's figures beside the
//! report's rows, list the best trials, and write histories, saved models and pictures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use data::{HoldOut, Samples};
use models::{ModelSpec, Network, Shape, select_device};
use search::{
    Grid, RankBy, ResultsFile, SearchOptions, Status, Table, Trial, TrialOutcome, TrialRecord,
    run_search_recorded,
};
use serde_json::{Map, Value};
use trainer::{Checkpointing, Outcome, Preprocessing, TrainedModel, Verbosity, train_model};

use crate::cli::Flags;
use crate::config;
use crate::estimate;
use crate::model_config::Section;
use crate::model_config::{
    FIGURES, Layout, ModelTableConfig, Training, fill_template, model_spec, split_published,
};
use crate::output::{Output, format_value};
use crate::plot;

/// One model to train: a named model or a grid trial, with everything resolved.
#[derive(Debug, Clone)]
struct Plan {
    /// Index of its section.
    section: usize,
    /// The model's name, or the grid trial's parameters in words.
    label: String,
    /// The trial it runs as (its parameters and, once resolved, its configuration).
    trial: Trial,
    /// Its identity in trials.jsonl: `trial.key()`, computed once its configuration is set.
    key: String,
    /// Its layers.
    spec: ModelSpec,
    /// How it trains.
    training: Training,
    /// Saved with its history and pictures under models/.
    save: bool,
}

/// A report row and the plan that answers it.
#[derive(Debug, Clone)]
struct Row {
    section: usize,
    /// The row's parameters (grids) or the model's name.
    label: String,
    /// The report's figures.
    figures: Map<String, Value>,
    /// Index into the plans.
    plan: Option<usize>,
}

fn json(table: &toml::Table) -> Map<String, Value> {
    config::to_json(table)
}

/// `Table 6: one convolution` as `table-6-one-convolution`.
fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').chars().take(80).collect()
}

/// A grid trial's parameters in words: `filters 128, kernel 11, padding same`.
fn params_label(params: &Map<String, Value>) -> String {
    params
        .iter()
        .filter(|(k, _)| k.as_str() != "section")
        .map(|(k, v)| format!("{k} {}", format_value(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Loose equality of parameter values (numbers compared as numbers).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0),
        _ => match (a, b) {
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
            }
            _ => a == b,
        },
    }
}

/// Everything resolved from the file and the flags.
#[derive(Clone)]
struct Resolved {
    plans: Vec<Plan>,
    rows: Vec<Row>,
}

/// Each report row's layers and training as a full `--rows` run trains them, for inputs of
/// shape `input` (`None` for a row no model answers).
pub fn row_trainings(
    config: &ModelTableConfig,
    input: Shape,
    path: &Path,
) -> Result<Vec<Option<(ModelSpec, Training)>>, crate::Error> {
    use clap::Parser;
    let flags = Flags::try_parse_from(["book", "--rows"]).map_err(|e| e.to_string())?;
    let resolved = resolve(config, &flags, input, path, &Value::Null)?;
    Ok(resolved
        .rows
        .iter()
        .map(|row| {
            row.plan.map(|i| {
                let plan = &resolved.plans[i];
                (plan.spec.clone(), plan.training.clone())
            })
        })
        .collect())
}

/// Every plan of the file (keyed by `data` and the seed, [`Plan::keyed`]) and every row;
/// `--only` is not applied here ([`Resolved::keep`] with [`chosen_by_only`] does it).
///
/// About 160 lines: one pass over the study's sections, first a section's named models,
/// then its grid's published rows and trials, both halves using the same error context
/// and `--epochs`/`--quick` adjustment (the closures at its top). Splitting it means a
/// per-section resolver carrying those; not done yet.
fn resolve(
    config: &ModelTableConfig,
    flags: &Flags,
    input: Shape,
    path: &Path,
    data: &Value,
) -> Result<Resolved, crate::Error> {
    let at = |what: &str, e: String| format!("{}: {what}: {e}", path.display());
    let file_training = json(&config.training);
    let mut plans: Vec<Plan> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (s, section) in config.sections.iter().enumerate() {
        if names.contains(&section.name.as_str()) {
            return Err(crate::Error::from(at(
                "section",
                format!("{:?} appears twice", section.name),
            )));
        }
        names.push(&section.name);
        let where_ = format!("section {:?}", section.name);
        let section_training = json(&section.training);
        let adjust = |mut t: Training| {
            t.epochs = match (flags.epochs, flags.quick) {
                (Some(e), _) => e as usize,
                (None, true) => t.epochs.min(config.quick.epochs.max(1)),
                (None, false) => t.epochs,
            };
            t
        };
        // Named models.
        for model in &section.models {
            let model_training = json(&model.training);
            let training =
                Training::merged(&[&file_training, &section_training, &model_training], None)
                    .map_err(|e| at(&format!("{where_}, model {:?}", model.name), e.to_string()))?;
            let spec = model_spec(&model.name, input, &model.layers, training.init)
                .map_err(|e| at(&where_, e.to_string()))?;
            let published = json(&model.published);
            let plan = {
                let mut params = Map::new();
                params.insert("section".into(), Value::from(section.name.clone()));
                params.insert("model".into(), Value::from(model.name.clone()));
                let plan = Plan {
                    section: s,
                    label: model.name.clone(),
                    trial: Trial::new(plans.len(), params),
                    key: String::new(),
                    spec,
                    training: adjust(training),
                    save: section.save.unwrap_or(true),
                }
                .keyed(data, flags.seed)
                .map_err(|e| at(&where_, e.to_string()))?;
                plans.push(plan);
                Some(plans.len() - 1)
            };
            rows.push(Row {
                section: s,
                label: model.name.clone(),
                figures: published,
                plan,
            });
        }
        // A grid over a layer template.
        let Some(template) = &section.layers else {
            if !section.grid.is_empty() || !section.published.is_empty() {
                return Err(crate::Error::from(at(
                    &where_,
                    "a grid needs `layers`, its template".into(),
                )));
            }
            continue;
        };
        let grid = Grid::from_value(Value::Object(json(&section.grid)))
            .map_err(|e| at(&format!("{where_}, grid"), e.to_string()))?;
        let dims: Vec<String> = grid.dimensions.iter().map(|d| d.name.clone()).collect();
        let make = |params: &Map<String, Value>, index: usize| -> Result<Plan, crate::Error> {
            let training = Training::merged(&[&file_training, &section_training], Some(params))?;
            let label = params_label(params);
            let layers = fill_template(template, params)?;
            let spec = model_spec(&label, input, &layers, training.init)?;
            let mut keyed = params.clone();
            keyed.insert("section".into(), Value::from(section.name.clone()));
            Plan {
                section: s,
                label,
                trial: Trial::new(index, keyed),
                key: String::new(),
                spec,
                training: adjust(training),
                save: section.save.unwrap_or(false),
            }
            .keyed(data, flags.seed)
        };
        let all = grid.trials();
        let mut chosen: Vec<Map<String, Value>> = Vec::new();
        let mut row_params: Vec<Map<String, Value>> = Vec::new();
        for (i, published) in section.published.iter().enumerate() {
            let (figures, params) = split_published(json(published), &dims);
            let missing: Vec<&String> = dims.iter().filter(|d| !params.contains_key(*d)).collect();
            if !missing.is_empty() {
                return Err(crate::Error::from(at(
                    &format!("{where_}, published row {}", i + 1),
                    format!("gives no value for {missing:?}"),
                )));
            }
            let params = all
                .iter()
                .find(|t| {
                    params
                        .iter()
                        .all(|(k, v)| t.params.get(k).is_some_and(|w| same_value(v, w)))
                })
                .map_or(params, |t| t.params.clone());
            if !chosen.iter().any(|c| c == &params) {
                chosen.push(params.clone());
            }
            row_params.push(params.clone());
            rows.push(Row {
                section: s,
                label: params_label(&params),
                figures,
                plan: None,
            });
        }
        let rest: Vec<Map<String, Value>> = all
            .into_iter()
            .map(|t| t.params)
            .filter(|p| !chosen.contains(p))
            .collect();
        let chosen = flags.pick_rest(chosen, rest, config.quick.extra_trials);
        let first_row = rows.len() - row_params.len();
        for params in chosen {
            let plan = make(&params, plans.len()).map_err(|e| at(&where_, e.to_string()))?;
            if section.layout == Layout::Report
                && config.rank == RankBy::Validation
                && plan.training.validation <= 0.0
            {
                return Err(crate::Error::from(at(
                    &where_,
                    "its trials are ranked on validation data (the study's rank = \"validation\", \
                     the default) but have none: set `validation` (a fraction of the training \
                     data) in its training, or rank = \"test\" where the report ranked by test \
                     score"
                        .into(),
                )));
            }
            for (r, p) in row_params.iter().enumerate() {
                if p == &params {
                    rows[first_row + r].plan = Some(plans.len());
                }
            }
            plans.push(plan);
        }
    }
    Ok(Resolved { plans, rows })
}

/// Everything beyond its parameters that determines a plan's result, in the canonical
/// form of result keys: its layers, input and initialiser, its training settings, the data,
/// the seed and the numerics version.
impl Plan {
    /// `section / label`: the line `--only` matches and a checkpoint is labelled with.
    fn line(&self) -> String {
        let section = self.trial.params.get("section").and_then(Value::as_str);
        format!("{} / {}", section.unwrap_or_default(), self.label)
    }

    /// The plan with its trial's configuration set (everything beyond its parameters that
    /// determines its result: layers, input and initialiser, training settings, `data`, the
    /// seed, the numerics version) and its key computed once from it.
    fn keyed(mut self, data: &Value, seed: u64) -> Result<Self, crate::Error> {
        let config = serde_json::json!({
            "model": {
                "layers": self.spec.to_text(),
                "input": serde_json::to_value(self.spec.input)?,
                "init": serde_json::to_value(self.spec.init)?,
            },
            "training": self.training.key_config()?,
            "data": data,
            "seed": seed,
            "numerics": trainer::NUMERICS_VERSION,
        });
        self.trial = self.trial.with_config(config);
        self.key = self.trial.key();
        Ok(self)
    }
}

/// The training data of a plan: the items it fits on and the ones it validates on.
type Parts = (Samples, Option<Samples>);

fn validation_parts(
    train: &Samples,
    plans: &[Plan],
    seed: u64,
) -> Result<BTreeMap<u64, Parts>, crate::Error> {
    let mut parts = BTreeMap::new();
    for plan in plans {
        let v = plan.training.validation;
        if parts.contains_key(&v.to_bits()) {
            continue;
        }
        let split = if v > 0.0 {
            let (fit, val) = config::hold_out(train, HoldOut::Fraction(v), seed)?;
            (fit, Some(val))
        } else {
            (train.clone(), None)
        };
        parts.insert(v.to_bits(), split);
    }
    Ok(parts)
}

/// Where a plan's training keeps its checkpoint: `<out>/checkpoints/<key>.ckpt`, so a
/// changed configuration never continues another's model.
fn checkpointing(plan: &Plan, flags: &Flags, out: &Output) -> Checkpointing {
    Checkpointing {
        path: out.path("checkpoints").join(format!("{}.ckpt", plan.key)),
        interval: Duration::from_secs(flags.checkpoint_every),
        identity: plan.key.clone(),
        label: plan.line(),
    }
}

/// Removes the checkpoint of a trial whose result is stored; a failure is only reported.
fn drop_checkpoint(plans: &[Plan], key: &str, flags: &Flags, out: &Output) {
    if let Some(plan) = plans.iter().find(|p| p.key == key)
        && let Err(e) = checkpointing(plan, flags, out).remove()
    {
        eprintln!("warning: {e}");
    }
}

/// What every plan of a run shares: the test data, the flags, where to train and write,
/// and for a study's own table the encoding of its columns (saved with its models).
struct PlanContext<'a> {
    test: &'a Samples,
    flags: &'a Flags,
    verbose: Verbosity,
    device: &'a burn::tensor::Device,
    out: &'a Output,
    encoder: Option<&'a data::tabular::TableEncoder>,
}

/// Trains one plan; saves it when asked; returns the figures.
fn train_plan(
    plan: &Plan,
    parts: &Parts,
    context: &PlanContext,
) -> Result<TrialOutcome, crate::Error> {
    let started = Instant::now();
    let (model, history, held_out) = fit_plan(plan, parts, context)?;
    let status = match history.outcome {
        Outcome::Finished => Status::Finished,
        Outcome::EarlyStopped { .. } => Status::EarlyStopped,
        Outcome::Diverged { .. } => Status::Diverged,
    };
    let mut outcome = TrialOutcome {
        status,
        epochs: history.epochs.len(),
        train: None,
        validation: None,
        test: None,
        final_lr: history.epochs.last().map(|e| e.lr),
        earlier_seconds: earlier_seconds(&history, started),
    };
    // A diverged model's outputs are NaN: no figure of it is reported, and it is not saved.
    if outcome.status == Status::Diverged {
        return Ok(outcome);
    }
    let (fit_part, val_part) = parts;
    let evaluate = |s: &Samples| model.evaluate(s).map(|e| (e.score, e.loss));
    outcome.train = Some(evaluate(fit_part)?);
    outcome.validation = val_part.as_ref().map(evaluate).transpose()?;
    outcome.test = Some(evaluate(context.test)?);
    if plan.save {
        save_model(plan, &model, &history, held_out, context.test, context.out)?;
    }
    Ok(outcome)
}

/// Trains one plan from its checkpoint, if any, and writes its history to `histories/`;
/// returns the model, its history and what the history's held-out columns measured.
fn fit_plan(
    plan: &Plan,
    parts: &Parts,
    context: &PlanContext,
) -> Result<(TrainedModel, trainer::History, trainer::HeldOut), crate::Error> {
    let PlanContext {
        test,
        flags,
        verbose,
        device,
        out,
        encoder,
    } = *context;
    let (fit_part, val_part) = parts;
    let seed = flags.seed;
    let network = Network::new(&plan.spec, seed, device)?;
    let mut config = plan.training.fit_config(seed, verbose)?;
    config.checkpoint = Some(checkpointing(plan, flags, out));
    let held_out = if val_part.is_some() {
        trainer::HeldOut::Validation
    } else {
        trainer::HeldOut::Test
    };
    config.held_out = held_out;
    let preprocessing = Preprocessing {
        inputs: plan.training.inputs,
        scale_targets: false,
    };
    // Without a validation part the test set is the validation data of the curves, as
    // report 001 passes it to Keras (`fit_config` has refused callbacks that would watch
    // it, so it decides nothing).
    let (mut model, history) = train_model(
        network,
        fit_part,
        Some(val_part.as_ref().unwrap_or(test)),
        preprocessing,
        &config,
        device,
    )?;
    model.card.table = encoder.cloned();
    out.subdir("histories")?.write(
        &format!("{}.csv", trial_file(plan)),
        &history.to_csv_as(held_out),
    )?;
    Ok((model, history, held_out))
}

/// The file name of a plan's outputs: `section--label`.
fn trial_file(plan: &Plan) -> String {
    let section = plan
        .trial
        .params
        .get("section")
        .and_then(Value::as_str)
        .unwrap_or("");
    format!("{}--{}", slug(section), slug(&plan.label))
}

fn save_model(
    plan: &Plan,
    model: &TrainedModel,
    history: &trainer::History,
    held_out: trainer::HeldOut,
    test: &Samples,
    out: &Output,
) -> Result<(), crate::Error> {
    let dir = out.subdir("models")?.subdir(&trial_file(plan))?;
    model.save(&dir.dir)?;
    dir.write("history.csv", &history.to_csv_as(held_out))?;
    draw_model(plan, model, history, held_out, test, &dir)?;
    let (report, _) = model.classification_report(test)?;
    dir.write("classification_report.txt", &report.to_text())?;
    Ok(())
}

/// The seconds a model trained before this process, when it was resumed from a checkpoint:
/// its epochs' recorded times beyond what this call took (0 for a model trained here whole).
fn earlier_seconds(history: &trainer::History, started: Instant) -> f64 {
    let recorded: f64 = history.epochs.iter().map(|e| e.seconds).sum();
    (recorded - started.elapsed().as_secs_f64()).max(0.0)
}

/// A saved model's charts (curves, confusion matrix, test images).
fn draw_model(
    plan: &Plan,
    model: &TrainedModel,
    history: &trainer::History,
    held_out: trainer::HeldOut,
    test: &Samples,
    dir: &Output,
) -> Result<(), crate::Error> {
    let title = format!("{}, {}", plan.label, test_description(test));
    plot::model_charts(
        dir,
        &plot::ModelCharts {
            title: &title,
            model,
            history,
            held_out,
            kept: history.kept_epoch(plan.training.early_stopping.as_ref()),
            test,
        },
    )?;
    Ok(())
}

/// Draws the charts of saved models that have none in PNG yet (saved by a build that drew
/// SVG by hand, or before charts existed), from their saved weights and history: no
/// training.
fn redraw_saved(
    plans: &[Plan],
    test: &Samples,
    out: &Output,
    device: &burn::tensor::Device,
) -> Result<usize, crate::Error> {
    let mut drawn = 0;
    for plan in plans.iter().filter(|p| p.save) {
        let dir = Output {
            dir: out.path("models").join(trial_file(plan)),
        };
        let csv = dir.path("history.csv");
        if dir.path("curves.png").exists()
            || !dir.path(trainer::estimator::CARD_FILE).exists()
            || !csv.exists()
        {
            continue;
        }
        let model = TrainedModel::load(&dir.dir, device)?;
        let text = std::fs::read_to_string(&csv).map_err(|e| crate::Error::io(&csv, e))?;
        let (history, held_out) = trainer::History::from_csv(&text, Outcome::Finished)
            .map_err(|e| format!("{}: {e}", csv.display()))?;
        draw_model(plan, &model, &history, held_out, test, &dir)?;
        drawn += 1;
    }
    Ok(drawn)
}

/// The data in a few words for a chart title (`10000 test items`).
fn test_description(test: &Samples) -> String {
    format!("{} test items", test.len())
}

/// Checks a study file without data or training: it parses, every model and grid trial
/// builds for items of `input` shape (layers, sizes, training settings, ranking rule).
/// Returns the number of models a full run trains.
pub fn check_study(path: &Path, input: Shape) -> Result<usize, crate::Error> {
    use clap::Parser;
    let config: ModelTableConfig = config::read(path)?;
    let flags = Flags::try_parse_from(["check"]).map_err(|e| e.to_string())?;
    Ok(resolve(&config, &flags, input, path, &Value::Null)?
        .plans
        .len())
}

/// Runs the model-table experiment `name` (the binary's name) with `flags`.
///
/// About 190 lines, for the reason [`crate::mlp_table::run`] gives: the steps of a table
/// run in order, sharing the plans, data, device and records.
pub fn run(name: &str, flags: &Flags) -> Result<(), crate::Error> {
    let started = Instant::now();
    let path = flags.config_path(name);
    let mut config: ModelTableConfig = config::read(&path)?;
    config.title = config::title_or_file_name(&config.title, &path);
    let loaded = config::load_run_data(flags, &path, &config.dataset, config.split, &config.quick)?;
    let form = loaded.form;
    let data_name = loaded.data_name(&config.dataset);
    let encoder = loaded.encoder.clone();
    let (train, test) = (loaded.train, loaded.test);
    if train.num_classes().is_none() {
        return Err(crate::Error::from(format!(
            "{}: model tables are for classification; {} has numeric targets",
            path.display(),
            config.dataset
        )));
    }
    let input = Shape::from_dims(&train.shape)?;
    let data = config::data_config(
        &data_name,
        &train,
        form,
        config.split,
        flags.seed,
        flags.quick.then_some(&config.quick),
    )
    .to_value();
    let every = resolve(&config, flags, input, &path, &data)?;
    let Resolved { plans, .. } = every.clone().keep(|p| chosen_by_only(flags, p));
    if plans.is_empty() {
        return Err(crate::Error::from(format!(
            "{}: nothing to run{}",
            path.display(),
            flags.only.as_ref().map_or(String::new(), |o| format!(
                " (no section or model matches --only {o:?})"
            ))
        )));
    }
    if flags.summary {
        return print_summaries(&plans, train.len());
    }
    let selected = select_device(flags.device)?;
    let out = Output::create(&flags.out_dir(name))?;
    let workers = flags.jobs.map_or(1, |j| j as usize);
    println!(
        "{}{}\n{} model(s) in {} section(s) on {} ({} train, {} test items), {} worker(s), \
         device {}",
        config.title,
        if flags.quick { " [quick]" } else { "" },
        plans.len(),
        config.sections.len(),
        config.dataset,
        train.len(),
        test.len(),
        workers,
        selected.description
    );
    let parts = validation_parts(&train, &plans, flags.seed)?;
    flags.merge_shards(&out.dir)?;
    let mut results = ResultsFile::open(&out.path("trials.jsonl"))?;
    let mut trials: Vec<Trial> = flags.shard_of(plans.iter().map(|p| p.trial.clone()).collect());
    if flags.rows {
        cheapest_first(&mut trials, &plans, train.len());
    }
    let pending = trials
        .iter()
        .filter(|t| !results.contains(&t.key()))
        .count();
    if pending < trials.len() {
        println!(
            "{} model(s) already in {} (delete it to rerun them)",
            trials.len() - pending,
            out.path("trials.jsonl").display()
        );
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    // One worker: Keras' progress bar per epoch; several: one line per model.
    let verbose = if workers == 1 {
        Verbosity::Bar
    } else {
        Verbosity::Silent
    };
    let options = SearchOptions {
        workers,
        progress: false,
        rank: config.rank,
    };
    let run_started = Instant::now();
    for done in results.records_of(&trials) {
        drop_checkpoint(&plans, &done.key, flags, &out);
    }
    let context = PlanContext {
        test: &test,
        flags,
        verbose,
        device: &selected.device,
        out: &out,
        encoder: encoder.as_ref(),
    };
    let train_one = |trial: &Trial| {
        let plan = &plans[trial.index];
        let section = &config.sections[plan.section].name;
        if workers == 1 {
            println!(
                "\n{section} / {} ({} params; {})",
                plan.label,
                plan.spec
                    .param_counts()
                    .map_or("?".into(), |c| models::spec::group_thousands(c.0)),
                plan.training.describe()
            );
        }
        let t0 = Instant::now();
        let parts = &parts[&plan.training.validation.to_bits()];
        let outcome = train_plan(plan, parts, &context).unwrap_or_else(TrialOutcome::failed);
        let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        println!(
            "[{n}/{pending}] {section} / {}: {} in {:.1} s{}",
            plan.label,
            match &outcome.status {
                Status::Failed { error } => format!("FAILED ({error})"),
                _ => format!(
                    "test accuracy {:.4}, {} epoch(s)",
                    outcome.test.map_or(f64::NAN, |t| t.0),
                    outcome.epochs
                ),
            },
            t0.elapsed().as_secs_f64(),
            if n < pending {
                let per_model = run_started.elapsed().as_secs_f64() / n as f64;
                format!(
                    ", about {:.0} min left",
                    per_model * (pending - n) as f64 / 60.0
                )
            } else {
                String::new()
            }
        );
        outcome
    };
    let summary = run_search_recorded(&trials, &mut results, &options, train_one, |record| {
        drop_checkpoint(&plans, &record.key, flags, &out)
    })?;
    if let Some(shard) = flags.shard {
        return shard_done(shard, &summary, &out);
    }
    let redrawn = redraw_saved(&plans, &test, &out, &selected.device)?;
    if redrawn > 0 {
        println!("drew the charts of {redrawn} saved model(s) from their weights and history");
    }
    // The report shows every row with a result under its current key, whatever `--only`
    // chose, so a run of a few rows leaves a table with every figure already made.
    let Resolved { plans, rows } = every.keep(|p| results.contains(&p.key));
    let trials: Vec<Trial> = plans.iter().map(|p| p.trial.clone()).collect();
    let records = results.records_of(&trials);
    crate::book::write_run_rows(&out, &path, flags, run_rows(&rows, &plans, &records))?;
    let mut report = write_report(&ReportInput {
        config: &config,
        flags,
        plans: &plans,
        rows: &rows,
        records: &records,
        out: &out,
        test: &test,
        selected: &selected,
    })?;
    if let Some(form) = form {
        let _ = writeln!(
            report,
            "Data: {} read from {}.\n",
            config.dataset,
            form.describe()
        );
    }
    let _ = writeln!(
        report,
        "Run time {:.1} s ({} model(s) trained now, {} from trials.jsonl); training every model \
         of this table took {:.1} s in all.\n\nFiles: table.md, \
         table.csv (the report's rows), trials.jsonl (every model), histories/ (every model's \
         per-epoch history), a chart per section, models/ (saved models with history.csv, \
         classification_report.txt, curves, confusion matrices and test images as SVG and PNG), \
         index.html (this report with every chart).",
        started.elapsed().as_secs_f64(),
        summary.ran,
        summary.skipped,
        records.iter().map(|r| r.seconds).sum::<f64>()
    );
    out.write("table.md", &report)?;
    crate::page::write_index(&out, &config.title, &report)?;
    println!("\n{report}");
    println!("written to {}", out.dir.display());
    failures(&records, |r| {
        plans
            .iter()
            .find(|p| p.key == r.key)
            .map_or_else(|| r.index.to_string(), |p| p.label.clone())
    })
}

impl Resolved {
    /// The plans `keep` accepts, numbered afresh (their trials' indices too), and every row,
    /// pointing at its plan if it was kept.
    fn keep(self, keep: impl Fn(&Plan) -> bool) -> Resolved {
        let mut index = vec![None; self.plans.len()];
        let mut plans = Vec::new();
        for (i, mut plan) in self.plans.into_iter().enumerate() {
            if keep(&plan) {
                index[i] = Some(plans.len());
                plan.trial.index = plans.len();
                plans.push(plan);
            }
        }
        let rows = self
            .rows
            .into_iter()
            .map(|row| Row {
                plan: row.plan.and_then(|p| index[p]),
                ..row
            })
            .collect();
        Resolved { plans, rows }
    }
}

/// Whether `--only` (if given) chooses `plan`: its `section / label` line contains the text,
/// ignoring case.
fn chosen_by_only(flags: &Flags, plan: &Plan) -> bool {
    flags
        .only
        .as_ref()
        .is_none_or(|o| plan.line().to_lowercase().contains(&o.to_lowercase()))
}

/// Orders `trials` by their estimated training FLOPs, cheapest first, so that a `--rows` run
/// (the background queue's) fills the most report rows per hour; ties keep the study's order.
fn cheapest_first(trials: &mut [Trial], plans: &[Plan], train_items: usize) {
    let cost: Vec<f64> = plans
        .iter()
        .map(|p| {
            let training = &p.training;
            estimate::training_flops(&p.spec, train_items, training.validation, training.epochs)
                .unwrap_or(f64::INFINITY)
        })
        .collect();
    trials.sort_by(|a, b| cost[a.index].total_cmp(&cost[b.index]));
}

/// The end of a shard's run: what it trained, and how to join it.
pub(crate) fn shard_done(
    shard: search::Shard,
    summary: &search::SearchSummary,
    out: &Output,
) -> Result<(), crate::Error> {
    println!(
        "shard {}/{}: {} trained now, {} already in {}; join the shards with the same command \
         and --merge <their folders>, without --shard",
        shard.index,
        shard.count,
        summary.ran,
        summary.skipped,
        out.path("trials.jsonl").display()
    );
    Ok(())
}

/// An error listing the models whose training failed with an error (the table marks them
/// and every other figure is kept), so the exit code says the table is incomplete. A
/// diverged model is a result (the table says "diverged"), not a failure of the run.
pub(crate) fn failures(
    records: &[TrialRecord],
    label: impl Fn(&TrialRecord) -> String,
) -> Result<(), crate::Error> {
    let bad: Vec<String> = records
        .iter()
        .filter_map(|r| match &r.status {
            Status::Failed { error } => Some(format!("{}: {error}", label(r))),
            _ => None,
        })
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(crate::Error::from(format!(
        "{} of {} model(s) failed (the table and every other figure are written): {}",
        bad.len(),
        records.len(),
        bad.join("; ")
    )))
}

/// Prints every distinct model's summary, its forward FLOPs and training settings, and
/// the work of the whole run: the FLOPs of every planned epoch (early stopping may cut it).
fn print_summaries(plans: &[Plan], train_items: usize) -> Result<(), crate::Error> {
    let mut seen: Vec<String> = Vec::new();
    let mut total = 0f64;
    for plan in plans {
        let flops = plan.spec.forward_flops()? as f64;
        // A training step is about three forward passes; add one pass over the data for
        // evaluation.
        total += flops * train_items as f64 * (3.0 * plan.training.epochs as f64 + 1.0);
        let text = plan.spec.summary()?;
        if !seen.contains(&text) {
            println!(
                "{text}Forward pass: {:.2} MFLOP per item\ntraining: {}\n",
                flops / 1e6,
                plan.training.describe()
            );
            seen.push(text);
        }
    }
    println!(
        "{} distinct architecture(s) in {} model(s); training all their epochs on {} items \
         is about {:.1} PFLOP ({:.0} s at 1 TFLOP/s sustained)",
        seen.len(),
        plans.len(),
        train_items,
        total / 1e15,
        total / 1e12
    );
    Ok(())
}

/// The project's figure that a published figure's name stands for.
fn our_figure(record: &TrialRecord, name: &str) -> Option<f64> {
    match name {
        "epochs" => Some(record.epochs as f64),
        "train_accuracy" => record.train_score,
        "train_loss" => record.train_loss,
        "val_accuracy" => record.val_score,
        "val_loss" => record.val_loss,
        "test_accuracy" => record.test_score,
        "test_loss" => record.test_loss,
        "lr" => record.final_lr,
        _ => None,
    }
}

fn figure_cell(name: &str, value: f64) -> String {
    match name {
        "epochs" => format!("{value:.0}"),
        "lr" => format!("{value:.0e}"),
        _ => format!("{value:.4}"),
    }
}

/// Mean and standard deviation of the accuracy of a saved model on `folds` stratified
/// folds of the test set.
fn fold_accuracy(
    dir: &Path,
    test: &Samples,
    folds: usize,
    seed: u64,
    device: &burn::tensor::Device,
) -> Result<(f64, f64), crate::Error> {
    let model = TrainedModel::load(dir, device)?;
    let labels = test.targets.labels().unwrap_or(&[]);
    let splits = data::stratified_k_fold(labels, folds, seed)?;
    let scores: Vec<f64> = splits
        .iter()
        .map(|s| model.score(&test.subset(&s.held_out)))
        .collect::<Result<_, _>>()?;
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / scores.len() as f64;
    Ok((mean, var.sqrt()))
}

/// What writing a table run's report reads: the study, the flags, the plans, the report's
/// rows, the trials' records, and where and on what the run ran.
struct ReportInput<'a> {
    config: &'a ModelTableConfig,
    flags: &'a Flags,
    plans: &'a [Plan],
    rows: &'a [Row],
    records: &'a [TrialRecord],
    out: &'a Output,
    test: &'a Samples,
    selected: &'a models::SelectedDevice,
}

impl ReportInput<'_> {
    /// The record of a row's plan, if it has run.
    fn record_of(&self, plan: Option<usize>) -> Option<&TrialRecord> {
        plan.and_then(|p| self.records.iter().find(|r| r.key == self.plans[p].key))
    }
}

/// The report (Markdown) of a table run, section by section, and its table.csv: every
/// report row with the report's figures and this project's.
fn write_report(input: &ReportInput) -> Result<String, crate::Error> {
    let (config, flags) = (input.config, input.flags);
    let mut report = format!(
        "# {}{}\n\n{}{}; device {}; seed {}.\n\n",
        config.title,
        if flags.quick {
            " (quick run: a subset of the data, fewer epochs and trials; not the report's scale)"
        } else {
            ""
        },
        config::report_prefix(&config.report),
        config.dataset,
        input.selected.description,
        flags.seed
    );
    // Every figure any row publishes: the CSV's columns.
    let all_figures: Vec<&str> = FIGURES
        .into_iter()
        .filter(|f| *f != "label" && input.rows.iter().any(|r| r.figures.contains_key(*f)))
        .collect();
    let mut csv = Table {
        header: ["section", "row", "report's label"]
            .into_iter()
            .map(String::from)
            .chain(
                all_figures
                    .iter()
                    .flat_map(|f| [format!("{f} (report)"), format!("{f} (ours)")]),
            )
            .collect(),
        rows: Vec::new(),
    };
    for (s, section) in config.sections.iter().enumerate() {
        write_section(input, s, section, &all_figures, &mut report, &mut csv)?;
    }
    report.push_str(&config::notes_section(&config.notes));
    input.out.write("table.csv", &csv.to_csv())?;
    Ok(report)
}

/// Section `s` of the report: its training, the report's rows with this project's figures
/// (also added to `csv`), its best trials, its chart and its saved models' extra figures.
fn write_section(
    input: &ReportInput,
    s: usize,
    section: &Section,
    all_figures: &[&str],
    report: &mut String,
    csv: &mut Table,
) -> Result<(), crate::Error> {
    let section_rows: Vec<&Row> = input.rows.iter().filter(|r| r.section == s).collect();
    let section_plans: Vec<&Plan> = input.plans.iter().filter(|p| p.section == s).collect();
    if section_plans.is_empty() {
        return Ok(());
    }
    let _ = writeln!(report, "## {}\n", section.name);
    let _ = writeln!(
        report,
        "Training: {}.\n",
        section_plans[0].training.describe()
    );
    let mut figures: Vec<&str> = FIGURES
        .iter()
        .copied()
        .filter(|f| *f != "label" && section_rows.iter().any(|r| r.figures.contains_key(*f)))
        .collect();
    if figures.is_empty() {
        figures = vec!["epochs", "train_accuracy", "val_accuracy", "test_accuracy"];
    }
    let table = section_rows_table(input, section, &section_rows, &figures, all_figures, csv);
    if !table.rows.is_empty() {
        let _ = writeln!(
            report,
            "The report's rows, with this project's figures:\n\n{}",
            table.to_markdown()
        );
    }
    if section_rows
        .iter()
        .any(|r| input.record_of(r.plan).is_none())
    {
        let _ = writeln!(
            report,
            "A row marked queued has no result of its configuration in this folder yet: \
             `--rows --only \"<its name>\"` trains it (the results book, \
             experiments/results/BOOK.md, lists each such row of the reports as queued, with \
             its estimated time on this project's CPU).\n"
        );
    }
    // Every trial of the section, best first.
    let section_records: Vec<TrialRecord> = section_plans
        .iter()
        .filter_map(|p| input.records.iter().find(|r| r.key == p.key).cloned())
        .collect();
    if !section.grid.is_empty() {
        write_section_best(input, section, &section_records, report);
    }
    let record_of = |plan: Option<usize>| input.record_of(plan);
    let chart_file = section_chart(input.out, section, &section_rows, &figures, &record_of)?;
    if let Some(file) = chart_file {
        let _ = writeln!(report, "Chart: {file} (and .png).\n");
    }
    if !section.grid.is_empty() {
        let files = grid_charts(input, section, &section_records)?;
        if !files.is_empty() {
            let _ = writeln!(report, "The search: {} (and .png).\n", files.join(", "));
        }
    }
    for plan in section_plans.iter().filter(|p| p.save) {
        write_saved_model(input, section, plan, report)?;
    }
    Ok(())
}

/// The section's table of the report's rows (the section's `figures`, report's and ours),
/// adding each row, with every figure of the file, to `csv`.
fn section_rows_table(
    input: &ReportInput,
    section: &Section,
    section_rows: &[&Row],
    figures: &[&str],
    all_figures: &[&str],
    csv: &mut Table,
) -> Table {
    let has_labels = section_rows.iter().any(|r| r.figures.contains_key("label"));
    let mut table = Table {
        header: vec![
            if section.models.is_empty() {
                "trial".into()
            } else {
                "model".into()
            },
            "params".into(),
        ],
        rows: Vec::new(),
    };
    if has_labels {
        table.header.push("report's label".into());
    }
    for f in figures {
        table.header.push(format!("{f} (report)"));
        table.header.push(format!("{f} (ours)"));
    }
    for row in section_rows {
        let record = input.record_of(row.plan);
        let params = row.plan.map_or("-".into(), |p| {
            input.plans[p]
                .spec
                .param_counts()
                .map_or("?".into(), |c| models::spec::group_thousands(c.0))
        });
        let mut cells = vec![row.label.clone(), params];
        let label = row.figures.get("label").map_or("-".into(), format_value);
        if has_labels {
            cells.push(label.clone());
        }
        let mut csv_cells = vec![section.name.clone(), row.label.clone(), label];
        // The same figure order as the header: the section's figures for the
        // Markdown table, every figure of the file for the CSV.
        for f in figures {
            cells.push(row.figures.get(*f).map_or("-".into(), format_value));
            cells.push(our_cell(record, f));
        }
        for f in all_figures {
            csv_cells.push(row.figures.get(*f).map_or(String::new(), format_value));
            csv_cells.push(our_cell(record, f));
        }
        table.rows.push(cells);
        csv.rows.push(csv_cells);
    }
    table
}

/// The section's best trials (Talos' columns, or the report's), and for a ranking on the
/// test set the trial a validation split would have picked.
fn write_section_best(
    input: &ReportInput,
    section: &Section,
    section_records: &[TrialRecord],
    report: &mut String,
) {
    let (config, top) = (input.config, input.flags.top);
    let dims: Vec<&str> = section.grid.keys().map(String::as_str).collect();
    let best = match section.layout {
        Layout::Talos => {
            let mut columns = dims.clone();
            columns.push("test_score");
            let mut t = Table::talos(section_records, top, &columns);
            if let Some(last) = t.header.last_mut() {
                *last = "test_accuracy".into();
            }
            t
        }
        Layout::Report => {
            let columns: Vec<&str> = dims
                .iter()
                .copied()
                .chain([
                    "epochs",
                    "train_score",
                    "val_score",
                    "test_score",
                    "test_loss",
                    "seconds",
                ])
                .collect();
            Table::top(section_records, top, &columns, config.rank)
        }
    };
    let _ = writeln!(
        report,
        "This project's {} best of {} trial(s) ({}):\n\n{}",
        best.rows.len(),
        section_records.len(),
        if section.layout == Layout::Talos {
            "ranked by validation accuracy, Talos' columns"
        } else {
            config.rank.describe()
        },
        best.to_markdown()
    );
    if section.layout == Layout::Report && config.rank == RankBy::Test {
        let _ = writeln!(
            report,
            "{}\n",
            validation_pick(section_records, input.plans)
        );
    }
}

/// A saved model's extra figures: its accuracy over stratified folds of the test set, and
/// its classification report beside the report's, where the study asks for them.
fn write_saved_model(
    input: &ReportInput,
    section: &Section,
    plan: &Plan,
    report: &mut String,
) -> Result<(), crate::Error> {
    let dir = input.out.path("models").join(trial_file(plan));
    if !dir.join("model.json").exists() {
        return Ok(());
    }
    if section.test_folds > 1 {
        let (mean, sd) = fold_accuracy(
            &dir,
            input.test,
            section.test_folds,
            input.flags.seed,
            &input.selected.device,
        )?;
        let theirs = input
            .rows
            .iter()
            .find(|r| r.plan.is_some_and(|p| input.plans[p].key == plan.key))
            .and_then(|r| r.figures.get("test_accuracy_folds"))
            .map_or("-".into(), format_value);
        let _ = writeln!(
            report,
            "{}: test accuracy over {} stratified folds of the test set {mean:.4} ± \
             {sd:.4} (report: {theirs}).\n",
            plan.label, section.test_folds
        );
    }
    let entry = section
        .models
        .iter()
        .find(|m| m.name == plan.label && m.classification_report);
    if let Some(entry) = entry
        && let Ok(text) = std::fs::read_to_string(dir.join("classification_report.txt"))
    {
        let _ = writeln!(
            report,
            "{}: classification report on the test set (this project):\n\n```\n{text}```\n",
            plan.label
        );
        if let Some(theirs) = &entry.published_report {
            let _ = writeln!(report, "The report's:\n\n```\n{}\n```\n", theirs.trim());
        }
    }
    Ok(())
}

/// This project's figures for every report row the run answered, for the results book.
fn run_rows(rows: &[Row], plans: &[Plan], records: &[TrialRecord]) -> Vec<crate::book::RunRow> {
    rows.iter()
        .enumerate()
        .filter_map(|(index, row)| {
            let plan = &plans[row.plan?];
            let record = records.iter().find(|r| r.key == plan.key)?;
            let ours = row
                .figures
                .keys()
                .filter_map(|f| our_figure(record, f).map(|v| (f.clone(), Value::from(v))))
                .collect();
            Some(crate::book::RunRow {
                index,
                row: row.label.clone(),
                ours,
                commit: record.commit.clone(),
            })
        })
        .collect()
}

/// Beside a table ranked by test score (the report's rule): the trial a validation split
/// would have picked, where the trials had one.
fn validation_pick(records: &[TrialRecord], plans: &[Plan]) -> String {
    let Some(pick) = search::best(records, RankBy::Validation) else {
        return "No validation pick: these trials had no validation part (the report's setup)."
            .into();
    };
    let label = plans
        .iter()
        .find(|p| p.key == pick.key)
        .map_or_else(|| pick.index.to_string(), |p| p.label.clone());
    let at_test = search::best(records, RankBy::Test).map(|b| b.key == pick.key);
    format!(
        "A validation split would have picked {label} (validation {:.4}, test {:.4}){}.",
        pick.val_score.unwrap_or(f64::NAN),
        pick.test_score.unwrap_or(f64::NAN),
        if at_test == Some(true) {
            ", the same trial as the test ranking"
        } else {
            ", not the test ranking's first"
        }
    )
}

/// The report's figure beside ours for every row of a section that has one, on the first
/// score the section's rows publish; `None` when no row publishes a score.
fn section_chart<'a>(
    out: &Output,
    section: &Section,
    rows: &[&Row],
    figures: &[&str],
    record_of: &dyn Fn(Option<usize>) -> Option<&'a TrialRecord>,
) -> Result<Option<String>, crate::Error> {
    let Some(figure) = ["test_accuracy", "val_accuracy", "train_accuracy"]
        .into_iter()
        .find(|f| figures.contains(f))
    else {
        return Ok(None);
    };
    let bars: Vec<(String, Vec<Option<f64>>)> = rows
        .iter()
        .map(|row| {
            let theirs = row.figures.get(figure).and_then(Value::as_f64);
            let ours = record_of(row.plan).and_then(|r| our_figure(r, figure));
            (row.label.clone(), vec![theirs, ours])
        })
        .collect();
    let stem = slug(&section.name);
    plot::render(
        out,
        &stem,
        &plot::Bars {
            title: format!("{}: the report's figures and ours", section.name),
            axis: figure.replace('_', " "),
            series: &["report", "this project"],
            rows: &bars,
        },
    )?;
    Ok(Some(format!("{stem}.svg")))
}

/// A grid section's pictures of its search, from the trials it ran: every trial's score by
/// hyperparameter value, and the training loss per epoch of its 5 best (the chart report
/// 001 draws for its MLP grids as Figures 7, 9, 10 and 12), read from `histories/`. None
/// when fewer than 3 trials have a score.
fn grid_charts(
    input: &ReportInput,
    section: &Section,
    records: &[TrialRecord],
) -> Result<Vec<String>, crate::Error> {
    let rank = match section.layout {
        Layout::Talos => RankBy::Validation,
        Layout::Report => input.config.rank,
    };
    let split = match rank {
        RankBy::Validation => "validation",
        RankBy::Test => "test",
    };
    let scored: Vec<&TrialRecord> = search::ranked(records, rank)
        .into_iter()
        .filter(|r| r.score(rank).is_some())
        .collect();
    if scored.len() < 3 {
        return Ok(Vec::new());
    }
    let stem = slug(&section.name);
    let mut files = Vec::new();
    let params = scores_by_value(section, &scored, rank);
    if !params.is_empty() {
        let score = format!("{split} accuracy");
        let name = format!("{stem}-by-hyperparameter");
        let chart = plot::Strip {
            title: format!(
                "{}: {} trials' {score} by hyperparameter value",
                section.name,
                scored.len()
            ),
            score: &score,
            params,
        };
        plot::render(input.out, &name, &chart)?;
        files.push(format!("{name}.svg"));
    }
    let series = training_losses(input, &scored[..scored.len().min(5)]);
    if !series.is_empty() {
        let name = format!("{stem}-best-trials-loss");
        let chart = plot::Overlay {
            title: format!(
                "{}: training loss of the {} best trials (by {split} accuracy)",
                section.name,
                series.len()
            ),
            axis: "training loss".into(),
            series,
        };
        plot::render(input.out, &name, &chart)?;
        files.push(format!("{name}.svg"));
    }
    Ok(files)
}

/// Per hyperparameter the section's grid varies among `scored`: each trial's value (as
/// text) and score, the values in the grid's order (the chart's columns left to right).
fn scores_by_value(
    section: &Section,
    scored: &[&TrialRecord],
    rank: RankBy,
) -> Vec<(String, Vec<(String, f64)>)> {
    json(&section.grid)
        .into_iter()
        .filter_map(|(name, values)| {
            let values = values.as_array().cloned().unwrap_or_default();
            let column = |v: &Value| values.iter().position(|w| same_value(v, w));
            let mut points: Vec<(Option<usize>, String, f64)> = scored
                .iter()
                .filter_map(|r| {
                    let value = r.params.get(&name)?;
                    Some((column(value), format_value(value), r.score(rank)?))
                })
                .collect();
            points.sort_by_key(|p| p.0);
            let distinct: std::collections::BTreeSet<&String> =
                points.iter().map(|p| &p.1).collect();
            let points = points.iter().map(|p| (p.1.clone(), p.2)).collect();
            (distinct.len() > 1).then_some((name, points))
        })
        .collect()
}

/// Each record's training loss per epoch, labelled by its model, from its history in
/// `histories/` (a record whose history cannot be read is left out).
fn training_losses(
    input: &ReportInput,
    records: &[&TrialRecord],
) -> Vec<(String, Vec<(f64, f64)>)> {
    records
        .iter()
        .filter_map(|r| {
            let plan = input.plans.iter().find(|p| p.key == r.key)?;
            let file = input
                .out
                .path(&format!("histories/{}.csv", trial_file(plan)));
            let text = std::fs::read_to_string(file).ok()?;
            let (history, _) = trainer::History::from_csv(&text, Outcome::Finished).ok()?;
            let points = history.epochs.iter().map(|e| (e.epoch as f64, e.loss));
            Some((plan.label.clone(), points.collect()))
        })
        .collect()
}

/// This project's figure of a row: `queued` where no run of this configuration has one
/// yet (`--only`, `--limit`; the book lists such rows as queued too, with an estimate).
fn our_cell(record: Option<&TrialRecord>, figure: &str) -> String {
    match record {
        Some(r) => match (&r.status, our_figure(r, figure)) {
            (Status::Failed { .. }, _) => "failed".into(),
            (Status::Diverged, None) => "diverged".into(),
            (_, Some(v)) => figure_cell(figure, v),
            (_, None) => "-".into(),
        },
        None => "queued".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("Table 6: one convolution"), "table-6-one-convolution");
        assert_eq!(slug("filters 128, kernel 11"), "filters-128-kernel-11");
    }

    #[test]
    fn values_compare_as_numbers() {
        assert!(same_value(&json!(0.25), &json!(0.25)));
        assert!(same_value(&json!(128), &json!(128.0)));
        assert!(!same_value(&json!(128), &json!(64)));
        assert!(same_value(&json!([3, 32]), &json!([3.0, 32])));
        assert!(!same_value(&json!("same"), &json!("valid")));
    }
}
