//! A trained model as a user holds it: the network, the preprocessing fitted on its
//! training data, and what its outputs mean. It predicts on raw inputs, scores, evaluates,
//! and saves to (and loads from) a folder: `model.json` (layers, task, preprocessing) and
//! `weights.safetensors` (Burn's store; readable by PyTorch's `safetensors` too).

use std::path::Path;

use burn::module::Module;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use data::{ClassNames, FeatureScaler, Samples, TargetScaler, Targets};
use models::{ModelSpec, Network};
use serde::{Deserialize, Serialize};

use crate::fit::{
    Evaluation, FitConfig, FitError, FitResult, History, Loss, evaluate, fit, predict_outputs,
};
use crate::metrics::{
    ClassificationReport, accuracy, argmax_rows, log_loss, mean_squared_error, r2_score,
};

/// Version of the saved-model layout.
const FORMAT: u32 = 1;
/// File holding the description.
pub const CARD_FILE: &str = "model.json";
/// File holding the weights.
pub const WEIGHTS_FILE: &str = "weights.safetensors";

/// What the model's outputs mean: class names, or target names with their scaling (the
/// card's `task`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outputs {
    /// Classes, with their names.
    Classification {
        /// Names in index order.
        classes: ClassNames,
    },
    /// Real values; the network predicts them standardised when `scaler` is set.
    Regression {
        /// Target column names.
        names: Vec<String>,
        /// Standardisation of the targets fitted on the training data.
        scaler: Option<TargetScaler>,
    },
}

/// How inputs are scaled before the network sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InputScaling {
    /// As they are.
    None,
    /// Divided by 255 (8-bit pixels to [0, 1]); wrong for anything but 8-bit images.
    Pixels,
    /// Per-feature standardisation fitted on the training data (the default: right for
    /// tables, and harmless for images).
    #[default]
    Standard,
    /// Per-feature min-max scaling fitted on the training data.
    MinMax,
}

/// Preprocessing to fit on the training data. The default standardises the features and
/// regression targets (as scikit-learn users do with `StandardScaler`); predictions come
/// back in the target's units. [`Preprocessing::for_data`] picks pixel scaling for 8-bit
/// images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// Input scaling.
    pub inputs: InputScaling,
    /// Standardise regression targets (predictions come back in the target's units).
    pub scale_targets: bool,
}

impl Default for Preprocessing {
    fn default() -> Self {
        Preprocessing {
            inputs: InputScaling::Standard,
            scale_targets: true,
        }
    }
}

impl Preprocessing {
    /// What suits `train`: 8-bit images (items of shape `[channels, height, width]` whose
    /// every value is a whole number in 0..=255) divided by 255, anything else standardised;
    /// regression targets standardised.
    pub fn for_data(train: &Samples) -> Self {
        let eight_bit = train.shape.len() == 3
            && train
                .features
                .iter()
                .all(|v| (0.0..=255.0).contains(v) && v.fract() == 0.0);
        Preprocessing {
            inputs: if eight_bit {
                InputScaling::Pixels
            } else {
                InputScaling::Standard
            },
            scale_targets: true,
        }
    }
}

/// Everything about a trained model except its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    /// Layout version of the saved files.
    pub format: u32,
    /// The layers.
    pub spec: ModelSpec,
    /// What the outputs mean.
    pub task: Outputs,
    /// Input scaling fitted on the training data.
    pub input_scaler: Option<FeatureScaler>,
    /// How the columns of a user's table became the inputs (one-hot, imputed and dropped
    /// columns), for a model trained from a CSV by the `train` binary: prediction reads new
    /// rows of the same table through it. Absent for the reports' datasets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<data::tabular::TableEncoder>,
}

/// Errors of saving, loading and using a trained model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Inputs that do not fit the model.
    #[error("{0}")]
    Input(String),
    /// Training failed to start.
    #[error(transparent)]
    Fit(#[from] FitError),
}

fn file_error(path: &Path, message: String) -> ModelError {
    ModelError::File {
        path: path.display().to_string(),
        message,
    }
}

/// What a model predicts for a set of inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    /// Class probabilities (`items x classes`, row-major) and the most likely class of each.
    Classes {
        /// Probabilities.
        probabilities: Vec<f32>,
        /// Most likely class indices.
        labels: Vec<usize>,
        /// Class names.
        classes: ClassNames,
    },
    /// Values in the target's own units (`items x outputs`, row-major).
    Values(Vec<f32>),
}

/// A network with its preprocessing and the meaning of its outputs.
#[derive(Debug)]
pub struct TrainedModel {
    /// Description and fitted preprocessing.
    pub card: ModelCard,
    /// The weights.
    pub network: Network,
    device: Device,
}

fn fit_scaler(scaling: InputScaling, train: &Samples) -> Result<Option<FeatureScaler>, ModelError> {
    let wrap =
        |r: data::Result<FeatureScaler>| r.map(Some).map_err(|e| ModelError::Input(e.to_string()));
    match scaling {
        InputScaling::None => Ok(None),
        InputScaling::Pixels => Ok(Some(FeatureScaler::pixels())),
        InputScaling::Standard => wrap(FeatureScaler::fit_standard(train)),
        InputScaling::MinMax => wrap(FeatureScaler::fit_min_max(train)),
    }
}

/// Fits preprocessing on `train`, trains `network` on the prepared data, and returns the
/// trained model with its history.
pub fn train_model(
    network: Network,
    train: &Samples,
    validation: Option<&Samples>,
    preprocessing: Preprocessing,
    config: &FitConfig,
    device: &Device,
) -> Result<(TrainedModel, History), ModelError> {
    let card = ModelCard::fit(network.spec().clone(), train, preprocessing)?;
    let train_ready = card.prepare(train, true)?;
    let val_ready = validation.map(|v| card.prepare(v, true)).transpose()?;
    let FitResult { network, history } =
        fit(network, &train_ready, val_ready.as_ref(), config, device)?;
    Ok((
        TrainedModel {
            card,
            network,
            device: device.clone(),
        },
        history,
    ))
}

impl ModelCard {
    /// The card of a model with layers `spec`, its preprocessing fitted on `train`.
    pub fn fit(
        spec: ModelSpec,
        train: &Samples,
        preprocessing: Preprocessing,
    ) -> Result<Self, ModelError> {
        let input_scaler = fit_scaler(preprocessing.inputs, train)?;
        let task = match &train.targets {
            Targets::Classes { classes, .. } => Outputs::Classification {
                classes: classes.clone(),
            },
            Targets::Values { names, .. } => Outputs::Regression {
                names: names.clone(),
                scaler: if preprocessing.scale_targets {
                    Some(TargetScaler::fit(train).map_err(|e| ModelError::Input(e.to_string()))?)
                } else {
                    None
                },
            },
        };
        Ok(ModelCard {
            format: FORMAT,
            spec,
            task,
            input_scaler,
            table: None,
        })
    }

    /// Applies the fitted preprocessing to raw samples (and, with `targets`, standardises
    /// regression targets).
    pub fn prepare(&self, raw: &Samples, targets: bool) -> Result<Samples, ModelError> {
        let expected = self.spec.input.len();
        if raw.item_len() != expected {
            return Err(ModelError::Input(format!(
                "inputs have {} values per item, the model expects {expected}",
                raw.item_len()
            )));
        }
        let mut ready = raw.clone();
        if let Some(scaler) = &self.input_scaler {
            scaler
                .transform(&mut ready)
                .map_err(|e| ModelError::Input(e.to_string()))?;
        }
        if targets
            && let Outputs::Regression {
                scaler: Some(scaler),
                ..
            } = &self.task
        {
            scaler.transform(&mut ready);
        }
        Ok(ready)
    }
}

impl TrainedModel {
    /// A trained model from its card and network, predicting on `device`.
    pub fn new(card: ModelCard, network: Network, device: Device) -> Self {
        TrainedModel {
            card,
            network,
            device,
        }
    }

    /// Applies the fitted preprocessing to raw samples; see [`ModelCard::prepare`].
    pub fn prepare(&self, raw: &Samples, targets: bool) -> Result<Samples, ModelError> {
        self.card.prepare(raw, targets)
    }

    /// Predictions for raw samples (their targets are ignored).
    pub fn predict(&self, raw: &Samples) -> Result<Predictions, ModelError> {
        let ready = self.prepare(raw, false)?;
        let outputs = predict_outputs(&self.network, &ready, &self.device);
        Ok(match &self.card.task {
            Outputs::Classification { classes } => Predictions::Classes {
                labels: argmax_rows(&outputs, classes.len()),
                probabilities: outputs,
                classes: classes.clone(),
            },
            Outputs::Regression { scaler, .. } => {
                let mut values = outputs;
                if let Some(s) = scaler {
                    s.inverse(&mut values);
                }
                Predictions::Values(values)
            }
        })
    }

    /// Accuracy, or R² in the target's own units.
    pub fn score(&self, raw: &Samples) -> Result<f64, ModelError> {
        match (self.predict(raw)?, &raw.targets) {
            (Predictions::Classes { labels, .. }, Targets::Classes { labels: truth, .. }) => {
                Ok(accuracy(&labels, truth))
            }
            (
                Predictions::Values(values),
                Targets::Values {
                    values: truth,
                    width,
                    ..
                },
            ) => Ok(r2_score(&values, truth, *width)),
            _ => Err(ModelError::Input(
                "the targets do not match the model's task".into(),
            )),
        }
    }

    /// Mean squared error in the target's own units (regression only).
    pub fn mse(&self, raw: &Samples) -> Result<f64, ModelError> {
        match (self.predict(raw)?, &raw.targets) {
            (Predictions::Values(values), Targets::Values { values: truth, .. }) => {
                Ok(mean_squared_error(&values, truth))
            }
            _ => Err(ModelError::Input(
                "mean squared error needs a regression model".into(),
            )),
        }
    }

    /// Loss (on prepared data, as in training) and score.
    pub fn evaluate(&self, raw: &Samples) -> Result<Evaluation, ModelError> {
        let ready = self.prepare(raw, true)?;
        let loss = match self.card.task {
            Outputs::Classification { .. } => Loss::CrossEntropy,
            Outputs::Regression { .. } => Loss::Mse,
        };
        Ok(evaluate(&self.network, &ready, loss, &self.device))
    }

    /// scikit-learn's classification report and the log loss (classification only).
    pub fn classification_report(
        &self,
        raw: &Samples,
    ) -> Result<(ClassificationReport, f64), ModelError> {
        match (self.predict(raw)?, &raw.targets) {
            (
                Predictions::Classes {
                    probabilities,
                    labels,
                    classes,
                },
                Targets::Classes { labels: truth, .. },
            ) => Ok((
                ClassificationReport::new(&labels, truth, &classes.0),
                log_loss(&probabilities, classes.len(), truth),
            )),
            _ => Err(ModelError::Input(
                "a classification report needs class targets".into(),
            )),
        }
    }

    /// Writes `model.json` and `weights.safetensors` into `dir` (created if needed).
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e.to_string()))?;
        let card_path = dir.join(CARD_FILE);
        let json = serde_json::to_string_pretty(&self.card)
            .map_err(|e| file_error(&card_path, e.to_string()))?;
        std::fs::write(&card_path, json).map_err(|e| file_error(&card_path, e.to_string()))?;
        let weights = dir.join(WEIGHTS_FILE);
        let mut store = SafetensorsStore::from_file(&weights).overwrite(true);
        self.network
            .save_into(&mut store)
            .map_err(|e| file_error(&weights, e.to_string()))?;
        // The store writes through a private temporary file (mode 0600); give the weights
        // the mode every other file of the folder has (the user's umask), as model.json.
        let mode = std::fs::metadata(&card_path)
            .map_err(|e| file_error(&card_path, e.to_string()))?
            .permissions();
        std::fs::set_permissions(&weights, mode)
            .map_err(|e| file_error(&weights, e.to_string()))?;
        Ok(())
    }

    /// Loads a model saved by [`TrainedModel::save`] onto `device`.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, ModelError> {
        let card_path = dir.join(CARD_FILE);
        let text = std::fs::read_to_string(&card_path)
            .map_err(|e| file_error(&card_path, e.to_string()))?;
        let card: ModelCard = serde_json::from_str(&text)
            .map_err(|e| file_error(&card_path, format!("not a saved model description: {e}")))?;
        if card.format != FORMAT {
            return Err(file_error(
                &card_path,
                format!(
                    "format {} is not supported (this build reads {FORMAT})",
                    card.format
                ),
            ));
        }
        check_outputs(&card).map_err(|why| file_error(&card_path, why))?;
        let mut network =
            Network::new(&card.spec, 0, device).map_err(|e| file_error(&card_path, e.0))?;
        let weights = dir.join(WEIGHTS_FILE);
        if !weights.is_file() {
            return Err(file_error(&weights, "no such file".into()));
        }
        let mut store = SafetensorsStore::from_file(&weights);
        let result = network
            .load_from(&mut store)
            .map_err(|e| file_error(&weights, format!("cannot load weights: {e}")))?;
        if !result.errors.is_empty() || !result.missing.is_empty() {
            return Err(file_error(
                &weights,
                format!(
                    "weights do not match the model in {CARD_FILE}: {} missing, {} errors ({})",
                    result.missing.len(),
                    result.errors.len(),
                    result
                        .errors
                        .iter()
                        .map(|e| format!("{e:?}"))
                        .chain(result.missing.iter().map(|m| format!("missing {}", m.0)))
                        .take(3)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            ));
        }
        Ok(TrainedModel {
            card,
            network: network.valid(),
            device: device.clone(),
        })
    }
}

/// A saved description whose task disagrees with its layers (three class names for a
/// model with four outputs, say) would label predictions wrongly: refused.
fn check_outputs(card: &ModelCard) -> Result<(), String> {
    let outputs = card.spec.output_shape().map_err(|e| e.0)?.len();
    let (what, expected) = match &card.task {
        Outputs::Classification { classes } => ("class names", classes.len()),
        Outputs::Regression { names, .. } => ("target names", names.len()),
    };
    if outputs == expected {
        Ok(())
    } else {
        Err(format!(
            "it lists {expected} {what}, but its last layer has {outputs} outputs"
        ))
    }
}
