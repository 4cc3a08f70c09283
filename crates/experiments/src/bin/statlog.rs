//! Report 001's `statlog` table: `cargo run --release -p experiments --bin statlog -- --help`.

fn main() -> std::process::ExitCode {
    experiments::main_with(|flags| experiments::mlp_table::run("statlog", flags))
}
