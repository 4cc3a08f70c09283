//! One or two steps of each optimizer on a single parameter with a known gradient, checked
//! against the update rule computed independently here (Keras' and PyTorch's formulas).

use burn::module::{Module, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::{Device, Tensor, TensorData};
use trainer::OptimizerSpec;
use trainer::optim::{Adadelta, Nadam};

#[derive(Module, Debug)]
struct One {
    w: Param<Tensor<1>>,
}

fn device() -> Device {
    Device::flex().autodiff()
}

fn value(t: Tensor<1>) -> f64 {
    t.into_data().try_into_vec_as::<f32>().unwrap()[0] as f64
}

/// Runs `spec` for the given gradients from w = 1, returning w after each step.
fn run(spec: &OptimizerSpec, grads: &[f64]) -> Vec<f64> {
    let device = device();
    let mut module = One {
        w: Param::from_tensor(Tensor::from_data(
            TensorData::new(vec![1.0f32], [1]),
            &device,
        )),
    };
    let mut optim = spec.build();
    let mut out = Vec::new();
    for &g in grads {
        let gt = Tensor::<1>::from_data(TensorData::new(vec![g as f32], [1]), &device);
        let loss = (module.w.val() * gt).sum();
        let gp = GradientsParams::from_grads(loss.backward(), &module);
        module = optim.step(spec.learning_rate(), module, gp);
        out.push(value(module.w.val()));
    }
    out
}

fn close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len(), "got {a:?}, expected {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-5, "got {a:?}, expected {b:?}");
    }
}

#[test]
fn sgd_plain_momentum_and_nesterov() {
    close(
        &run(&OptimizerSpec::sgd(0.1, 0.0, false), &[0.5, 0.5]),
        &[0.95, 0.9],
    );
    // Keras: v = 0.9 v - 0.1 g; w += v  ->  v1 = -0.05, v2 = -0.095
    close(
        &run(&OptimizerSpec::sgd(0.1, 0.9, false), &[0.5, 0.5]),
        &[0.95, 0.855],
    );
    // Keras Nesterov: w += 0.9 v_new - 0.1 g  ->  1 - 0.045 - 0.05
    close(&run(&OptimizerSpec::sgd(0.1, 0.9, true), &[0.5]), &[0.905]);
}

fn adam_reference(grads: &[f64], lr: f64, amsgrad: bool) -> Vec<f64> {
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-7f64);
    let (mut m, mut v, mut vmax, mut w) = (0.0, 0.0, 0.0f64, 1.0);
    let mut out = Vec::new();
    for (t, g) in grads.iter().enumerate() {
        let t = (t + 1) as i32;
        m = b1 * m + (1.0 - b1) * g;
        v = b2 * v + (1.0 - b2) * g * g;
        vmax = vmax.max(v);
        let v_used = if amsgrad { vmax } else { v };
        let m_hat = m / (1.0 - b1.powi(t));
        let v_hat = v_used / (1.0 - b2.powi(t));
        w -= lr * m_hat / (v_hat.sqrt() + eps);
        out.push(w);
    }
    out
}

#[test]
fn adam_and_amsgrad() {
    let grads = [0.5, 0.001, 0.2];
    close(
        &run(&OptimizerSpec::adam(0.1), &grads),
        &adam_reference(&grads, 0.1, false),
    );
    let ams = OptimizerSpec::Adam {
        lr: 0.1,
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-7,
        amsgrad: true,
    };
    let got = run(&ams, &grads);
    close(&got, &adam_reference(&grads, 0.1, true));
    // The second gradient is small, so the second moment falls and AMSGrad keeps the old one.
    assert!((got[1] - adam_reference(&grads, 0.1, false)[1]).abs() > 1e-5);
}

#[test]
fn rmsprop_and_adagrad() {
    // RMSprop (rho 0.9): v = 0.1 * 0.25; w = 1 - 0.01 * 0.5 / sqrt(0.025)
    close(
        &run(&OptimizerSpec::rmsprop(0.01), &[0.5]),
        &[1.0 - 0.005 / 0.025f64.sqrt()],
    );
    // Three steps of Keras' RMSprop (no momentum): v = 0.9 v + 0.1 g², w -= lr g / (sqrt(v) + eps).
    // A momentum left on (Burn's default 0.9) agrees on the first step only.
    let grads = [0.5, -0.2, 0.3];
    let (mut v, mut w, mut expected) = (0.0f64, 1.0f64, Vec::new());
    for g in grads {
        v = 0.9 * v + 0.1 * g * g;
        w -= 0.01 * g / (v.sqrt() + 1e-7);
        expected.push(w);
    }
    close(&run(&OptimizerSpec::rmsprop(0.01), &grads), &expected);
    // Adagrad: accumulator 0.25; w = 1 - 0.1 * 0.5 / 0.5
    close(
        &run(&OptimizerSpec::adagrad(0.1), &[0.5, 0.5]),
        &[0.9, 0.9 - 0.05 / 0.5f64.sqrt()],
    );
}

fn nadam_reference(grads: &[f64], lr: f64) -> Vec<f64> {
    // PyTorch's NAdam / Keras' Nadam with momentum decay 0.004.
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-7f64);
    let mu = |t: f64| b1 * (1.0 - 0.5 * 0.96f64.powf(t * 0.004));
    let (mut m, mut v, mut w, mut mu_product) = (0.0, 0.0, 1.0, 1.0);
    let mut out = Vec::new();
    for (i, g) in grads.iter().enumerate() {
        let t = (i + 1) as f64;
        m = b1 * m + (1.0 - b1) * g;
        v = b2 * v + (1.0 - b2) * g * g;
        let (mu_t, mu_next) = (mu(t), mu(t + 1.0));
        mu_product *= mu_t;
        let denom = (v / (1.0 - b2.powf(t))).sqrt() + eps;
        w -= lr * (1.0 - mu_t) / (1.0 - mu_product) * g / denom;
        w -= lr * mu_next / (1.0 - mu_product * mu_next) * m / denom;
        out.push(w);
    }
    out
}

#[test]
fn nadam_through_the_module_optimizer_and_directly() {
    let grads = [0.5, -0.3, 0.2];
    close(
        &run(&OptimizerSpec::nadam(0.01), &grads),
        &nadam_reference(&grads, 0.01),
    );
    let nadam = Nadam {
        beta_1: 0.9,
        beta_2: 0.999,
        epsilon: 1e-7,
    };
    let device = Device::flex();
    let w = Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), &device);
    let g = Tensor::<1>::from_data(TensorData::new(vec![0.5f32], [1]), &device);
    let (w, state) = nadam.step(0.01, w, g, None);
    close(&[value(w)], &nadam_reference(&[0.5], 0.01));
    assert_eq!(state.unwrap().time, 1);
}

#[test]
fn adadelta_matches_keras() {
    // Keras: E[g2] = 0.05 * 0.25; delta = sqrt(0 + eps) / sqrt(E[g2] + eps) * g
    let eps = 1e-7f64;
    let eg = 0.05 * 0.25;
    let delta1 = (eps).sqrt() / (eg + eps).sqrt() * 0.5;
    let ex = 0.05 * delta1 * delta1;
    let eg2 = 0.95 * eg + 0.05 * 0.25;
    let delta2 = (ex + eps).sqrt() / (eg2 + eps).sqrt() * 0.5;
    let got = run(&OptimizerSpec::adadelta(1.0), &[0.5, 0.5]);
    close(&got, &[1.0 - delta1, 1.0 - delta1 - delta2]);
    let direct = Adadelta {
        rho: 0.95,
        epsilon: 1e-7,
    };
    let device = Device::flex();
    let w = Tensor::<1>::from_data(TensorData::new(vec![1.0f32], [1]), &device);
    let g = Tensor::<1>::from_data(TensorData::new(vec![0.5f32], [1]), &device);
    let (w, _) = direct.step(1.0, w, g, None);
    close(&[value(w)], &[1.0 - delta1]);
}

#[test]
fn invalid_hyperparameters_are_named() {
    assert!(
        OptimizerSpec::adam(0.0)
            .validate()
            .unwrap_err()
            .to_string()
            .contains("learning rate")
    );
    assert!(
        OptimizerSpec::sgd(0.1, 1.5, false)
            .validate()
            .unwrap_err()
            .to_string()
            .contains("momentum")
    );
    let json = r#"{"name":"nadam","lr":0.002}"#;
    let spec: OptimizerSpec = serde_json::from_str(json).unwrap();
    assert_eq!(spec, OptimizerSpec::nadam(0.002));
}
