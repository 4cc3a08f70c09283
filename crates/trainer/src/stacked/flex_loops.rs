//! The stacked members on flex: [`flex_ops::stacked_mlp`]'s loops over plain buffers, a
//! step with no graph and no allocation (report 001's iris grid: docs/performance.md).

use data::{Samples, Targets};
use flex_ops::stacked_mlp::{self, Hidden, MemberInit, StackedMlp, Sums};
use models::{Activation, Network};

use super::{EVAL_ITEMS, Engine, MemberLayers, MemberSums};
use crate::estimator::ModelError;
use crate::mlp::Mlp;

/// The members and the buffers a batch is gathered into.
pub(super) struct FlexLoops {
    mlp: StackedMlp,
    batch: Batch,
}

/// A batch's items as the loops take them: inputs, and class indices or values.
#[derive(Default)]
struct Batch {
    inputs: Vec<f32>,
    labels: Vec<usize>,
    values: Vec<f32>,
}

/// The loops' form of an activation between layers (`None`: softmax, which they lack).
fn hidden(activation: Activation) -> Option<Hidden> {
    Some(match activation {
        Activation::Linear => Hidden::Linear,
        Activation::Relu => Hidden::Relu,
        Activation::LeakyRelu(slope) => Hidden::LeakyRelu(slope),
        Activation::Sigmoid => Hidden::Sigmoid,
        Activation::Tanh => Hidden::Tanh,
        Activation::Softmax => return None,
    })
}

impl FlexLoops {
    /// The members from their networks' starting weights (`Ok(None)` for an activation
    /// the loops lack).
    pub(super) fn new(members: &[Mlp], networks: &[Network]) -> Result<Option<Self>, ModelError> {
        let Some(activation) = hidden(members[0].activation) else {
            return Ok(None);
        };
        let layers = networks[0].dense_layers();
        let mut sizes = vec![layers.first().map_or(0, |l| l.weight.dims()[0])];
        sizes.extend(layers.iter().map(|l| l.weight.dims()[1]));
        let inits = members
            .iter()
            .zip(networks)
            .map(|(m, n)| member_init(m, n))
            .collect::<Result<Vec<_>, _>>()?;
        let mlp = StackedMlp::new(&sizes, activation, inits).map_err(internal)?;
        Ok(Some(FlexLoops {
            mlp,
            batch: Batch::default(),
        }))
    }
}

impl Batch {
    /// Gathers each member's items (`chunks[i]` of `samples`) into the buffers.
    fn gather(&mut self, samples: &Samples, chunks: &[&[usize]]) {
        self.inputs.clear();
        self.labels.clear();
        self.values.clear();
        for &i in chunks.iter().flat_map(|c| c.iter()) {
            self.inputs.extend_from_slice(samples.item(i));
            match &samples.targets {
                Targets::Classes { labels, .. } => self.labels.push(labels[i]),
                Targets::Values { values, width, .. } => {
                    self.values
                        .extend_from_slice(&values[i * width..(i + 1) * width]);
                }
            }
        }
    }

    /// The gathered targets, in the loops' form.
    fn targets(&self, samples: &Samples) -> stacked_mlp::Targets<'_> {
        match &samples.targets {
            Targets::Classes { .. } => stacked_mlp::Targets::Classes(&self.labels),
            Targets::Values { width, .. } => stacked_mlp::Targets::Values(&self.values, *width),
        }
    }
}

impl Engine for FlexLoops {
    fn train_epoch(
        &mut self,
        train: &Samples,
        orders: &[Vec<usize>],
        batch_size: usize,
    ) -> Result<Vec<MemberSums>, ModelError> {
        let n = train.len();
        let mut sums = vec![Sums::default(); self.mlp.len()];
        for step in 0..n.div_ceil(batch_size) {
            let range = step * batch_size..((step + 1) * batch_size).min(n);
            let chunks: Vec<&[usize]> = orders.iter().map(|o| &o[range.clone()]).collect();
            self.batch.gather(train, &chunks);
            let targets = self.batch.targets(train);
            self.mlp
                .train_batch(&self.batch.inputs, targets, &mut sums)
                .map_err(internal)?;
        }
        Ok(sums.into_iter().map(member_sums).collect())
    }

    fn evaluate(&mut self, samples: &Samples) -> Result<Vec<MemberSums>, ModelError> {
        let mut sums = vec![Sums::default(); self.mlp.len()];
        let all: Vec<usize> = (0..samples.len()).collect();
        for chunk in all.chunks(EVAL_ITEMS) {
            self.batch.gather(samples, &[chunk]);
            let targets = self.batch.targets(samples);
            self.mlp
                .evaluate(&self.batch.inputs, targets, &mut sums)
                .map_err(internal)?;
        }
        Ok(sums.into_iter().map(member_sums).collect())
    }

    fn park(&mut self, members: &[usize]) {
        for &i in members {
            self.mlp.park(i);
        }
    }

    fn member_weights(&self, i: usize) -> MemberLayers {
        self.mlp
            .member_layers(i)
            .unwrap_or_default()
            .into_iter()
            .map(|(w, b)| (w.to_vec(), b.to_vec()))
            .collect()
    }
}

/// A member's starting weights (from its network) and settings.
fn member_init(member: &Mlp, network: &Network) -> Result<MemberInit, ModelError> {
    let values = |t: burn::tensor::TensorData| {
        t.try_into_vec_as::<f32>()
            .map_err(|e| internal(format!("{e:?}")))
    };
    let layers = network
        .dense_layers()
        .iter()
        .map(|l| {
            Ok((
                values(l.weight.val().into_data())?,
                values(l.bias.val().into_data())?,
            ))
        })
        .collect::<Result<Vec<_>, ModelError>>()?;
    Ok(MemberInit {
        layers,
        learning_rate: member.learning_rate as f32,
        momentum: member.momentum as f32,
        l2: member.l2 as f32,
    })
}

fn member_sums(s: Sums) -> MemberSums {
    MemberSums {
        loss: s.loss,
        fit: s.fit,
    }
}

/// A size mismatch between the loops and the data the trainer gathered: a bug, reported.
fn internal(e: impl std::fmt::Display) -> ModelError {
    ModelError::Input(format!("stacked training: {e}"))
}
