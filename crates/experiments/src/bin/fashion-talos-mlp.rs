//! Report 002's MLPs on Fashion-MNIST: the baseline, five capacity models, the Talos
//! architecture x dropout grid, the optimizer x batch-size grid and the final `[768]` MLP.

fn main() -> std::process::ExitCode {
    experiments::main_with(|flags| experiments::model_table::run("fashion-talos-mlp", flags))
}
