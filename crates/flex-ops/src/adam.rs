//! Adam's update in one pass over each parameter, as a Burn backend extension for flex:
//! the parameter and both moments are updated in place (copied first only where their
//! buffer is shared), in Burn's order of operations, so each rounding is Burn's. The
//! optimizer around it (`trainer::fused_adam::Adam`) falls back to Burn's Adam elsewhere.

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::buffer::{dense, values, values_mut};

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
