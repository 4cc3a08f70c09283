//! Report 001's MLP as a convenience over the general machinery: inputs standardised, targets standardised for regression, softmax
//! output and cross-entropy (on class indices, equivalent to one-hot targets) for
//! classification, SGD with momentum, weights drawn from a normal distribution times a scale.
//! The fields use the project's vocabulary (`epochs`, `learning_rate`, `l2`, `momentum`);
//! the report's names (`epoch`, `eta`, `alpha`, `mu`, `beta`) are accepted when reading one
//! from JSON and are what study files write.

use burn::tensor::Device;
use data::Samples;
use data::Task;
use models::{Activation, Init, Layer, ModelSpec, Network, Shape};
use serde::{Deserialize, Serialize};

use crate::estimator::{InputScaling, ModelError, Preprocessing, TrainedModel, train_model};
use crate::fit::{FitConfig, HeldOut, History, Loss, Verbosity};
use crate::optim::OptimizerSpec;

/// The MLP of report 001, with its hyperparameter names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mlp {
    /// Units of each hidden layer (the report's `hidden_layer`).
    #[serde(alias = "hidden_layer")]
    pub hidden_layers: Vec<usize>,
    /// Activation of the hidden layers.
    pub activation: Activation,
    /// Epochs (the report's `epoch`).
    #[serde(alias = "epoch")]
    pub epochs: usize,
    /// SGD's learning rate (the report's `eta`).
    #[serde(alias = "eta")]
    pub learning_rate: f64,
    /// Initial weights are drawn from N(0, 1) times this (the report's `beta`).
    #[serde(alias = "beta")]
    pub init_scale: f32,
    /// L2 coefficient: the loss adds `l2 * sum(w^2)` (the report's `alpha`).
    #[serde(alias = "alpha")]
    pub l2: f64,
    /// SGD's momentum (the report's `mu`).
    #[serde(alias = "mu")]
    pub momentum: f64,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Print a line per epoch.
    pub verbose: bool,
    /// Classification or regression.
    pub task: Task,
    /// Seed of the initial weights, the shuffle and dropout.
    #[serde(default)]
    pub seed: u64,
}

impl Mlp {
    /// An MLP with everyday defaults (one hidden layer of 10 ReLU units, 100 epochs,
    /// learning rate 0.01, no momentum, init scale 0.3, no L2, batch 32): the values a grid
    /// that does not name a parameter gets.
    pub fn new(task: Task, seed: u64) -> Self {
        Mlp {
            hidden_layers: vec![10],
            activation: Activation::Relu,
            epochs: 100,
            learning_rate: 0.01,
            init_scale: 0.3,
            l2: 0.0,
            momentum: 0.0,
            batch_size: 32,
            verbose: false,
            task,
            seed,
        }
    }

    /// The layer list for inputs of `input` shape and `outputs` classes or targets.
    pub fn spec(&self, input: Shape, outputs: usize) -> ModelSpec {
        let mut layers = Vec::new();
        if matches!(input, Shape::Image { .. }) {
            layers.push(Layer::Flatten);
        }
        for &units in &self.hidden_layers {
            layers.push(Layer::Dense {
                units,
                activation: self.activation,
            });
        }
        layers.push(Layer::Dense {
            units: outputs,
            activation: match self.task {
                Task::Classification => Activation::Softmax,
                Task::Regression => Activation::Linear,
            },
        });
        let hidden: Vec<String> = self.hidden_layers.iter().map(|u| u.to_string()).collect();
        ModelSpec::new(format!("mlp_{}", hidden.join("_")), input, layers).with_init(Init::Normal {
            beta: self.init_scale,
        })
    }

    /// The training configuration these hyperparameters mean.
    pub fn fit_config(&self) -> FitConfig {
        let mut config = FitConfig::new(
            self.epochs,
            self.batch_size,
            OptimizerSpec::sgd(self.learning_rate, self.momentum, false),
            match self.task {
                Task::Classification => Loss::CrossEntropy,
                Task::Regression => Loss::Mse,
            },
        );
        config.l2 = self.l2;
        config.seed = self.seed;
        config.verbose = if self.verbose {
            Verbosity::Epoch
        } else {
            Verbosity::Silent
        };
        config
    }

    /// Inputs standardised; regression targets standardised too (predictions come back in
    /// the target's units).
    pub fn preprocessing(&self) -> Preprocessing {
        Preprocessing {
            inputs: InputScaling::Standard,
            scale_targets: self.task == Task::Regression,
        }
    }

    /// Fits on raw `train` (standardised here), validating on `validation` each epoch.
    pub fn fit(
        &self,
        train: &Samples,
        validation: Option<&Samples>,
        device: &Device,
    ) -> Result<(TrainedModel, History), ModelError> {
        self.fit_watching(train, validation, HeldOut::Validation, device)
    }

    /// As [`Mlp::fit`], with `watched` scored each epoch and named `held_out` in the progress
    /// lines: the test set watched for the report's curves is printed as test, not val.
    pub fn fit_watching(
        &self,
        train: &Samples,
        watched: Option<&Samples>,
        held_out: HeldOut,
        device: &Device,
    ) -> Result<(TrainedModel, History), ModelError> {
        let spec = self.spec_for(train)?;
        let network = Network::new(&spec, self.seed, device).map_err(|e| ModelError::Input(e.0))?;
        let mut config = self.fit_config();
        config.held_out = held_out;
        train_model(
            network,
            train,
            watched,
            self.preprocessing(),
            &config,
            device,
        )
    }
}

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use data::{ClassNames, Targets};

    fn mlp(task: Task) -> Mlp {
        Mlp {
            hidden_layers: vec![10, 10, 5],
            activation: Activation::Relu,
            epochs: 5,
            learning_rate: 0.01,
            init_scale: 0.3,
            l2: 0.001,
            momentum: 0.8,
            batch_size: 16,
            verbose: false,
            task,
            seed: 0,
        }
    }

    #[test]
    fn spec_follows_the_hyperparameters() {
        let spec = mlp(Task::Classification).spec(Shape::Flat(4), 3);
        assert_eq!(
            spec.param_counts().unwrap().0,
            4 * 10 + 10 + 10 * 10 + 10 + 10 * 5 + 5 + 5 * 3 + 3
        );
        assert_eq!(spec.init, Init::Normal { beta: 0.3 });
        assert_eq!(spec.to_text().lines().last(), Some("dense(3, softmax)"));
        let image = mlp(Task::Classification).spec(
            Shape::Image {
                channels: 1,
                height: 2,
                width: 2,
            },
            2,
        );
        assert_eq!(image.layers[0], Layer::Flatten);
        let config = mlp(Task::Regression).fit_config();
        assert_eq!(config.loss, Loss::Mse);
        assert_eq!(config.optimizer, OptimizerSpec::sgd(0.01, 0.8, false));
    }

    #[test]
    fn task_must_match_the_targets() {
        let data = Samples::new(
            vec![0.0, 1.0],
            vec![1],
            vec![],
            Targets::Classes {
                labels: vec![0, 1],
                classes: ClassNames::numbered(2),
            },
        )
        .unwrap();
        let err = mlp(Task::Regression)
            .fit(&data, None, &Device::flex())
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not match"), "{err}");
    }
}
