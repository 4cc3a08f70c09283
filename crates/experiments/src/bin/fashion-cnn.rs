//! Report 001's Fashion-MNIST CNN grids, Tables 6 to 10: one convolution over filters x
//! kernels x padding, two and three convolutions, with Dense(32), with increasing filters.

fn main() -> std::process::ExitCode {
    experiments::main_with(|flags| experiments::model_table::run("fashion-cnn", flags))
}
