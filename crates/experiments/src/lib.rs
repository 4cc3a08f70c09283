//! Experiments: one binary per report table. Each reads its table as data from
//! `experiments/<binary>.toml` (grid, models, the report's published figures), runs it on
//! the chosen backend, prints the report's figure and the project's side by side, and writes
//! the tables, every trial, histories, saved models and pictures to an output folder.

pub mod bench;
pub mod book;
pub mod cli;
pub mod config;
pub mod cpu_peak;
pub mod error;
pub mod estimate;
pub mod mlp_table;
pub mod model_config;
pub mod model_table;
pub mod output;
pub mod page;
pub mod peer;
pub mod plot;

pub use cli::Flags;
pub use error::{Error, Result};

/// The allocator of every binary of this crate: mimalloc. A training step of a small model
/// allocates and frees many small tensors; with glibc's malloc, allocation and freeing were
/// about a fifth of report 001's iris grid (perf), and mimalloc runs the grid 15-20 % faster
/// (`iris_grid_bench`, alternated runs). Allocation changes no figure a model computes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs a binary's experiment with its parsed flags and turns an error into a message and
/// a failing exit code.
pub fn main_with(run: impl FnOnce(&Flags) -> Result<()>) -> std::process::ExitCode {
    use clap::Parser;
    let flags = Flags::parse();
    match run(&flags) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
