//! `grid`: runs a grid of report 001's MLPs on a dataset, keeps every trial in a results
//! file, prints the best trials and saves the best model. Also merges the results files of
//! shards run on several machines, and prints the table of a results file.
//!
//! ```text
//! grid run --dataset iris --grid experiments/iris.toml --results out/iris.jsonl
//! grid run --data houses.csv --target price_k --impute median --grid g.toml --results out/houses.jsonl
//! grid run ... --shard 2/8             # the third eighth of the trials (a Slurm array task)
//! grid merge out/shard-*.jsonl --out out/all.jsonl
//! grid table out/all.jsonl --top 10
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use data::TestSplit;
use data::{DataDirs, DatasetName, HoldOut, Samples, Targets, split_samples};
use models::{DeviceChoice, select_device};
use search::key::DataKey;
use search::{
    Grid, Halving, MLP_COLUMNS, MLP_PARAMS, MlpSearch, RankBy, ResultsFile, SearchOptions, Shard,
    Table, TrialRecord, best, merge, successive_halving,
};
use trainer::{Mlp, Task};

#[derive(Parser)]
#[command(name = "grid", version, about = "Grid search over report 001's MLPs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run (or resume) a search; finished trials in the results file are skipped.
    Run(Box<RunArgs>),
    /// Join results files (for example from shards) into one, dropping duplicates.
    Merge {
        /// Results files to join.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The joined file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the best trials of a results file.
    Table(TableArgs),
}

#[derive(Args)]
struct TableArgs {
    /// Results file (JSON lines).
    results: PathBuf,
    /// Rows to print.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Which score ranks the trials: validation (the default), or test as an explicit
    /// choice.
    #[arg(long, value_enum, default_value_t = Rank::Validation)]
    rank: Rank,
}

#[derive(Clone, Copy, ValueEnum)]
enum Rank {
    Test,
    Validation,
}

impl From<Rank> for RankBy {
    fn from(r: Rank) -> Self {
        match r {
            Rank::Test => RankBy::Test,
            Rank::Validation => RankBy::Validation,
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// Dataset (iris, statlog, mnist, fashion-mnist, cifar10, diabetes).
    #[arg(long, required_unless_present = "data", conflicts_with = "data")]
    dataset: Option<DatasetName>,
    /// Your own data instead: a CSV/TSV file (`.gz` too), a folder of `<class>/<image>`, or
    /// an IDX images file, read as the `train` binary reads it (text columns one-hot,
    /// the test part held out by --test-fraction, stratified for classes, or --test).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Target column of --data: a header name or a 0-based index (default: the last).
    #[arg(long, default_value = "last", requires = "data")]
    target: String,
    /// Task of --data: auto (classification for text labels or a few distinct whole
    /// numbers), classification or regression.
    #[arg(long, default_value = "auto", requires = "data")]
    task: data::tabular::TaskChoice,
    /// Missing values in --data's features: none (an error naming row and column), mean or
    /// median.
    #[arg(long, default_value = "none", requires = "data")]
    impute: data::tabular::Impute,
    /// A separate test file or folder for --data.
    #[arg(long, requires = "data")]
    test: Option<PathBuf>,
    /// Grid file: TOML or JSON named lists (`hidden_layers = [[16], [32, 16]]`,
    /// `learning_rate = [0.01, 0.1]`, `momentum`, `l2`, `epochs`, `batch_size`,
    /// `activation`, `init_scale`, `seed`; report 001's names `hidden_layer`, `eta`, `mu`,
    /// `alpha`, `epoch`, `beta` are the same parameters), or an experiment file with a
    /// `[grid]` table.
    #[arg(long)]
    grid: PathBuf,
    /// Results file (JSON lines); created, or resumed when it exists.
    #[arg(long)]
    results: PathBuf,
    /// Worker threads (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    jobs: Option<u32>,
    /// Run only shard I of N (`I/N`, 0 <= I < N), for splitting a grid across machines
    /// (a Slurm array passes `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`).
    #[arg(long)]
    shard: Option<Shard>,
    /// Run N trials sampled at random from the grid instead of all of them.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    sample: Option<u32>,
    /// Seed of the sampling, the split, and every trial that does not set `seed`.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Successive halving `MIN:FACTOR`: train everything for MIN epochs, keep the best
    /// 1/FACTOR, multiply the epochs by FACTOR, until the grid's epochs (ranked on a
    /// validation split).
    #[arg(long, value_parser = parse_halving)]
    halving: Option<(usize, usize)>,
    /// Held-out test fraction for datasets without an official test split.
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Validation fraction carved (stratified) from the training data, on which the best
    /// trial is picked; 0 carves none and then needs `--rank test`.
    #[arg(long, default_value_t = 0.2)]
    validation_fraction: f64,
    /// Which score picks the best trial: validation (the default), or test as an explicit
    /// choice (report 001's rule).
    #[arg(long, value_enum, default_value_t = Rank::Validation)]
    rank: Rank,
    /// Train every trial alone instead of in stacked groups.
    #[arg(long)]
    one_by_one: bool,
    /// Rows of the printed table.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Retrain the best trial and save the model (model.json, weights.safetensors).
    #[arg(long)]
    save_best: Option<PathBuf>,
    /// Device: auto, cpu or gpu.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Folder holding the datasets (default: BURN_REPORTS_DATA, then datasets/).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn parse_halving(text: &str) -> Result<(usize, usize), String> {
    let (min, factor) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: write MIN:FACTOR, e.g. 10:3"))?;
    let parse = |s: &str, what: &str| {
        s.trim()
            .parse::<usize>()
            .map_err(|_| format!("{text:?}: {what} must be a whole number"))
    };
    Ok((parse(min, "MIN")?, parse(factor, "FACTOR")?))
}

/// mimalloc, as the report binaries use (see the `experiments` crate): small models'
/// training steps allocate many small tensors, which glibc's malloc serves slowly.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(&args),
        Command::Merge { inputs, out } => merge(&inputs, &out)
            .map(|m| {
                for note in &m.dropped {
                    eprintln!("warning: {note}");
                }
                println!(
                    "{} trials written to {} ({} duplicate(s) dropped)",
                    m.records,
                    out.display(),
                    m.duplicates
                )
            })
            .map_err(|e| e.to_string()),
        Command::Table(args) => table(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The figures shown after report 001's parameter columns.
const FIGURES: [&str; 5] = [
    "test_score",
    "train_score",
    "train_loss",
    "val_score",
    "status",
];

fn table(args: &TableArgs) -> Result<(), String> {
    let (records, dropped) = ResultsFile::read(&args.results).map_err(|e| e.to_string())?;
    if let Some(note) = dropped {
        eprintln!("warning: {note}");
    }
    let rank = RankBy::from(args.rank);
    if rank == RankBy::Validation && records.iter().all(|r| r.val_score.is_none()) {
        return Err(format!(
            "{}: no trial has a validation score (run without a validation split): pass \
             --rank test to rank them by test score",
            args.results.display()
        ));
    }
    println!("{}:", rank.describe());
    print_table(&records, args.top, rank);
    Ok(())
}

fn print_table(records: &[TrialRecord], top: usize, rank: RankBy) -> Table {
    let present: Vec<&str> = MLP_COLUMNS
        .iter()
        .chain(&FIGURES)
        .copied()
        .filter(|c| match *c {
            "val_score" => records.iter().any(|r| r.val_score.is_some()),
            "test_score" => records.iter().any(|r| r.test_score.is_some()),
            c if MLP_PARAMS.contains(&c) => records.iter().any(|r| r.params.contains_key(c)),
            _ => true,
        })
        .collect();
    let mut table = Table::top(records, top, &present, rank);
    // Headed in the project's vocabulary (learning_rate, not the report's eta), as a grid
    // file may be written.
    for name in &mut table.header {
        if let Some(project) = search::project_name(name) {
            *name = project.to_string();
        }
    }
    print!("{}", table.to_markdown());
    table
}

/// What a grid file gives: the grid, and from an experiment file its `[defaults]` (values
/// of what the grid leaves out) and `[split]`, used exactly as the report binary uses them.
struct GridFile {
    grid: Grid,
    defaults: serde_json::Map<String, serde_json::Value>,
    split: Option<TestSplit>,
}

/// A grid file, or the `[grid]`, `[defaults]` and `[split]` of an experiment file.
fn read_grid(path: &Path) -> Result<GridFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: serde_json::Value = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    } else {
        let table: toml::Table =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(field) = search::grid::non_finite(&toml::Value::Table(table.clone())) {
            return Err(format!(
                "{}: {field}: nan and inf are not valid values (write a finite number)",
                path.display()
            ));
        }
        serde_json::to_value(table).map_err(|e| format!("{}: {e}", path.display()))?
    };
    let at = |what: &str, e: String| format!("{}: {what}: {e}", path.display());
    let Some(grid) = value.get("grid") else {
        let grid = parse_grid(value).map_err(|e| at("the grid", e))?;
        return Ok(GridFile {
            grid,
            defaults: Default::default(),
            split: None,
        });
    };
    let grid = parse_grid(grid.clone()).map_err(|e| at("[grid]", e))?;
    let defaults = match value.get("defaults") {
        None => Default::default(),
        Some(serde_json::Value::Object(map)) => {
            search::to_trial_names(map.clone()).map_err(|e| at("[defaults]", e.to_string()))?
        }
        Some(_) => return Err(at("[defaults]", "must be a table".into())),
    };
    let split = value
        .get("split")
        .map(|s| serde_json::from_value::<TestSplit>(s.clone()))
        .transpose()
        .map_err(|e| at("[split]", e.to_string()))?;
    Ok(GridFile {
        grid,
        defaults,
        split,
    })
}

/// A grid from its named lists, the project's parameter names (`learning_rate`,
/// `epochs`, ...) written as the trials' (`eta`, `epoch`, ...).
fn parse_grid(grid: serde_json::Value) -> Result<Grid, String> {
    let grid = match grid {
        serde_json::Value::Object(map) => {
            serde_json::Value::Object(search::to_trial_names(map).map_err(|e| e.to_string())?)
        }
        other => other,
    };
    Grid::from_value(grid).map_err(|e| e.to_string())
}

/// Training and test data, and the split in the canonical form of result keys: the
/// dataset's own test set, else the study file's `[split]`, else a stratified hold-out of
/// `--test-fraction`.
fn split_data(
    args: &RunArgs,
    dataset: DatasetName,
    file: &GridFile,
) -> Result<(Samples, Samples, TestSplit, Option<&'static str>), String> {
    let splits = DataDirs::new(args.data_dir.as_deref())
        .load_or_fetch(
            dataset,
            data::locate::at_a_terminal().then_some(&data::FetchSource::Official),
        )
        .map_err(|e| e.to_string())?;
    let form = splits.form.and_then(data::DataForm::key);
    // Without a study `[split]`, the dataset's own test set when it has one.
    let split = match (file.split, &splits.test) {
        (Some(split), _) => split,
        (None, Some(_)) => TestSplit::Official,
        (None, None) if args.test_fraction > 0.0 && args.test_fraction < 1.0 => {
            TestSplit::Stratified(args.test_fraction)
        }
        (None, None) => {
            return Err(format!(
                "{}: test fraction {} must be between 0 and 1",
                args.grid.display(),
                args.test_fraction
            ));
        }
    };
    match (split, splits.test) {
        (TestSplit::Official, Some(test)) => Ok((splits.train, test, split, form)),
        (TestSplit::Official, None) => Err(format!(
            "{}: [split] kind \"official\": {} has no official test split",
            args.grid.display(),
            dataset
        )),
        (_, _) => {
            let parts = split
                .hold_out(&splits.train, args.seed)
                .map_err(|e| e.to_string())?;
            let (train, test) = (
                splits.train.subset(&parts.train),
                splits.train.subset(&parts.held_out),
            );
            Ok((train, test, split, form))
        }
    }
}

/// A run's training and test data, and how result keys name it.
struct RunData {
    train: Samples,
    test: Samples,
    split: TestSplit,
    form: Option<&'static str>,
    /// The dataset's name, or for --data its name and fingerprint (`houses.csv@1f2e...`).
    name: String,
    /// How --data's table columns became inputs (saved with the best model).
    encoder: Option<data::tabular::TableEncoder>,
}

/// The named dataset split as its study says, or --data read as `train` reads it.
fn run_data(args: &RunArgs, file: &GridFile) -> Result<RunData, String> {
    let Some(path) = &args.data else {
        let dataset = args.dataset.ok_or("give --dataset NAME or --data FILE")?;
        let (train, test, split, form) = split_data(args, dataset, file)?;
        return Ok(RunData {
            train,
            test,
            split,
            form,
            name: dataset.id().to_string(),
            encoder: None,
        });
    };
    use data::tabular::TargetSpec;
    use data::user_data::{LoadOptions, Source, load};
    let options = LoadOptions {
        target: TargetSpec::parse(&args.target),
        task: args.task.0,
        header: None,
        impute: args.impute,
        test: args.test.clone(),
        test_fraction: args.test_fraction,
        resize: false,
        seed: args.seed,
        data_dir: args.data_dir.clone(),
        fetch: data::locate::at_a_terminal(),
    };
    let source = Source::of(&path.to_string_lossy()).map_err(|e| e.to_string())?;
    let loaded = load(&source, &options).map_err(|e| e.to_string())?;
    for note in &loaded.notes {
        println!("{note}");
    }
    let split = match (&args.test, loaded.train.targets.classes()) {
        (Some(_), _) => TestSplit::Official,
        (None, Some(_)) => TestSplit::Stratified(args.test_fraction),
        (None, None) => TestSplit::Random(args.test_fraction),
    };
    Ok(RunData {
        train: loaded.train,
        test: loaded.test,
        split,
        form: None,
        name: loaded.key,
        encoder: loaded.encoder,
    })
}

fn run(args: &RunArgs) -> Result<(), String> {
    let file = read_grid(&args.grid)?;
    let grid = &file.grid;
    let mut trials = match args.sample {
        Some(n) => grid.sample(n as usize, args.seed),
        None => grid.trials(),
    };
    if let Some(shard) = &args.shard {
        trials = shard.select(trials);
    }
    let data = run_data(args, &file)?;
    let (train, test, split, form) = (data.train, data.test, data.split, data.form);
    let validation_fraction = args.validation_fraction;
    if !(0.0..1.0).contains(&validation_fraction) {
        return Err(format!(
            "--validation-fraction {validation_fraction} must be in [0, 1)"
        ));
    }
    let wants_validation = args.halving.is_some() || RankBy::from(args.rank) == RankBy::Validation;
    if validation_fraction == 0.0 && wants_validation {
        return Err(
            "ranking on validation (the default, and what --halving uses) needs a validation \
             split: give --validation-fraction above 0, or --rank test"
                .into(),
        );
    }
    let (train, validation) = if validation_fraction > 0.0 {
        let parts = split_samples(
            &train,
            HoldOut::Fraction(validation_fraction),
            true,
            args.seed,
        )
        .map_err(|e| e.to_string())?;
        (
            train.subset(&parts.train),
            Some(train.subset(&parts.held_out)),
        )
    } else {
        (train, None)
    };
    let task = match train.targets {
        Targets::Classes { .. } => Task::Classification,
        Targets::Values { .. } => Task::Regression,
    };
    let selected = select_device(args.device).map_err(|e| e.to_string())?;
    let defaults = MlpSearch::new(&train, Mlp::new(task, args.seed), selected.device.clone())
        .mlp(&search::Trial::new(0, file.defaults.clone()))
        .map_err(|e| format!("{}: [defaults]: {e}", args.grid.display()))?;
    let mut search = MlpSearch::new(&train, defaults, selected.device.clone());
    search.validation = validation.as_ref();
    search.test = Some(&test);
    search.stacked = !args.one_by_one;
    search.data = DataKey {
        dataset: &data.name,
        classification: task == Task::Classification,
        split,
        split_seed: args.seed,
        subset: None,
        validation_fraction: Some(validation_fraction),
        form,
    }
    .to_value();
    search
        .check(&trials)
        .map_err(|e| format!("{}: {e}", args.grid.display()))?;
    let trials = search.keyed(&trials);

    if let Some(parent) = args.results.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    let mut results = ResultsFile::open(&args.results).map_err(|e| e.to_string())?;
    let rank = if args.halving.is_some() {
        RankBy::Validation
    } else {
        RankBy::from(args.rank)
    };
    let options = SearchOptions {
        workers: args
            .jobs
            .map_or(SearchOptions::default().workers, |j| j as usize),
        progress: !args.quiet,
        rank,
    };
    println!(
        "{}: {} trials on {} ({} train, {}{} test), {} worker(s), device {}",
        args.grid.display(),
        trials.len(),
        data.name,
        train.len(),
        validation
            .as_ref()
            .map_or(String::new(), |v| format!("{} validation, ", v.len())),
        test.len(),
        options.workers,
        selected.description
    );
    let records: Vec<TrialRecord> = match args.halving {
        Some((min_epochs, factor)) => {
            let max_epochs = trials
                .iter()
                .filter_map(|t| search.mlp(t).ok().map(|m| m.epochs))
                .max()
                .unwrap_or(min_epochs);
            let halving = Halving {
                min_epochs,
                max_epochs,
                factor,
            };
            let (rungs, last) = successive_halving(
                &trials,
                &halving,
                &mut results,
                &options,
                |t| search.group_key(t),
                |g| search.run_group(g),
            )
            .map_err(|e| e.to_string())?;
            for r in &rungs {
                println!(
                    "rung: {} trials x {} epochs, kept {} ({} run, {} from the results file, {:.1} s)",
                    r.trials, r.epochs, r.kept, r.summary.ran, r.summary.skipped, r.summary.seconds
                );
            }
            last
        }
        None => {
            let summary = search
                .run(&trials, &mut results, &options)
                .map_err(|e| e.to_string())?;
            println!(
                "{} trials run in {:.1} s, {} already in {}",
                summary.ran,
                summary.seconds,
                summary.skipped,
                args.results.display()
            );
            results.records_of(&trials)
        }
    };
    println!("{}:", rank.describe());
    let table = print_table(&records, args.top, rank);
    // The table beside the results file, as Markdown and CSV.
    for (extension, text) in [("md", table.to_markdown()), ("csv", table.to_csv())] {
        let path = args.results.with_extension(format!("top.{extension}"));
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }

    if !records.is_empty() && records.iter().all(|r| r.score(rank).is_none()) {
        return Err(format!(
            "every one of the {} trial(s) diverged or failed: there is no best trial{}",
            records.len(),
            if args.save_best.is_some() {
                ", and no model was saved"
            } else {
                ""
            }
        ));
    }
    if let Some(dir) = &args.save_best {
        let Some(record) = best(&records, rank) else {
            return Err("no finished trial to save".into());
        };
        let (mut model, history) = search.refit(record).map_err(|e| e.to_string())?;
        model.card.table = data.encoder.clone();
        model.save(dir).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("history.csv"), history.to_csv())
            .map_err(|e| format!("{}: {e}", dir.join("history.csv").display()))?;
        let test_score = model.score(&test).map_err(|e| e.to_string())?;
        println!(
            "best trial {} retrained: test score {test_score:.4} (recorded {:.4}); saved to {}",
            record.index,
            record.test_score.unwrap_or(f64::NAN),
            dir.display()
        );
    }
    Ok(())
}
