//! The reports' optimizers, with Keras' defaults: SGD (with momentum or Nesterov momentum),
//! Adam, AMSGrad, RMSprop and Adagrad from Burn, and Nadam and Adadelta, which Burn lacks,
//! written here as Burn [`Optimizer`]s so that Burn's `ModuleOptimizer` drives them all.

use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdaGradConfig, ModuleOptimizer, Optimizer, RecordState, RmsPropConfig, SgdConfig, StateSink,
    StateSource,
};
use burn::store::burn_pack::Scalar;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::fused_adam::Adam;

/// An optimizer and its hyperparameters (serialisable, so a grid can vary them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum OptimizerSpec {
    /// Stochastic gradient descent, optionally with (Nesterov) momentum.
    Sgd {
        /// Learning rate.
        lr: f64,
        /// Momentum factor (0 for none).
        #[serde(default)]
        momentum: f64,
        /// Nesterov momentum.
        #[serde(default)]
        nesterov: bool,
    },
    /// Adam (AMSGrad when `amsgrad`).
    Adam {
        /// Learning rate.
        lr: f64,
        /// First-moment decay.
        #[serde(default = "beta_1")]
        beta_1: f32,
        /// Second-moment decay.
        #[serde(default = "beta_2")]
        beta_2: f32,
        /// Numerical stability term.
        #[serde(default = "epsilon")]
        epsilon: f32,
        /// Use the maximum of past second moments (AMSGrad).
        #[serde(default)]
        amsgrad: bool,
    },
    /// Adam with Nesterov momentum (Dozat 2016), as Keras' `Nadam`.
    Nadam {
        /// Learning rate.
        lr: f64,
        /// First-moment decay.
        #[serde(default = "beta_1")]
        beta_1: f32,
        /// Second-moment decay.
        #[serde(default = "beta_2")]
        beta_2: f32,
        /// Numerical stability term.
        #[serde(default = "epsilon")]
        epsilon: f32,
    },
    /// RMSprop.
    RmsProp {
        /// Learning rate.
        lr: f64,
        /// Decay of the squared-gradient average.
        #[serde(default = "rho_rmsprop")]
        rho: f32,
        /// Numerical stability term.
        #[serde(default = "epsilon")]
        epsilon: f32,
        /// Momentum on the scaled step (Keras' default 0; Burn's `RmsPropConfig` defaults to
        /// 0.9, so it is always set). Written into every result key, so that records made
        /// before it was set (with Burn's 0.9) are not taken for Keras' RMSprop.
        #[serde(default)]
        momentum: f32,
    },
    /// Adagrad.
    Adagrad {
        /// Learning rate.
        lr: f64,
        /// Numerical stability term.
        #[serde(default = "epsilon")]
        epsilon: f32,
    },
    /// Adadelta (Zeiler 2012), as Keras' `Adadelta`.
    Adadelta {
        /// Learning rate (Keras' default 0.001; the original paper uses 1.0).
        lr: f64,
        /// Decay of the running averages.
        #[serde(default = "rho_adadelta")]
        rho: f32,
        /// Numerical stability term.
        #[serde(default = "epsilon")]
        epsilon: f32,
    },
}

fn beta_1() -> f32 {
    0.9
}
fn beta_2() -> f32 {
    0.999
}
fn epsilon() -> f32 {
    1e-7
}
fn rho_rmsprop() -> f32 {
    0.9
}
fn rho_adadelta() -> f32 {
    0.95
}

impl OptimizerSpec {
    /// Adam with Keras' defaults and learning rate `lr`.
    pub fn adam(lr: f64) -> Self {
        OptimizerSpec::Adam {
            lr,
            beta_1: beta_1(),
            beta_2: beta_2(),
            epsilon: epsilon(),
            amsgrad: false,
        }
    }

    /// SGD with momentum `momentum` (0 for plain SGD).
    pub fn sgd(lr: f64, momentum: f64, nesterov: bool) -> Self {
        OptimizerSpec::Sgd {
            lr,
            momentum,
            nesterov,
        }
    }

    /// Nadam with Keras' defaults.
    pub fn nadam(lr: f64) -> Self {
        OptimizerSpec::Nadam {
            lr,
            beta_1: beta_1(),
            beta_2: beta_2(),
            epsilon: epsilon(),
        }
    }

    /// RMSprop with Keras' defaults.
    pub fn rmsprop(lr: f64) -> Self {
        OptimizerSpec::RmsProp {
            lr,
            rho: rho_rmsprop(),
            epsilon: epsilon(),
            momentum: 0.0,
        }
    }

    /// Adagrad with Keras' epsilon.
    pub fn adagrad(lr: f64) -> Self {
        OptimizerSpec::Adagrad {
            lr,
            epsilon: epsilon(),
        }
    }

    /// Adadelta with Keras' defaults.
    pub fn adadelta(lr: f64) -> Self {
        OptimizerSpec::Adadelta {
            lr,
            rho: rho_adadelta(),
            epsilon: epsilon(),
        }
    }

    /// The initial learning rate.
    pub fn learning_rate(&self) -> f64 {
        match self {
            OptimizerSpec::Sgd { lr, .. }
            | OptimizerSpec::Adam { lr, .. }
            | OptimizerSpec::Nadam { lr, .. }
            | OptimizerSpec::RmsProp { lr, .. }
            | OptimizerSpec::Adagrad { lr, .. }
            | OptimizerSpec::Adadelta { lr, .. } => *lr,
        }
    }

    /// A short label for tables (`adam(0.001)`, `sgd(0.01, momentum 0.9, nesterov)`).
    pub fn label(&self) -> String {
        match self {
            OptimizerSpec::Sgd {
                lr,
                momentum,
                nesterov,
            } => {
                let mut s = format!("sgd({lr}");
                if *momentum > 0.0 {
                    s.push_str(&format!(", momentum {momentum}"));
                }
                if *nesterov {
                    s.push_str(", nesterov");
                }
                s + ")"
            }
            OptimizerSpec::Adam { lr, amsgrad, .. } if *amsgrad => format!("amsgrad({lr})"),
            OptimizerSpec::Adam { lr, .. } => format!("adam({lr})"),
            OptimizerSpec::Nadam { lr, .. } => format!("nadam({lr})"),
            OptimizerSpec::RmsProp { lr, .. } => format!("rmsprop({lr})"),
            OptimizerSpec::Adagrad { lr, .. } => format!("adagrad({lr})"),
            OptimizerSpec::Adadelta { lr, .. } => format!("adadelta({lr})"),
        }
    }

    /// Checks the hyperparameters, naming the bad one.
    pub fn validate(&self) -> Result<(), crate::FitError> {
        let lr = self.learning_rate();
        if !(lr.is_finite() && lr > 0.0) {
            return Err(crate::FitError::Config(format!(
                "{}: the learning rate must be positive",
                self.label()
            )));
        }
        if let OptimizerSpec::Sgd { momentum, .. } = self
            && !(0.0..1.0).contains(momentum)
        {
            return Err(crate::FitError::Config(format!(
                "{}: momentum must be in [0, 1)",
                self.label()
            )));
        }
        Ok(())
    }

    /// Builds the Burn optimizer that applies this update rule to a whole module.
    pub fn build(&self) -> ModuleOptimizer {
        match *self {
            OptimizerSpec::Sgd {
                momentum, nesterov, ..
            } => {
                let config = SgdConfig::new();
                let config = if momentum > 0.0 {
                    // Keras' momentum has no dampening (Burn's default dampens by 0.1).
                    config.with_momentum(Some(
                        MomentumConfig::new()
                            .with_momentum(momentum)
                            .with_dampening(0.0)
                            .with_nesterov(nesterov),
                    ))
                } else {
                    config
                };
                config.init()
            }
            OptimizerSpec::Adam {
                beta_1,
                beta_2,
                epsilon,
                amsgrad,
                ..
            } => ModuleOptimizer::from(Adam::new(beta_1, beta_2, epsilon, amsgrad)),
            OptimizerSpec::RmsProp {
                rho,
                epsilon,
                momentum,
                ..
            } => RmsPropConfig::new()
                .with_alpha(rho)
                .with_epsilon(epsilon)
                .with_momentum(momentum)
                .init(),
            OptimizerSpec::Adagrad { epsilon, .. } => {
                AdaGradConfig::new().with_epsilon(epsilon).init()
            }
            OptimizerSpec::Nadam {
                beta_1,
                beta_2,
                epsilon,
                ..
            } => ModuleOptimizer::from(Nadam {
                beta_1,
                beta_2,
                epsilon,
            }),
            OptimizerSpec::Adadelta { rho, epsilon, .. } => {
                ModuleOptimizer::from(Adadelta { rho, epsilon })
            }
        }
    }
}

/// Keras' and PyTorch's momentum-decay constant for Nadam's schedule.
const NADAM_MOMENTUM_DECAY: f64 = 0.004;

/// Nadam: Adam whose first moment takes a Nesterov look-ahead, with the momentum schedule
/// `mu_t = beta_1 (1 - 0.5 * 0.96^(0.004 t))` of Keras and PyTorch.
#[derive(Debug, Clone)]
pub struct Nadam {
    /// First-moment decay.
    pub beta_1: f32,
    /// Second-moment decay.
    pub beta_2: f32,
    /// Numerical stability term.
    pub epsilon: f32,
}

/// Per-parameter state of [`Nadam`].
#[derive(Clone)]
pub struct NadamState<const D: usize> {
    /// Steps taken.
    pub time: usize,
    /// Product of the momentum schedule so far.
    pub mu_product: f64,
    /// First moment.
    pub moment_1: Tensor<D>,
    /// Second moment.
    pub moment_2: Tensor<D>,
}

impl<const D: usize> RecordState for NadamState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_scalar(prefix, "time", Scalar::from(self.time));
        out.push_scalar(prefix, "mu_product", Scalar::from(self.mu_product));
        out.push_tensor(prefix, "moment_1", self.moment_1.clone().into_data());
        out.push_tensor(prefix, "moment_2", self.moment_2.clone().into_data());
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        Some(NadamState {
            time: usize::try_from(src.take_scalar(prefix, "time")?).ok()?,
            mu_product: f64::try_from(src.take_scalar(prefix, "mu_product")?).ok()?,
            moment_1: Tensor::from_data(src.take_tensor(prefix, "moment_1")?, device),
            moment_2: Tensor::from_data(src.take_tensor(prefix, "moment_2")?, device),
        })
    }
}

impl Nadam {
    fn mu(&self, t: usize) -> f64 {
        self.beta_1 as f64 * (1.0 - 0.5 * 0.96f64.powf(t as f64 * NADAM_MOMENTUM_DECAY))
    }
}

impl Optimizer for Nadam {
    type State<const D: usize> = NadamState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let (b1, b2) = (self.beta_1 as f64, self.beta_2 as f64);
        let (time, mu_product, m, v) = match state {
            Some(s) => (
                s.time + 1,
                s.mu_product,
                s.moment_1
                    .mul_scalar(b1)
                    .add(grad.clone().mul_scalar(1.0 - b1)),
                s.moment_2
                    .mul_scalar(b2)
                    .add(grad.clone().square().mul_scalar(1.0 - b2)),
            ),
            None => (
                1,
                1.0,
                grad.clone().mul_scalar(1.0 - b1),
                grad.clone().square().mul_scalar(1.0 - b2),
            ),
        };
        let mu_t = self.mu(time);
        let mu_next = self.mu(time + 1);
        let mu_product = mu_product * mu_t;
        let bias_2 = 1.0 - b2.powi(time as i32);
        let denom = v
            .clone()
            .div_scalar(bias_2)
            .sqrt()
            .add_scalar(self.epsilon as f64);
        let update = grad
            .mul_scalar((1.0 - mu_t) / (1.0 - mu_product))
            .add(m.clone().mul_scalar(mu_next / (1.0 - mu_product * mu_next)))
            .div(denom);
        let state = NadamState {
            time,
            mu_product,
            moment_1: m,
            moment_2: v,
        };
        (tensor.sub(update.mul_scalar(lr)), Some(state))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.moment_1 = state.moment_1.to_device(device);
        state.moment_2 = state.moment_2.to_device(device);
        state
    }
}

/// Adadelta: steps scaled by the ratio of running RMS of past updates to running RMS of
/// gradients, as Keras computes it.
#[derive(Debug, Clone)]
pub struct Adadelta {
    /// Decay of the running averages.
    pub rho: f32,
    /// Numerical stability term.
    pub epsilon: f32,
}

/// Per-parameter state of [`Adadelta`].
#[derive(Clone)]
pub struct AdadeltaState<const D: usize> {
    /// Running average of squared gradients.
    pub grad_sq: Tensor<D>,
    /// Running average of squared updates.
    pub update_sq: Tensor<D>,
}

impl<const D: usize> RecordState for AdadeltaState<D> {
    fn state_flatten(&self, prefix: &str, out: &mut StateSink) {
        out.push_tensor(prefix, "grad_sq", self.grad_sq.clone().into_data());
        out.push_tensor(prefix, "update_sq", self.update_sq.clone().into_data());
    }

    fn state_unflatten(prefix: &str, src: &mut StateSource, device: &Device) -> Option<Self> {
        Some(AdadeltaState {
            grad_sq: Tensor::from_data(src.take_tensor(prefix, "grad_sq")?, device),
            update_sq: Tensor::from_data(src.take_tensor(prefix, "update_sq")?, device),
        })
    }
}

impl Optimizer for Adadelta {
    type State<const D: usize> = AdadeltaState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let rho = self.rho as f64;
        let eps = self.epsilon as f64;
        let (grad_sq, update_sq) = match state {
            Some(s) => (s.grad_sq, s.update_sq),
            None => (grad.zeros_like(), grad.zeros_like()),
        };
        let grad_sq = grad_sq
            .mul_scalar(rho)
            .add(grad.clone().square().mul_scalar(1.0 - rho));
        let delta = update_sq
            .clone()
            .add_scalar(eps)
            .sqrt()
            .div(grad_sq.clone().add_scalar(eps).sqrt())
            .mul(grad);
        let update_sq = update_sq
            .mul_scalar(rho)
            .add(delta.clone().square().mul_scalar(1.0 - rho));
        (
            tensor.sub(delta.mul_scalar(lr)),
            Some(AdadeltaState { grad_sq, update_sq }),
        )
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.grad_sq = state.grad_sq.to_device(device);
        state.update_sq = state.update_sq.to_device(device);
        state
    }
}
