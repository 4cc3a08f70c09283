//! MLP regressors on the diabetes data beside scikit-learn's: `cargo run --release -p experiments --bin diabetes -- --help`.

fn main() -> std::process::ExitCode {
    experiments::main_with(|flags| experiments::mlp_table::run("diabetes", flags))
}
