//! Benchmark: report 001's iris grid (540 MLPs, 300 epochs each, `experiments/iris.toml`)
//! against scikit-learn's 172 s on this 2-core machine (MLPClassifier with joblib on both
//! cores, measured once, see the README).
//!
//! ```text
//! cargo run --release -p search --example iris_grid_bench -- [--jobs N] [--one-by-one] [--limit N]
//! ```
//!
//! Prints the wall time, trials per second, the ratio to scikit-learn, and the five best
//! trials. `--one-by-one` trains every trial alone (no stacking), for comparison.

use std::process::ExitCode;

use burn::tensor::Device;
use data::{DataDirs, DatasetName, HoldOut, stratified_split};
use search::{Grid, MLP_COLUMNS, MlpSearch, RankBy, ResultsFile, SearchOptions, Table, best};
use trainer::{Mlp, MlpTask};

/// scikit-learn's time for the same grid on this machine (seconds).
const SKLEARN_SECONDS: f64 = 172.0;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut stacked = true;
    let mut limit = usize::MAX;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--jobs" => jobs = args.next().ok_or("--jobs needs a number")?.parse()?,
            "--limit" => limit = args.next().ok_or("--limit needs a number")?.parse()?,
            "--one-by-one" => stacked = false,
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if jobs == 0 {
        return Err("--jobs must be at least 1".into());
    }

    let config_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../experiments/iris.toml");
    let config: toml::Table = toml::from_str(&std::fs::read_to_string(config_path)?)?;
    let grid = Grid::from_value(serde_json::to_value(
        config
            .get("grid")
            .ok_or("experiments/iris.toml has no [grid]")?,
    )?)?;
    let mut trials = grid.trials();
    trials.truncate(limit);

    let all = DataDirs::new(None).load(DatasetName::Iris)?.train;
    let split = stratified_split(
        all.targets.labels().unwrap_or(&[]),
        HoldOut::Fraction(0.2),
        0,
    )?;
    let (train, test) = (all.subset(&split.train), all.subset(&split.held_out));
    let defaults = Mlp::new(MlpTask::Classification, 0);
    let mut search = MlpSearch::new(&train, defaults, Device::flex());
    search.test = Some(&test);
    search.stacked = stacked;

    let dir = tempfile::tempdir()?;
    let mut results = ResultsFile::open(&dir.path().join("iris.jsonl"))?;
    let options = SearchOptions {
        workers: jobs,
        progress: true,
        rank: RankBy::Test,
    };
    println!(
        "report 001 iris grid: {} trials, {} train / {} test, {jobs} worker(s), {}",
        trials.len(),
        train.len(),
        test.len(),
        if stacked { "stacked" } else { "one by one" }
    );
    let summary = search.run(&trials, &mut results, &options)?;
    let failed = results
        .records
        .iter()
        .filter(|r| matches!(r.status, search::Status::Failed { .. }))
        .count();
    let diverged = results
        .records
        .iter()
        .filter(|r| r.status == search::Status::Diverged)
        .count();
    println!(
        "{} trials in {:.1} s ({:.1} trials/s); {failed} failed, {diverged} diverged",
        summary.ran,
        summary.seconds,
        summary.ran as f64 / summary.seconds
    );
    if trials.len() == grid.len() {
        println!(
            "scikit-learn: {SKLEARN_SECONDS:.0} s for the same grid; this run took {:.3} of it \
             ({:.1}x faster; target: at most 0.25)",
            summary.seconds / SKLEARN_SECONDS,
            SKLEARN_SECONDS / summary.seconds
        );
    }
    let top = Table::top(
        &results.records,
        5,
        &[
            MLP_COLUMNS,
            &["test_score", "train_score", "train_loss", "test_loss"],
        ]
        .concat(),
        RankBy::Test,
    );
    print!("{}", top.to_markdown());
    if let Some(b) = best(&results.records, RankBy::Test) {
        println!(
            "best test accuracy {:.4} (report Table 1: 1.00)",
            b.test_score.unwrap_or(f64::NAN)
        );
    }
    Ok(())
}
