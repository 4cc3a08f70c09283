//! Adam whose update runs in one pass over each parameter on flex.
//!
//! Burn's Adam builds its update from about a dozen whole-tensor operations (scale the first
//! moment, square the gradient, scale, add, take the root, divide, ...), each reading and
//! writing a parameter-sized tensor; for report 002's MLP that was a seventh of a training
//! step (docs/performance.md). [`Adam`] computes the same quantities, in the same
//! order and precision, in one loop that updates the parameter and both moments in place.
//! Its state is Burn's [`AdamState`], so checkpoints are unchanged; on other backends, and for
//! AMSGrad, it is Burn's Adam.

#[cfg(feature = "flex")]
use burn::optim::AdaptiveMomentumState;
use burn::optim::{AdamConfig, AdamState, LearningRate, Optimizer};
use burn::tensor::{Device, Tensor};
#[cfg(feature = "flex")]
use flex_ops::adam::{self as flex, AdamScalars};

/// Adam (Kingma & Ba), computed as Burn's `Adam` computes it.
#[derive(Clone)]
// Without flex only `burn` is read: the fused step is flex's.
#[cfg_attr(not(feature = "flex"), allow(dead_code))]
pub struct Adam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    amsgrad: bool,
    burn: burn::optim::Adam,
}

impl Adam {
    /// Adam with these moment decays and stability term, AMSGrad when `amsgrad`.
    pub fn new(beta_1: f32, beta_2: f32, epsilon: f32, amsgrad: bool) -> Self {
        let burn = AdamConfig::new()
            .with_beta_1(beta_1)
            .with_beta_2(beta_2)
            .with_epsilon(epsilon)
            .with_amsgrad(amsgrad)
            .build();
        Adam {
            beta_1,
            beta_2,
            epsilon,
            amsgrad,
            burn,
        }
    }

    /// The step's scalars, as Burn's Adam computes them for step `time` (from 1).
    #[cfg(feature = "flex")]
    fn scalars(&self, time: usize, lr: LearningRate) -> AdamScalars {
        let time = time as i32;
        let bias_correction_2_sqrt = (1.0 - self.beta_2.powi(time)).sqrt();
        AdamScalars {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            moment_factor: bias_correction_2_sqrt / (1.0 - self.beta_1.powi(time)),
            epsilon: self.epsilon * bias_correction_2_sqrt,
            lr: lr as f32,
        }
    }
}

impl Optimizer for Adam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        #[cfg(feature = "flex")]
        if !self.amsgrad && flex_ops::kernels::runs_on_flex(&tensor) {
            let (time, moment_1, moment_2) = match state {
                Some(AdamState { momentum: s }) => (s.time + 1, s.moment_1, s.moment_2),
                None => (1, grad.zeros_like(), grad.zeros_like()),
            };
            let scalars = self.scalars(time, lr);
            let (tensor, moment_1, moment_2) =
                flex::adam_step(tensor, grad, moment_1, moment_2, scalars);
            let momentum = AdaptiveMomentumState::new(time, moment_1, moment_2);
            return (tensor, Some(AdamState::new(momentum)));
        }
        self.burn.step(lr, tensor, grad, state)
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <burn::optim::Adam as Optimizer>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    fn values<const D: usize>(t: &Tensor<D>) -> Vec<f32> {
        t.to_data().try_into_vec_as::<f32>().unwrap()
    }

    /// Ten steps of this Adam and of Burn's on the same parameters and gradients give the
    /// same parameters and moments, on the first step (no state) and later ones.
    #[test]
    fn matches_burns_adam() {
        let device = Device::default();
        let ours = Adam::new(0.9, 0.999, 1e-7, false);
        let burns = AdamConfig::new().with_epsilon(1e-7).build();
        let start = Tensor::<2>::random([37, 53], Distribution::Normal(0.0, 1.0), &device);
        let (mut p_ours, mut p_burn) = (start.clone(), start);
        let (mut s_ours, mut s_burn) = (None, None);
        for step in 0..10 {
            let grad = Tensor::<2>::random([37, 53], Distribution::Normal(0.0, 1.0), &device)
                .mul_scalar(1.0 + step as f32);
            (p_ours, s_ours) = ours.step(0.01, p_ours, grad.clone(), s_ours);
            (p_burn, s_burn) = burns.step(0.01, p_burn, grad, s_burn);
        }
        let (a, b) = (s_ours.unwrap().momentum, s_burn.unwrap().momentum);
        assert_eq!(a.time, 10);
        assert_eq!(a.time, b.time);
        for (name, ours, burns) in [
            ("parameter", values(&p_ours), values(&p_burn)),
            ("first moment", values(&a.moment_1), values(&b.moment_1)),
            ("second moment", values(&a.moment_2), values(&b.moment_2)),
        ] {
            for (i, (x, y)) in ours.iter().zip(&burns).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-6 * y.abs().max(1.0),
                    "{name}[{i}]: {x} vs Burn's {y}"
                );
            }
        }
    }

    /// A parameter whose buffer is shared (a clone kept elsewhere) is not changed under the
    /// other holder, and a non-contiguous (transposed) one is updated correctly.
    #[test]
    fn shared_and_strided_parameters_are_safe() {
        let device = Device::default();
        let adam = Adam::new(0.9, 0.999, 1e-7, false);
        let data = TensorData::new((0..12).map(|i| i as f32).collect::<Vec<_>>(), [3, 4]);
        let kept = Tensor::<2>::from_data(data, &device);
        let before = values(&kept);
        for param in [kept.clone(), kept.clone().transpose()] {
            let grad = param.ones_like();
            let (after, _) = adam.step(0.5, param.clone(), grad, None);
            assert_eq!(values(&kept), before, "the shared buffer was written");
            // The first step moves every element by lr (m / sqrt(v) = 1 after bias
            // correction, up to epsilon).
            let expected: Vec<f32> = values(&param).iter().map(|x| x - 0.5).collect();
            for (x, y) in values(&after).iter().zip(&expected) {
                assert!((x - y).abs() < 1e-5, "{x} vs {y}");
            }
        }
    }
}
