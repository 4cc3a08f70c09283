//! Report 001's `iris` table: `cargo run --release -p experiments --bin iris -- --help`.

fn main() -> std::process::ExitCode {
    experiments::main_with(|flags| experiments::mlp_table::run("iris", flags))
}
