//! Training and inference throughput of the reports' models on every enabled backend:
//! `cargo run --release -p experiments --bin bench [-- --pytorch out/bench/pytorch.jsonl]`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    experiments::allocator::keep_freed_memory();
    let flags = experiments::bench::BenchFlags::parse();
    match experiments::bench::run(&flags) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
