//! SGD with momentum for a stack of models in one pass: report 001's MLP grids train many
//! small MLPs side by side (`trainer::stacked`), each member with its own learning rate and
//! momentum, and Burn's four broadcast operations per parameter and step (`v mu`, `+ g`,
//! `v lr`, `p -`) were a large share of a step on such small tensors. The same operations in
//! the same order, so each rounding is Burn's.

use std::sync::Arc;

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;
use rayon::prelude::*;

use crate::buffer::{dense, values, values_mut};

/// One member's part of the update: its index, parameter, velocity and gradient values.
type Member<'a> = (usize, ((&'a mut [f32], &'a mut [f32]), &'a [f32]));

/// Elements below which one thread does the whole update (scheduling would cost more).
const PARALLEL_FROM: usize = 1 << 15;

/// One step for stacked parameters `[members, ..]` with gradient `grad` and velocity
/// `velocity` of the same shape: per member `m`, `v = v momentum[m] + g` and
/// `p = p - v learning_rate[m]`. Returns the new parameter and velocity. Call only where
/// [`crate::kernels::runs_on_flex`]; `momentum` and `learning_rate` hold one value per
/// member (the first dimension), shared (not copied) by every parameter's step.
pub fn momentum_step(
    param: Tensor<3>,
    grad: Tensor<3>,
    velocity: Tensor<3>,
    momentum: &Arc<[f32]>,
    learning_rate: &Arc<[f32]>,
) -> (Tensor<3>, Tensor<3>) {
    let (param, velocity) = <Dispatch as FlexSgd>::momentum_step(
        param.into_dispatch(),
        grad.into_dispatch(),
        velocity.into_dispatch(),
        Arc::clone(momentum),
        Arc::clone(learning_rate),
    );
    (
        Tensor::from_dispatch(param),
        Tensor::from_dispatch(velocity),
    )
}

/// The stacked momentum step, as a Burn backend extension (flex only).
#[backend_extension(Flex)]
pub trait FlexSgd: Backend {
    /// Updates `(param, velocity)` by one step with gradient `grad`, per member of the
    /// first dimension with its own momentum and learning rate.
    fn momentum_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        velocity: FloatTensor<Self>,
        momentum: Arc<[f32]>,
        learning_rate: Arc<[f32]>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl FlexSgd for Flex {
    fn momentum_step(
        param: FlexTensor,
        grad: FlexTensor,
        velocity: FlexTensor,
        momentum: Arc<[f32]>,
        learning_rate: Arc<[f32]>,
    ) -> (FlexTensor, FlexTensor) {
        let (mut param, mut velocity, grad) = (dense(param), dense(velocity), dense(grad));
        let g = values(&grad);
        let (p, v) = (values_mut(&mut param), values_mut(&mut velocity));
        let per_member = p.len() / momentum.len().max(1);
        let member = |(m, ((p, v), g)): Member| {
            let (mu, lr) = (momentum[m], learning_rate[m]);
            for ((p, v), &g) in p.iter_mut().zip(v.iter_mut()).zip(g) {
                // Burn's operations, in its order: v * mu + g, then p - v * lr.
                *v = *v * mu + g;
                *p -= *v * lr;
            }
        };
        if per_member == 0 {
            return (param, velocity);
        }
        if p.len() < PARALLEL_FROM {
            p.chunks_mut(per_member)
                .zip(v.chunks_mut(per_member))
                .zip(g.chunks(per_member))
                .enumerate()
                .for_each(member);
        } else {
            p.par_chunks_mut(per_member)
                .zip(v.par_chunks_mut(per_member))
                .zip(g.par_chunks(per_member))
                .enumerate()
                .for_each(member);
        }
        (param, velocity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution, TensorData};

    /// Burn's broadcast operations, as `trainer::stacked` wrote them before this kernel.
    fn burn_step(
        p: Tensor<3>,
        g: Tensor<3>,
        v: Tensor<3>,
        mu: &[f32],
        lr: &[f32],
    ) -> (Tensor<3>, Tensor<3>) {
        let device = p.device();
        let k = mu.len();
        let mu = Tensor::<3>::from_data(TensorData::new(mu.to_vec(), [k, 1, 1]), &device);
        let lr = Tensor::<3>::from_data(TensorData::new(lr.to_vec(), [k, 1, 1]), &device);
        let v = v * mu + g;
        (p - v.clone() * lr, v)
    }

    #[test]
    fn the_fused_step_is_burns_bit_for_bit_per_member() {
        let device = Device::flex();
        // A small stack (one thread) and one above PARALLEL_FROM (rayon).
        for dims in [[3, 4, 5], [5, 100, 80]] {
            let random = || Tensor::<3>::random(dims, Distribution::Normal(0.0, 1.0), &device);
            let (p, g, v) = (random(), random(), random());
            let mu: Vec<f32> = (0..dims[0]).map(|m| 0.1 * m as f32).collect();
            let lr: Vec<f32> = (0..dims[0]).map(|m| 0.01 + 0.003 * m as f32).collect();
            let (mu_shared, lr_shared): (Arc<[f32]>, Arc<[f32]>) =
                (mu.clone().into(), lr.clone().into());
            let (p1, v1) = momentum_step(p.clone(), g.clone(), v.clone(), &mu_shared, &lr_shared);
            let (p2, v2) = burn_step(p, g, v, &mu, &lr);
            let bits = |t: Tensor<3>| -> Vec<u32> {
                t.into_data()
                    .try_to_vec::<f32>()
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect()
            };
            assert_eq!(bits(p1), bits(p2), "parameters, {dims:?}");
            assert_eq!(bits(v1), bits(v2), "velocities, {dims:?}");
        }
    }
}
