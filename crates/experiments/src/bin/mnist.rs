//! Report 001's `mnist` table: `cargo run --release -p experiments --bin mnist -- --help`.

fn main() -> std::process::ExitCode {
    experiments::main_with(|flags| experiments::mlp_table::run("mnist", flags))
}
