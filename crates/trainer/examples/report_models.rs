//! Trains single models of the reports on the real data and prints their test figures.
//!
//! ```text
//! cargo run --release -p trainer --example report_models -- iris
//! cargo run --release -p trainer --example report_models -- diabetes
//! cargo run --release -p trainer --example report_models -- fashion-cnn [EPOCHS]
//! cargo run --release -p trainer --example report_models -- fashion-mlp [EPOCHS]
//! ```
//!
//! A third argument sets the seed of the split, the weights, the shuffle and dropout.
//! ```text
//! ```

use std::process::ExitCode;
use std::time::Instant;

use data::{DataDirs, DatasetName, HoldOut, shuffle_split, stratified_split};
use models::{Activation, DeviceChoice, ModelSpec, Network, Shape, select_device};
use trainer::{
    EarlyStopping, FitConfig, InputScaling, Loss, Mlp, Monitor, OptimizerSpec, Preprocessing,
    ReduceLrOnPlateau, Task, Verbosity, train_model,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("iris");
    let epochs: Option<usize> = args.get(1).and_then(|e| e.parse().ok());
    let seed: u64 = args.get(2).and_then(|e| e.parse().ok()).unwrap_or(0);
    match run(which, epochs, seed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(which: &str, epochs: Option<usize>, seed: u64) -> Result<(), Box<dyn std::error::Error>> {
    let selected = select_device(DeviceChoice::Auto)?;
    println!("device: {}", selected.description);
    let device = selected.device;
    let dirs = DataDirs::new(None);
    let start = Instant::now();
    match which {
        "iris" => {
            let all = dirs.load(DatasetName::Iris)?.train;
            let split = stratified_split(
                all.targets.labels().unwrap_or(&[]),
                HoldOut::Fraction(0.2),
                seed,
            )?;
            let (train, test) = (all.subset(&split.train), all.subset(&split.held_out));
            let mlp = Mlp {
                hidden_layers: vec![10, 10, 5],
                activation: Activation::Relu,
                epochs: epochs.unwrap_or(300),
                learning_rate: 0.01,
                init_scale: 0.3,
                l2: 0.01,
                momentum: 0.8,
                batch_size: 16,
                verbose: false,
                task: Task::Classification,
                seed,
            };
            let (model, history) = mlp.fit(&train, None, &device)?;
            println!(
                "iris MLP(10, 10, 5) relu: train accuracy {:.4}, test accuracy {:.4} ({} epochs)",
                model.score(&train)?,
                model.score(&test)?,
                history.epochs.len()
            );
        }
        "diabetes" => {
            let all = dirs.load(DatasetName::Diabetes)?.train;
            let split = shuffle_split(all.len(), HoldOut::Fraction(0.2), seed)?;
            let (train, test) = (all.subset(&split.train), all.subset(&split.held_out));
            let mlp = Mlp {
                hidden_layers: vec![32, 16],
                activation: Activation::Relu,
                epochs: epochs.unwrap_or(200),
                learning_rate: 0.005,
                init_scale: 0.1,
                l2: 0.01,
                momentum: 0.9,
                batch_size: 32,
                verbose: false,
                task: Task::Regression,
                seed,
            };
            let (model, _) = mlp.fit(&train, None, &device)?;
            println!(
                "diabetes MLP(32, 16) regression: train R2 {:.4}, test R2 {:.4}, test MSE {:.1}",
                model.score(&train)?,
                model.score(&test)?,
                model.mse(&test)?
            );
        }
        "fashion-cnn" | "fashion-mlp" => {
            let splits = dirs.load(DatasetName::FashionMnist)?;
            let test = splits.test.ok_or("no test split")?;
            let cnn = which == "fashion-cnn";
            let (text, hold_out, batch) = if cnn {
                (
                    "conv(16, 3x3, same, relu); maxpool(2); dropout(0.2);
                     conv(32, 3x3, same, relu); maxpool(2); dropout(0.2);
                     flatten; dense(256, relu); dropout(0.4); dense(10, softmax)",
                    6000,
                    128,
                )
            } else {
                (
                    "flatten; dense(768, relu); dropout(0.3); dense(10, softmax)",
                    12000,
                    256,
                )
            };
            let labels = splits.train.targets.labels().unwrap_or(&[]).to_vec();
            let split = stratified_split(&labels, HoldOut::Count(hold_out), seed)?;
            let (train, val) = (
                splits.train.subset(&split.train),
                splits.train.subset(&split.held_out),
            );
            let input = Shape::from_dims(&train.shape)?;
            let spec = ModelSpec::parse(which, input, text)?;
            print!("{}", spec.summary()?);
            let network = Network::new(&spec, seed, &device)?;
            let mut config = FitConfig::new(
                epochs.unwrap_or(100),
                batch,
                OptimizerSpec::adam(0.001),
                Loss::CrossEntropy,
            );
            config.verbose = Verbosity::Epoch;
            config.early_stopping = Some(EarlyStopping {
                monitor: if cnn {
                    Monitor::ValScore
                } else {
                    Monitor::ValLoss
                },
                patience: if cnn { 10 } else { 20 },
                min_delta: 0.0,
                restore_best_weights: true,
            });
            if !cnn {
                // Report 002 trains with ReduceLROnPlateau (patience 10, factor 0.1, cooldown 2).
                config.reduce_lr = Some(ReduceLrOnPlateau {
                    monitor: Monitor::ValLoss,
                    factor: 0.1,
                    patience: 10,
                    cooldown: 2,
                    min_lr: 0.0,
                    min_delta: 1e-4,
                });
            }
            let preprocessing = Preprocessing {
                inputs: InputScaling::Pixels,
                scale_targets: false,
            };
            let (model, history) =
                train_model(network, &train, Some(&val), preprocessing, &config, &device)?;
            let per_epoch =
                history.epochs.iter().map(|e| e.seconds).sum::<f64>() / history.epochs.len() as f64;
            println!(
                "{which}: train accuracy {:.4}, test accuracy {:.4}, {} epochs ({:?}), {per_epoch:.1} s/epoch",
                model.score(&train)?,
                model.score(&test)?,
                history.epochs.len(),
                history.outcome
            );
        }
        other => {
            return Err(format!(
                "unknown model {other:?}: iris, diabetes, fashion-cnn, fashion-mlp"
            )
            .into());
        }
    }
    println!("took {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
