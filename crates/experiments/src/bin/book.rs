//! `book`: writes `experiments/results/BOOK.md`, every report row with the report's figure,
//! ours from the committed runs, and whether ours is current (`--check`: fails instead when
//! the committed book differs). No training and no data.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "book",
    about = "The results book: every report row, the report's figure and ours"
)]
struct Args {
    /// Folder of the study files.
    #[arg(long, default_value = "experiments")]
    studies: PathBuf,
    /// Folder of the committed runs (one sub-folder per study).
    #[arg(long, default_value = "experiments/results")]
    results: PathBuf,
    /// Compare with the committed BOOK.md instead of writing it; differing fails.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let book = match experiments::book::book(&args.studies, &args.results) {
        Ok(book) => book,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = args.results.join("BOOK.md");
    let first = book.lines().next().unwrap_or_default().to_string();
    if args.check {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != book {
            eprintln!(
                "error: {} is not what the committed results give ({first}); regenerate it with \
                 `cargo run --release -p experiments --bin book`",
                path.display()
            );
            return ExitCode::FAILURE;
        }
        println!("{} matches the committed results: {first}", path.display());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = std::fs::write(&path, &book) {
        eprintln!("error: {}: {e}", path.display());
        return ExitCode::FAILURE;
    }
    println!("{first}\nwritten to {}", path.display());
    ExitCode::SUCCESS
}
