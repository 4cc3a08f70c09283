//! `fit` on small synthetic problems: it learns, it is reproducible, it stops early with the
//! best weights, and it reports divergence instead of panicking.

use burn::tensor::Device;
use data::{ClassNames, Samples, Targets};
use models::{ModelSpec, Network, Shape};
use trainer::{EarlyStopping, FitConfig, Loss, Monitor, OptimizerSpec, Outcome, evaluate, fit};

/// Two Gaussian-ish blobs, deterministic, classes 0 and 1.
fn blobs(n: usize, flip: bool) -> Samples {
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let class = i % 2;
        let jitter = ((i * 7919) % 100) as f32 / 100.0 - 0.5;
        let centre = if class == 0 { -1.0 } else { 1.0 };
        features.push(centre + jitter);
        features.push(centre - jitter * 0.5);
        labels.push(if flip { 1 - class } else { class });
    }
    Samples::new(
        features,
        vec![2],
        vec![],
        Targets::Classes {
            labels,
            classes: ClassNames::numbered(2),
        },
    )
    .unwrap()
}

/// One feature `x` and the target `f(x)`.
fn line(x: Vec<f32>, f: impl Fn(f32) -> f32) -> Samples {
    let y = x.iter().map(|&v| f(v)).collect();
    Samples::new(
        x,
        vec![1],
        vec![],
        Targets::Values {
            values: y,
            width: 1,
            names: vec!["y".into()],
        },
    )
    .unwrap()
}

fn classifier(seed: u64) -> Network {
    let spec = ModelSpec::parse("m", Shape::Flat(2), "dense(8, relu); dense(2, softmax)").unwrap();
    Network::new(&spec, seed, &Device::flex()).unwrap()
}

#[test]
fn learns_a_separable_problem() {
    let train = blobs(200, false);
    let config = FitConfig::new(20, 16, OptimizerSpec::adam(0.01), Loss::CrossEntropy);
    let result = fit(
        classifier(1),
        &train,
        Some(&train),
        &config,
        &Device::flex(),
    )
    .unwrap();
    assert_eq!(result.history.outcome, Outcome::Finished);
    assert_eq!(result.history.epochs.len(), 20);
    let last = result.history.epochs.last().unwrap();
    assert!(last.val_score.unwrap() > 0.99, "{last:?}");
    assert!(last.loss < result.history.epochs[0].loss);
    let eval = evaluate(&result.network, &train, Loss::CrossEntropy, &Device::flex());
    assert!((eval.score - last.val_score.unwrap()).abs() < 1e-9);
}

#[test]
fn same_seed_same_history() {
    let train = blobs(100, false);
    let mut config = FitConfig::new(
        3,
        8,
        OptimizerSpec::sgd(0.1, 0.9, false),
        Loss::CrossEntropy,
    );
    config.seed = 5;
    let a = fit(classifier(2), &train, None, &config, &Device::flex()).unwrap();
    let b = fit(classifier(2), &train, None, &config, &Device::flex()).unwrap();
    let losses = |h: &trainer::History| h.epochs.iter().map(|e| e.loss).collect::<Vec<_>>();
    assert_eq!(losses(&a.history), losses(&b.history));
    config.seed = 6;
    let c = fit(classifier(2), &train, None, &config, &Device::flex()).unwrap();
    assert_ne!(losses(&a.history), losses(&c.history));
}

#[test]
fn early_stopping_restores_the_best_weights() {
    let train = blobs(200, false);
    let contrary = blobs(50, true);
    let mut config = FitConfig::new(50, 16, OptimizerSpec::adam(0.01), Loss::CrossEntropy);
    config.early_stopping = Some(EarlyStopping {
        monitor: Monitor::ValLoss,
        patience: 3,
        min_delta: 0.0,
        restore_best_weights: true,
    });
    let result = fit(
        classifier(3),
        &train,
        Some(&contrary),
        &config,
        &Device::flex(),
    )
    .unwrap();
    let Outcome::EarlyStopped { best_epoch } = result.history.outcome else {
        panic!("expected early stopping, got {:?}", result.history.outcome);
    };
    assert!(result.history.epochs.len() < 50);
    let best = result.history.epochs[best_epoch - 1].val_loss.unwrap();
    let min = result
        .history
        .epochs
        .iter()
        .filter_map(|e| e.val_loss)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(best, min);
    let restored = evaluate(
        &result.network,
        &contrary,
        Loss::CrossEntropy,
        &Device::flex(),
    );
    assert!(
        (restored.loss - best).abs() < 1e-5,
        "{} vs {best}",
        restored.loss
    );
}

#[test]
fn divergence_is_an_outcome_not_a_panic() {
    let train = line((0..64).map(|i| i as f32).collect(), |x| x * 1000.0);
    let spec = ModelSpec::parse("r", Shape::Flat(1), "dense(4, relu); dense(1)").unwrap();
    let network = Network::new(&spec, 0, &Device::flex()).unwrap();
    let config = FitConfig::new(20, 8, OptimizerSpec::sgd(10.0, 0.0, false), Loss::Mse);
    let result = fit(network, &train, None, &config, &Device::flex()).unwrap();
    assert!(
        matches!(result.history.outcome, Outcome::Diverged { .. }),
        "{:?}",
        result.history
    );
    assert!(!result.history.epochs.is_empty());
}

#[test]
fn bad_configuration_and_mismatched_data_are_errors() {
    let train = blobs(10, false);
    let config = FitConfig::new(0, 8, OptimizerSpec::adam(0.01), Loss::CrossEntropy);
    let err = fit(classifier(0), &train, None, &config, &Device::flex()).unwrap_err();
    assert!(err.to_string().contains("epochs"), "{err}");
    let config = FitConfig::new(1, 8, OptimizerSpec::adam(0.01), Loss::Mse);
    let err = fit(classifier(0), &train, None, &config, &Device::flex()).unwrap_err();
    assert!(
        err.to_string().contains("need the cross-entropy loss"),
        "{err}"
    );
    let mut config = FitConfig::new(1, 8, OptimizerSpec::adam(0.01), Loss::CrossEntropy);
    config.early_stopping = Some(EarlyStopping {
        monitor: Monitor::ValScore,
        patience: 1,
        min_delta: 0.0,
        restore_best_weights: false,
    });
    let err = fit(classifier(0), &train, None, &config, &Device::flex()).unwrap_err();
    assert!(err.to_string().contains("no validation set"), "{err}");
}

#[test]
fn mean_absolute_error_regression_learns() {
    let train = line((0..64).map(|i| i as f32 / 32.0 - 1.0).collect(), |x| {
        2.0 * x + 0.5
    });
    let spec = ModelSpec::parse("r", Shape::Flat(1), "dense(1)").unwrap();
    let network = Network::new(&spec, 0, &Device::flex()).unwrap();
    let config = FitConfig::new(40, 8, OptimizerSpec::adam(0.05), Loss::Mae);
    let result = fit(network, &train, Some(&train), &config, &Device::flex()).unwrap();
    let first = result.history.epochs[0].loss;
    let last = result.history.epochs.last().unwrap();
    assert!(last.loss < first / 4.0, "{first} -> {}", last.loss);
    assert!(last.val_score.unwrap() > 0.95, "{last:?}");
}
