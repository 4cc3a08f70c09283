//! Report 001's CIFAR-10 study: the architecture series (no normalisation, input batch
//! normalisation, three pooling layers, dropout), Adam vs RMSprop vs SGD, and Table 5
//! (Adam's learning rate x 10 and 50 epochs).

fn main() -> std::process::ExitCode {
    experiments::main_with(|flags| experiments::model_table::run("cifar10", flags))
}
