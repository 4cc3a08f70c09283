//! Report 004: its five Keras models on Fashion-MNIST, the report's test accuracies beside
//! this project's.

fn main() -> std::process::ExitCode {
    experiments::main_with(|flags| experiments::model_table::run("fashion-baselines", flags))
}
