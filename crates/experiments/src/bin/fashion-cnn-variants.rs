//! Report 003: its base CNN and 21 variants changing one hyperparameter each (filters,
//! filter size, stride, activation, dropout, pool size, pool type including min pooling,
//! number of blocks), with the base model's per-class classification report.

fn main() -> std::process::ExitCode {
    experiments::main_with(|flags| experiments::model_table::run("fashion-cnn-variants", flags))
}
