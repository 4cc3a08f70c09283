//! Experiments: one binary per report table. Each reads its table as data from
//! `experiments/<binary>.toml` (grid, models, the report's published figures), runs it on
//! the chosen backend, prints the report's figure and the project's side by side, and writes
//! the tables, every trial, histories, saved models and pictures to an output folder.

pub mod allocator;
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

/// Runs a binary's experiment with its parsed flags and turns an error into a message and
/// a failing exit code.
pub fn main_with(run: impl FnOnce(&Flags) -> Result<()>) -> std::process::ExitCode {
    use clap::Parser;
    allocator::keep_freed_memory();
    let flags = Flags::parse();
    match run(&flags) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
