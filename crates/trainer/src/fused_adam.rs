//! Adam whose update runs in one pass over each parameter on flex.
//!
//! Burn's Adam builds its update from about a dozen whole-tensor operations (scale the first
//! moment, square the gradient, scale, add, take the root, divide, ...), each reading and
//! writing a parameter-sized tensor; for report 002's MLP that was a seventh of a training
//! step (README, "Where the time goes"). [`Adam`] computes the same quantities, in the same
//! order and precision, in one loop that updates the parameter and both moments in place.
//! Its state is Burn's [`AdamState`], so checkpoints are unchanged; on other backends, and for
//! AMSGrad, it is Burn's Adam.

use burn::optim::{AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, Optimizer};
use burn::tensor::{Device, Tensor};

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
    #[cfg_attr(not(feature = "flex"), allow(dead_code))]
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

/// The numbers one Adam step needs per element: `m = beta_1 m + (1 - beta_1) g`,
/// `v = beta_2 v + (1 - beta_2) g^2`, `p -= lr (moment_factor m) / (sqrt(v) + epsilon)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamScalars {
    /// First-moment decay.
    pub beta_1: f32,
    /// Second-moment decay.
    pub beta_2: f32,
    /// Both bias corrections folded into one factor on the first moment.
    pub moment_factor: f32,
    /// The stability term, scaled by the second moment's bias correction.
    pub epsilon: f32,
    /// Learning rate.
    pub lr: f32,
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
        if !self.amsgrad && models::flex_kernels::runs_on_flex(&tensor) {
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

#[cfg(feature = "flex")]
mod flex {
    //! The fused step as a Burn backend extension for flex.

    use burn::backend::flex::FlexTensor;
    use burn::backend::tensor::FloatTensor;
    use burn::backend::{Backend, Dispatch, Flex, backend_extension};
    use burn::tensor::Tensor;
    use rayon::prelude::*;

    use super::AdamScalars;

    /// Elements per parallel task: large enough to amortise scheduling, small enough to
    /// split a 100k-parameter layer between cores.
    const CHUNK: usize = 1 << 14;

    /// One Adam step on flex: the updated parameter and moments, written over the inputs
    /// where they are not shared.
    pub fn adam_step<const D: usize>(
        param: Tensor<D>,
        grad: Tensor<D>,
        moment_1: Tensor<D>,
        moment_2: Tensor<D>,
        scalars: AdamScalars,
    ) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
        let (param, moment_1, moment_2) = <Dispatch as FlexAdam>::adam_step(
            param.into_dispatch(),
            grad.into_dispatch(),
            moment_1.into_dispatch(),
            moment_2.into_dispatch(),
            scalars,
        );
        (
            Tensor::from_dispatch(param),
            Tensor::from_dispatch(moment_1),
            Tensor::from_dispatch(moment_2),
        )
    }

    /// The fused Adam step, as a Burn backend extension (flex only).
    #[backend_extension(Flex)]
    pub trait FlexAdam: Backend {
        /// Updates `(param, moment_1, moment_2)` by one Adam step with gradient `grad`.
        fn adam_step(
            param: FloatTensor<Self>,
            grad: FloatTensor<Self>,
            moment_1: FloatTensor<Self>,
            moment_2: FloatTensor<Self>,
            scalars: AdamScalars,
        ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
    }

    impl FlexAdam for Flex {
        fn adam_step(
            param: FlexTensor,
            grad: FlexTensor,
            moment_1: FlexTensor,
            moment_2: FlexTensor,
            s: AdamScalars,
        ) -> (FlexTensor, FlexTensor, FlexTensor) {
            let (mut param, mut moment_1, mut moment_2) =
                (dense(param), dense(moment_1), dense(moment_2));
            let grad = dense(grad);
            let g = values(&grad);
            let (p, m, v) = (
                values_mut(&mut param),
                values_mut(&mut moment_1),
                values_mut(&mut moment_2),
            );
            let (keep_1, keep_2) = (1.0 - s.beta_1, 1.0 - s.beta_2);
            p.par_chunks_mut(CHUNK)
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .zip(g.par_chunks(CHUNK))
                .for_each(|(((p, m), v), g)| {
                    for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
                        // Burn's operations, in its order: each rounding is the same.
                        *m = *m * s.beta_1 + g * keep_1;
                        *v = *v * s.beta_2 + (g * g) * keep_2;
                        let update = (*m * s.moment_factor) / (v.sqrt() + s.epsilon);
                        *p -= update * s.lr;
                    }
                });
            (param, moment_1, moment_2)
        }
    }

    /// `t`, copied into a new buffer if its values are not one contiguous run.
    fn dense(t: FlexTensor) -> FlexTensor {
        if t.is_contiguous() {
            t
        } else {
            t.to_contiguous()
        }
    }

    /// The values of a [`dense`] tensor, for writing: its buffer is copied first only if it
    /// is shared (flex's copy-on-write).
    fn values_mut(t: &mut FlexTensor) -> &mut [f32] {
        let (start, end) = t
            .layout()
            .contiguous_offsets()
            .expect("adam_step makes its tensors contiguous");
        &mut t.storage_mut::<f32>()[start..end]
    }

    /// The values of a [`dense`] tensor.
    fn values(t: &FlexTensor) -> &[f32] {
        t.as_slice::<f32>()
            .expect("adam_step makes its tensors contiguous")
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
