//! `datasets`: fetch the reports' datasets and show what is where.
//!
//! ```text
//! datasets fetch [NAME...] [--from DIR | --mirror-url URL] [--data-dir DIR]
//! datasets summary [NAME...] [--data-dir DIR] [--no-verify]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use data::{DataDirs, DatasetName, FetchOutcome, FetchSource, Samples, Targets, verify_dataset};

#[derive(Parser)]
#[command(about = "Fetch, verify and summarise the datasets of the reports")]
struct Cli {
    /// Data directory, looked in first (else $BURN_REPORTS_DATA, else the repository's
    /// datasets/); fetch writes here.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download (or copy from a mirror), verify by SHA-256 and unpack datasets.
    Fetch {
        /// Datasets to fetch (default: all): iris, statlog, mnist, fashion-mnist, cifar10,
        /// diabetes.
        names: Vec<String>,
        /// Copy from a local mirror laid out like ../shared/datasets instead of downloading.
        #[arg(long, conflicts_with = "mirror_url")]
        from: Option<PathBuf>,
        /// Download from an HTTP mirror laid out like ../shared/datasets.
        #[arg(long)]
        mirror_url: Option<String>,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Print one row per dataset: where it was found, sizes, shape, classes, checksum.
    Summary {
        /// Datasets to show (default: all).
        names: Vec<String>,
        /// Skip the checksum verification.
        #[arg(long)]
        no_verify: bool,
    },
}

fn parse_names(names: &[String]) -> Result<Vec<DatasetName>, data::DataError> {
    if names.is_empty() {
        return Ok(DatasetName::ALL.to_vec());
    }
    names.iter().map(|n| DatasetName::parse(n)).collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dirs = DataDirs::new(cli.data_dir.as_deref());
    let result = match cli.command {
        Command::Fetch {
            names,
            from,
            mirror_url,
            quiet,
        } => {
            let source = match (from, mirror_url) {
                (Some(dir), _) => FetchSource::MirrorDir(dir),
                (None, Some(url)) => FetchSource::MirrorUrl(url),
                (None, None) => FetchSource::Official,
            };
            parse_names(&names).and_then(|names| fetch(&dirs, &names, &source, !quiet))
        }
        Command::Summary { names, no_verify } => {
            parse_names(&names).map(|names| summary(&dirs, &names, !no_verify))
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Fetches each dataset, going on after a failure; true when all succeeded.
fn fetch(
    dirs: &DataDirs,
    names: &[DatasetName],
    source: &FetchSource,
    progress: bool,
) -> Result<bool, data::DataError> {
    let target = dirs.fetch_target();
    let from = match source {
        FetchSource::Official => "official addresses".to_string(),
        FetchSource::MirrorDir(dir) => dir.display().to_string(),
        FetchSource::MirrorUrl(url) => url.clone(),
    };
    println!("fetching into {} from {from}", target.display());
    let mut ok = true;
    for &name in names {
        let start = Instant::now();
        match data::fetch_dataset(name, target, source, progress) {
            Ok(FetchOutcome::AlreadyPresent) => println!("{name:>14}: already present, verified"),
            Ok(FetchOutcome::Fetched(n)) => println!(
                "{name:>14}: fetched and verified {n} file(s) in {:.1} s",
                start.elapsed().as_secs_f64()
            ),
            Err(e) => {
                ok = false;
                eprintln!("{name:>14}: FAILED: {e}");
            }
        }
    }
    Ok(ok)
}

fn describe_targets(train: &Samples) -> (String, String) {
    match &train.targets {
        Targets::Classes { classes, .. } => {
            let counts = train.class_counts();
            let (min, max) = (
                counts.iter().min().copied().unwrap_or(0),
                counts.iter().max().copied().unwrap_or(0),
            );
            let balance = if min == max {
                format!("{min} each")
            } else {
                format!("{min}-{max} per class")
            };
            let names = if classes.len() <= 6 {
                format!("{} ({})", classes.len(), classes.0.join(","))
            } else {
                classes.len().to_string()
            };
            (names, balance)
        }
        Targets::Values { values, .. } => {
            let min = values.iter().copied().fold(f32::INFINITY, f32::min);
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            (format!("target {min}..{max}"), "regression".to_string())
        }
    }
}

/// Prints the summary table; true when every dataset was found, loaded and verified.
fn summary(dirs: &DataDirs, names: &[DatasetName], verify: bool) -> bool {
    println!(
        "| dataset | found in | train | test | input shape | classes / target | balance (train) | checksum |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut ok = true;
    for &name in names {
        let (folder, origin) = match dirs.find(name) {
            Ok(found) => found,
            Err(e) => {
                ok = false;
                println!("| {name} | missing | | | | | | |");
                eprintln!("{e}");
                continue;
            }
        };
        let loaded = name.load_from(&folder);
        let splits = match loaded {
            Ok(s) => s,
            Err(e) => {
                ok = false;
                println!(
                    "| {name} | {} ({origin}) | error | | | | | |",
                    folder.display()
                );
                eprintln!("{name}: {e}");
                continue;
            }
        };
        let checksum = if verify {
            match verify_dataset(name, &folder) {
                Ok(n) => format!("verified ({n} files)"),
                Err(e) => {
                    ok = false;
                    format!("FAILED: {e}")
                }
            }
        } else {
            "not checked".to_string()
        };
        let (classes, balance) = describe_targets(&splits.train);
        let test = splits
            .test
            .as_ref()
            .map_or("none (no official split)".to_string(), |t| {
                t.len().to_string()
            });
        println!(
            "| {name} | {} ({origin}) | {} | {test} | {:?} | {classes} | {balance} | {checksum} |",
            folder.display(),
            splits.train.len(),
            splits.train.shape,
        );
    }
    ok
}
