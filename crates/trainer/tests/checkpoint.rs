//! Checkpoints: a training stopped after some epochs and continued from its checkpoint
//! gives the same history, epoch for epoch and bit for bit (times aside), as one that ran
//! straight through: weights, optimizer moments, generators, sample order, callbacks' counters
//! and the learning rate all come back. Run on flex (whose fused Adam updates in place).
#![cfg(feature = "flex")]

mod common;

use std::time::Duration;

use burn::tensor::Device;
use data::Samples;
use models::{ModelSpec, Network, Shape};
use trainer::{
    Checkpointing, EarlyStopping, EpochRecord, FitConfig, Loss, Monitor, OptimizerSpec,
    ReduceLrOnPlateau, fit,
};

/// Noisy 6x6 pictures of three shapes, `seed` choosing the noise.
fn pictures(n: usize, seed: u64) -> Samples {
    common::pictures(n, 0x2545_f491_4f6c_dd1d ^ seed, |s| {
        (s % 1000) as f32 / 500.0 - 1.0
    })
}

/// The history without its times.
fn figures(history: &[EpochRecord]) -> Vec<[f64; 5]> {
    history
        .iter()
        .map(|e| {
            [
                e.loss,
                e.score,
                e.val_loss.unwrap(),
                e.val_score.unwrap(),
                e.lr,
            ]
        })
        .collect()
}

fn config(epochs: usize, optimizer: OptimizerSpec) -> FitConfig {
    let mut config = FitConfig::new(epochs, 16, optimizer, Loss::CrossEntropy);
    config.seed = 9;
    config.early_stopping = Some(EarlyStopping {
        monitor: Monitor::ValLoss,
        patience: 100,
        min_delta: 0.0,
        restore_best_weights: true,
    });
    config.reduce_lr = Some(ReduceLrOnPlateau {
        monitor: Monitor::ValScore,
        factor: 0.5,
        patience: 1,
        cooldown: 1,
        min_lr: 1e-5,
        min_delta: 0.0,
    });
    config
}

/// Trains `layers` for 8 epochs straight, then 3 epochs with a checkpoint and 8 more from
/// it, and compares.
fn resumed_equals_straight(layers: &str, optimizer: OptimizerSpec) {
    let device = Device::flex();
    let spec = ModelSpec::parse("ckpt", Shape::image(1, [6, 6]), layers).unwrap();
    let (train, validation) = (pictures(90, 1), pictures(30, 2));
    let network = || Network::new(&spec, 4, &device).unwrap();

    let straight = fit(
        network(),
        &train,
        Some(&validation),
        &config(8, optimizer.clone()),
        &device,
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ckpt = Checkpointing {
        path: dir.path().join("run.ckpt"),
        interval: Duration::ZERO,
        identity: "the same training".into(),
        label: "a CNN, 8 epochs".into(),
    };
    let mut first = config(3, optimizer.clone());
    first.checkpoint = Some(ckpt.clone());
    let part = fit(network(), &train, Some(&validation), &first, &device).unwrap();
    assert_eq!(part.history.epochs.len(), 3);
    assert!(ckpt.path.exists());

    let mut rest = config(8, optimizer);
    rest.checkpoint = Some(ckpt.clone());
    // A fresh network with other initial weights: everything must come from the file.
    let other = Network::new(&spec, 77, &device).unwrap();
    let resumed = fit(other, &train, Some(&validation), &rest, &device).unwrap();

    assert_eq!(
        figures(&resumed.history.epochs),
        figures(&straight.history.epochs),
        "{layers}"
    );
    assert_eq!(resumed.history.outcome, straight.history.outcome);
    let lrs: Vec<f64> = straight.history.epochs.iter().map(|e| e.lr).collect();
    assert!(
        lrs.windows(2).any(|w| w[1] < w[0]),
        "lr never reduced: {lrs:?}"
    );
    // The network returned is the best epoch's, restored from the checkpoint's copy where
    // the best epoch came before the interruption.
    let eval = |n| trainer::evaluate(n, &validation, Loss::CrossEntropy, &device);
    assert_eq!(eval(&resumed.network), eval(&straight.network));

    // Another training's checkpoint is not taken: it starts over (and says so).
    let mut foreign = config(8, OptimizerSpec::adam(0.01));
    foreign.checkpoint = Some(Checkpointing {
        identity: "another training".into(),
        ..ckpt
    });
    let fresh = fit(network(), &train, Some(&validation), &foreign, &device).unwrap();
    assert_eq!(fresh.history.epochs.len(), 8);
}

#[test]
fn a_cnn_with_batch_norm_and_dropout_continues_exactly_with_adam() {
    resumed_equals_straight(
        "conv(4, 3); batchnorm; relu; maxpool(2); flatten; dropout(0.3); dense(3, softmax)",
        OptimizerSpec::adam(0.01),
    );
}

#[test]
fn an_mlp_continues_exactly_with_nadam_and_sgd_momentum() {
    let layers = "flatten; dense(12, relu); dropout(0.2); dense(3, softmax)";
    resumed_equals_straight(layers, OptimizerSpec::nadam(0.005));
    resumed_equals_straight(layers, OptimizerSpec::sgd(0.05, 0.9, true));
}
