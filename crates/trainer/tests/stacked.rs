//! Stacked training is k independent fits computed together: every member ends where
//! `Mlp::fit` takes it alone, a diverging member does not disturb the others, and members
//! that cannot share a model are refused; with either engine (flex's loops, Burn's
//! operations).

use burn::tensor::Device;
use data::{DataDirs, DatasetName, HoldOut, Samples, Targets, stratified_split};
use models::Activation;
use trainer::stacked::StackedEngine;
use trainer::{History, Mlp, Outcome, Predictions, Task, TrainedModel};

const ENGINES: [StackedEngine; 2] = [StackedEngine::Fastest, StackedEngine::BurnOps];

fn iris() -> (Samples, Samples) {
    let all = DataDirs::new(None)
        .load(DatasetName::Iris)
        .expect("iris is committed under datasets/")
        .train;
    let split = stratified_split(all.targets.labels().unwrap(), HoldOut::Fraction(0.2), 0).unwrap();
    (all.subset(&split.train), all.subset(&split.held_out))
}

fn member(learning_rate: f64, momentum: f64, l2: f64, init_scale: f32, seed: u64) -> Mlp {
    Mlp {
        hidden_layers: vec![10, 5],
        activation: Activation::Tanh,
        epochs: 15,
        learning_rate,
        init_scale,
        l2,
        momentum,
        batch_size: 16,
        verbose: false,
        task: Task::Classification,
        seed,
    }
}

fn outputs(model: &TrainedModel, data: &Samples) -> Vec<f32> {
    match model.predict(data).unwrap() {
        Predictions::Classes { probabilities, .. } => probabilities,
        Predictions::Values(v) => v,
    }
}

fn assert_close(a: &[f32], b: &[f32], tolerance: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tolerance * (1.0 + y.abs()),
            "{what}[{i}]: stacked {x} vs alone {y}"
        );
    }
}

fn assert_same_history(stacked: &History, alone: &History, what: &str) {
    assert_eq!(stacked.outcome, alone.outcome, "{what}: outcome");
    assert_eq!(stacked.epochs.len(), alone.epochs.len(), "{what}: epochs");
    for (s, a) in stacked.epochs.iter().zip(&alone.epochs) {
        assert!(
            (s.loss - a.loss).abs() < 1e-4 * (1.0 + a.loss.abs()),
            "{what} epoch {}: loss {} vs {}",
            s.epoch,
            s.loss,
            a.loss
        );
        assert!(
            (s.score - a.score).abs() < 0.02,
            "{what} epoch {}: score {} vs {}",
            s.epoch,
            s.score,
            a.score
        );
    }
}

#[test]
fn stacked_members_train_as_they_would_alone() {
    let device = Device::flex();
    let (train, test) = iris();
    let members = [
        member(0.01, 0.8, 0.01, 0.3, 0),
        member(0.001, 0.0, 0.0, 0.3, 0),
        member(0.05, 0.5, 0.001, 0.5, 7),
        member(0.01, 0.9, 0.0, 0.1, 3),
    ];
    for engine in ENGINES {
        let stacked =
            Mlp::fit_stacked_with(engine, &members, &train, Some(&test), &device).unwrap();
        assert_eq!(stacked.len(), members.len());
        for (i, (m, (model, history))) in members.iter().zip(&stacked).enumerate() {
            let (alone, alone_history) = m.fit(&train, Some(&test), &device).unwrap();
            let what = format!("{engine:?} member {i}");
            assert_same_history(history, &alone_history, &what);
            let (sv, av) = (
                history.epochs.last().unwrap().val_loss.unwrap(),
                alone_history.epochs.last().unwrap().val_loss.unwrap(),
            );
            assert!((sv - av).abs() < 1e-4, "{what}: val loss {sv} vs {av}");
            assert_close(&outputs(model, &test), &outputs(&alone, &test), 1e-3, &what);
            assert_eq!(model.card, alone.card, "{what}: card");
        }
        // The members really differ: not one model copied k times.
        assert_ne!(stacked[0].1.epochs[14].loss, stacked[1].1.epochs[14].loss);
    }
}

#[test]
fn on_flex_the_fastest_engine_is_not_burns_operations() {
    // The two sum in different orders, so some loss differs in its last bits: the loops
    // really ran.
    let device = Device::flex();
    let (train, _) = iris();
    let members = [
        member(0.01, 0.8, 0.01, 0.3, 0),
        member(0.05, 0.5, 0.0, 0.5, 7),
    ];
    let losses = |engine| -> Vec<f64> {
        Mlp::fit_stacked_with(engine, &members, &train, None, &device)
            .unwrap()
            .iter()
            .flat_map(|(_, h)| h.epochs.iter().map(|e| e.loss))
            .collect()
    };
    assert_ne!(
        losses(StackedEngine::Fastest),
        losses(StackedEngine::BurnOps)
    );
}

#[test]
fn stacked_regressors_match_their_solo_fits() {
    let device = Device::flex();
    let x: Vec<f32> = (0..90).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
    let features: Vec<f32> = x.iter().flat_map(|&v| [v, v * v]).collect();
    let y: Vec<f32> = x.iter().map(|v| 100.0 + 20.0 * v - 4.0 * v * v).collect();
    let data = Samples::new(
        features,
        vec![2],
        vec![],
        Targets::Values {
            values: y,
            width: 1,
            names: vec!["y".into()],
        },
    )
    .unwrap();
    let regressor = |eta, seed| Mlp {
        task: Task::Regression,
        activation: Activation::Relu,
        batch_size: 20,
        epochs: 60,
        ..member(eta, 0.5, 0.001, 0.3, seed)
    };
    let members = [regressor(0.01, 1), regressor(0.02, 2)];
    for engine in ENGINES {
        let stacked = Mlp::fit_stacked_with(engine, &members, &data, None, &device).unwrap();
        for (i, (m, (model, history))) in members.iter().zip(&stacked).enumerate() {
            let (alone, alone_history) = m.fit(&data, None, &device).unwrap();
            let what = format!("{engine:?} regressor {i}");
            assert_same_history(history, &alone_history, &what);
            assert_close(&outputs(model, &data), &outputs(&alone, &data), 1e-3, &what);
            assert!(model.score(&data).unwrap() > 0.5, "{what} learned");
        }
    }
}

#[test]
fn a_diverging_member_is_recorded_and_the_others_go_on() {
    let device = Device::flex();
    let (train, _) = iris();
    let mut wild = member(1e6, 0.9, 0.0, 50.0, 0);
    wild.activation = Activation::Relu;
    let mut calm = member(0.01, 0.8, 0.01, 0.3, 0);
    calm.activation = Activation::Relu;
    let (alone, alone_history) = calm.fit(&train, None, &device).unwrap();
    for engine in ENGINES {
        let members = [wild.clone(), calm.clone()];
        let stacked = Mlp::fit_stacked_with(engine, &members, &train, None, &device).unwrap();
        let Outcome::Diverged { epoch } = stacked[0].1.outcome else {
            panic!(
                "{engine:?}: expected divergence, got {:?}",
                stacked[0].1.outcome
            );
        };
        assert_eq!(stacked[0].1.epochs.len(), epoch);
        let what = format!("{engine:?} calm member");
        assert_same_history(&stacked[1].1, &alone_history, &what);
        assert_close(
            &outputs(&stacked[1].0, &train),
            &outputs(&alone, &train),
            1e-3,
            &what,
        );
    }
}

#[test]
fn members_that_cannot_share_a_model_are_refused() {
    let device = Device::flex();
    let (train, _) = iris();
    let a = member(0.01, 0.8, 0.0, 0.3, 0);
    let mut b = a.clone();
    b.batch_size = 64;
    let err = Mlp::fit_stacked(&[a.clone(), b], &train, None, &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("batch_size"), "{err}");
    let mut c = a.clone();
    c.momentum = 1.5;
    let err = Mlp::fit_stacked(&[a, c], &train, None, &device)
        .unwrap_err()
        .to_string();
    assert!(err.contains("model 1") && err.contains("mu"), "{err}");
    assert!(Mlp::fit_stacked(&[], &train, None, &device).is_err());
}
