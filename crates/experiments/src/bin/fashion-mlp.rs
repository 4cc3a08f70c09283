//! Report 001's `fashion-mlp` table: `cargo run --release -p experiments --bin fashion-mlp -- --help`.

fn main() -> std::process::ExitCode {
    experiments::main_with(|flags| experiments::mlp_table::run("fashion-mlp", flags))
}
