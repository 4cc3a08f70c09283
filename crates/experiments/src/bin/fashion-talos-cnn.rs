//! Report 002's CNNs on Fashion-MNIST: the three baselines, 2-4 convolution layers, the
//! Talos layers x filters x dropout grid, and the final 128/256/512 CNN with its 5-fold
//! figure.

fn main() -> std::process::ExitCode {
    experiments::main_with(|flags| experiments::model_table::run("fashion-talos-cnn", flags))
}
