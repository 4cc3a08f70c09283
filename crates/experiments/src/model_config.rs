//! Experiment files for tables of Keras-style models (the reports' CNNs and Adam/dropout
//! MLPs): named models, and grids over a layer template, each row with the report's
//! figures. Training settings merge from the file, the section, the model and the grid
//! trial, in that order, so a row changes only what the report changed.

use std::fmt::Write as _;

use models::{Init, ModelSpec, Shape};
use serde::Deserialize;
use serde_json::{Map, Value};
use trainer::{
    EarlyStopping, FitConfig, InputScaling, Loss, Monitor, OptimizerSpec, ReduceLrOnPlateau,
    Verbosity,
};

use crate::config::QuickConfig;

/// Names a published row may give its figures under. Anything else in a row is a
/// parameter of the grid.
pub const FIGURES: [&str; 10] = [
    "label",
    "epochs",
    "train_accuracy",
    "train_loss",
    "val_accuracy",
    "val_loss",
    "test_accuracy",
    "test_loss",
    "lr",
    "test_accuracy_folds",
];

/// The key under which a published row or model gives the reason why the report's figure
/// lies above this project's mean over seeds by more than two standard deviations (the
/// results book prints it beside the row); neither a figure nor a parameter.
pub const BELOW_REPORT: &str = "below_report";

/// A published grid row's report figures and its parameters ([`BELOW_REPORT`] is neither).
/// A grid dimension is a parameter even where its name is a figure's (report 001's Table 5
/// varies `epochs`).
pub fn split_published(
    mut row: Map<String, Value>,
    dims: &[String],
) -> (Map<String, Value>, Map<String, Value>) {
    row.remove(BELOW_REPORT);
    row.into_iter()
        .partition(|(k, _)| !dims.contains(k) && FIGURES.contains(&k.as_str()))
}

/// A report table (or several) of Keras-style models.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelTableConfig {
    /// The caption of the whole run (default: the file's name).
    #[serde(default)]
    pub title: String,
    /// Which report it comes from (default: none).
    #[serde(default)]
    pub report: String,
    /// The dataset: a name, or a `[dataset]` table of your own data.
    pub dataset: crate::config::DatasetConfig,
    /// Choices made where the report is silent, printed under the tables.
    #[serde(default)]
    pub notes: Vec<String>,
    /// The split into training and test data.
    pub split: data::TestSplit,
    /// What ranks a grid section's trials (`layout = "talos"` sections always rank on
    /// validation): `validation` (the default; every trial needs a `validation` part) or
    /// `test` (only where the report ranked so).
    #[serde(default)]
    pub rank: search::RankBy,
    /// Training settings of every model (sections, models and grid trials override them).
    #[serde(default)]
    pub training: toml::Table,
    /// The tables.
    #[serde(rename = "section")]
    pub sections: Vec<Section>,
    /// The `--quick` scale.
    #[serde(default)]
    pub quick: QuickConfig,
}

/// One table of the report: a list of named models, or a grid over a layer template.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Section {
    /// The table's caption (unique in the file).
    pub name: String,
    /// Training settings for this section.
    #[serde(default)]
    pub training: toml::Table,
    /// Named models (each with its layers and the report's figures).
    #[serde(default, rename = "model")]
    pub models: Vec<ModelEntry>,
    /// Layer template of a grid: `{name}` is replaced by the trial's value of `name`.
    #[serde(default)]
    pub layers: Option<String>,
    /// The grid: named lists of values. A name that is a training setting (`batch_size`,
    /// `optimizer`, `learning_rate`, `epochs`, ...) sets it; every name fills the template.
    #[serde(default)]
    pub grid: toml::Table,
    /// The report's rows of a grid: the parameters and the figures.
    #[serde(default)]
    pub published: Vec<toml::Table>,
    /// Table layout: `report` (the report's rows beside ours, then the best trials) or
    /// `talos` (report 002's Talos columns, ranked by validation accuracy).
    #[serde(default)]
    pub layout: Layout,
    /// Evaluate each model on this many stratified folds of the test set (mean and spread).
    #[serde(default)]
    pub test_folds: usize,
    /// Save every model of the section with its history and pictures (default: named
    /// models are saved, grid trials only keep their history).
    #[serde(default)]
    pub save: Option<bool>,
}

/// How a section's table is laid out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// The report's rows with this project's figures beside them.
    #[default]
    Report,
    /// Report 002's Talos table: round_epochs, loss, accuracy, val_loss, val_accuracy, lr.
    Talos,
}

/// A named model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    /// The report's name for it.
    pub name: String,
    /// Its layers in the text form (`conv(16, 3x3, same, relu); maxpool(2); ...`).
    pub layers: String,
    /// Training settings for this model.
    #[serde(default)]
    pub training: toml::Table,
    /// The report's figures for it.
    #[serde(default)]
    pub published: toml::Table,
    /// Print its per-class classification report in the table.
    #[serde(default)]
    pub classification_report: bool,
    /// The report's classification report of it, printed beside this project's.
    #[serde(default)]
    pub published_report: Option<String>,
    /// Why the report's figure lies above this project's mean over seeds by more than two
    /// standard deviations, where it does (the results book prints it beside the row).
    #[serde(default)]
    pub below_report: Option<String>,
}

/// The optimizer of a run: a name with `learning_rate` (and `momentum`, `nesterov`), or a
/// full specification (`{ name = "sgd", lr = 0.01, momentum = 0.9 }`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OptimizerChoice {
    /// Keras' name: adam, amsgrad, nadam, sgd, rmsprop, adagrad, adadelta.
    Name(String),
    /// Every setting given.
    Spec(OptimizerSpec),
}

fn pixels() -> InputScaling {
    InputScaling::Pixels
}

/// Training settings after merging (Keras' defaults where nothing is said).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// The update rule.
    #[serde(default = "default_optimizer")]
    pub optimizer: OptimizerChoice,
    /// Learning rate when `optimizer` is a name (default: Keras' for that optimizer).
    #[serde(default)]
    pub learning_rate: Option<f64>,
    /// Momentum of a named `sgd`.
    #[serde(default)]
    pub momentum: f64,
    /// Nesterov momentum of a named `sgd`.
    #[serde(default)]
    pub nesterov: bool,
    /// Items per step (Keras' default 32).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Passes over the data (at most, with early stopping).
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Fraction of the training data held out (class-stratified) to validate every epoch;
    /// 0 validates on nothing.
    #[serde(default)]
    pub validation: f64,
    /// Input scaling: `pixels` (divide by 255), `standard`, `min_max` or `none`. A study
    /// that says nothing gets `pixels`, the reports' image scaling (the library's own default
    /// is `standard`).
    #[serde(default = "pixels")]
    pub inputs: InputScaling,
    /// Initial weights of dense and convolution layers.
    #[serde(default)]
    pub init: Init,
    /// L2 coefficient on the weights.
    #[serde(default)]
    pub l2: f64,
    /// Keras' EarlyStopping.
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Keras' ReduceLROnPlateau.
    #[serde(default)]
    pub reduce_lr: Option<ReduceLrOnPlateau>,
}

fn default_optimizer() -> OptimizerChoice {
    OptimizerChoice::Name("adam".into())
}

fn default_batch_size() -> usize {
    32
}

fn default_epochs() -> usize {
    10
}

/// The training settings' names (the grid names that set training rather than layers).
pub const TRAINING_KEYS: [&str; 12] = [
    "optimizer",
    "learning_rate",
    "momentum",
    "nesterov",
    "batch_size",
    "epochs",
    "validation",
    "inputs",
    "init",
    "l2",
    "early_stopping",
    "reduce_lr",
];

impl Training {
    /// Merges the layers of settings (later ones win), then the training values of a grid
    /// trial's parameters, and reads the result. A setting's name must be known; a trial's
    /// other parameters fill the layer template instead.
    pub fn merged(
        layers: &[&Map<String, Value>],
        trial: Option<&Map<String, Value>>,
    ) -> Result<Self, crate::Error> {
        let mut all = Map::new();
        for layer in layers {
            for (k, v) in layer.iter() {
                if !TRAINING_KEYS.contains(&k.as_str()) {
                    return Err(crate::Error::from(format!(
                        "training: unknown setting {k:?} (known: {})",
                        TRAINING_KEYS.join(", ")
                    )));
                }
                all.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in trial.into_iter().flatten() {
            if TRAINING_KEYS.contains(&k.as_str()) {
                all.insert(k.clone(), v.clone());
            }
        }
        let training: Training =
            serde_json::from_value(Value::Object(all)).map_err(|e| format!("training: {e}"))?;
        if !(0.0..1.0).contains(&training.validation) {
            return Err(crate::Error::from(format!(
                "training: validation {} must be in [0, 1)",
                training.validation
            )));
        }
        // Everything `fit` would refuse, refused now, before anything trains.
        training
            .fit_config(0, Verbosity::Silent)
            .map_err(|e| format!("training: {e}"))?;
        Ok(training)
    }

    /// The optimizer with its learning rate.
    pub fn optimizer_spec(&self) -> Result<OptimizerSpec, crate::Error> {
        let name = match &self.optimizer {
            OptimizerChoice::Spec(spec) => return Ok(spec.clone()),
            OptimizerChoice::Name(name) => name.to_ascii_lowercase(),
        };
        let lr = |default: f64| self.learning_rate.unwrap_or(default);
        Ok(match name.as_str() {
            "adam" => OptimizerSpec::adam(lr(0.001)),
            "amsgrad" => match OptimizerSpec::adam(lr(0.001)) {
                OptimizerSpec::Adam {
                    lr,
                    beta_1,
                    beta_2,
                    epsilon,
                    ..
                } => OptimizerSpec::Adam {
                    lr,
                    beta_1,
                    beta_2,
                    epsilon,
                    amsgrad: true,
                },
                other => other,
            },
            "nadam" => OptimizerSpec::nadam(lr(0.001)),
            "sgd" => OptimizerSpec::sgd(lr(0.01), self.momentum, self.nesterov),
            "rmsprop" => OptimizerSpec::rmsprop(lr(0.001)),
            "adagrad" => OptimizerSpec::adagrad(lr(0.001)),
            "adadelta" => OptimizerSpec::adadelta(lr(0.001)),
            other => {
                return Err(crate::Error::from(format!(
                    "training: unknown optimizer {other:?} (adam, amsgrad, nadam, sgd, rmsprop, \
                     adagrad, adadelta, or a table with name and lr)"
                )));
            }
        })
    }

    /// The `fit` settings (loss: cross-entropy; the seed fixes shuffle and dropout).
    pub fn fit_config(&self, seed: u64, verbose: Verbosity) -> Result<FitConfig, crate::Error> {
        let mut config = FitConfig::new(
            self.epochs,
            self.batch_size,
            self.optimizer_spec()?,
            Loss::CrossEntropy,
        );
        config.l2 = self.l2;
        config.seed = seed;
        config.early_stopping = self.early_stopping.clone();
        config.reduce_lr = self.reduce_lr.clone();
        config.verbose = verbose;
        config.validate(self.validation > 0.0)?;
        Ok(config)
    }

    /// The settings in the canonical form of result keys (explicit names; the optimizer
    /// with every one of its parameters, after Keras' defaults are filled in).
    pub fn key_config(&self) -> Result<Value, crate::Error> {
        let value = |v: Result<Value, serde_json::Error>| v.map_err(|e| format!("training: {e}"));
        Ok(serde_json::json!({
            "optimizer": value(serde_json::to_value(self.optimizer_spec()?))?,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "validation": self.validation,
            "inputs": value(serde_json::to_value(self.inputs))?,
            "init": value(serde_json::to_value(self.init))?,
            "l2": self.l2,
            "early_stopping": value(serde_json::to_value(&self.early_stopping))?,
            "reduce_lr": value(serde_json::to_value(&self.reduce_lr))?,
        }))
    }

    /// A short description: `adam(lr 0.001), batch 128, 100 epochs, validation 0.2, ...`.
    pub fn describe(&self) -> String {
        let mut text = match self.optimizer_spec() {
            Ok(spec) => spec.label(),
            Err(e) => e.to_string(),
        };
        let _ = write!(text, ", batch {}, {} epochs", self.batch_size, self.epochs);
        if self.validation > 0.0 {
            let _ = write!(text, ", validation {}", self.validation);
        }
        if let Some(e) = &self.early_stopping {
            let _ = write!(
                text,
                ", early stopping on {} (patience {}{})",
                monitor_name(e.monitor),
                e.patience,
                if e.restore_best_weights {
                    ", best weights restored"
                } else {
                    ""
                }
            );
        }
        if let Some(r) = &self.reduce_lr {
            let _ = write!(
                text,
                ", ReduceLROnPlateau on {} (patience {}, factor {}, cooldown {})",
                monitor_name(r.monitor),
                r.patience,
                r.factor,
                r.cooldown
            );
        }
        text
    }
}

/// Keras' name of a monitored quantity.
fn monitor_name(monitor: Monitor) -> &'static str {
    match monitor {
        Monitor::Loss => "loss",
        Monitor::Score => "accuracy",
        Monitor::ValLoss => "val_loss",
        Monitor::ValScore => "val_accuracy",
    }
}

/// A value as template text: lists as `a, b`, strings unquoted.
fn template_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(template_text)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// Expands every `{name|pattern}`: the pattern once per item of the list `name`, `#`
/// replaced by the item, joined by `; ` (`{architecture|dense(#, relu)}` with `[512, 256]`
/// gives `dense(512, relu); dense(256, relu)`).
fn expand_repeats(template: &str, params: &Map<String, Value>) -> Result<String, crate::Error> {
    let mut text = template.to_string();
    while let Some((start, bar)) = find_repeat(&text) {
        let name = &text[start + 1..bar];
        let mut depth = 1;
        let mut end = None;
        for (i, c) in text[bar + 1..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(bar + 1 + i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end.ok_or_else(|| format!("layers: {{{name}|... has no closing brace"))?;
        let pattern = &text[bar + 1..end];
        let items = match params.get(name) {
            Some(Value::Array(items)) => items.clone(),
            Some(other) => vec![other.clone()],
            None => {
                return Err(crate::Error::from(format!(
                    "layers: {{{name}|...}} has no value in the grid"
                )));
            }
        };
        let expanded = items
            .iter()
            .map(|item| pattern.replace('#', &template_text(item)))
            .collect::<Vec<_>>()
            .join("; ");
        text = format!("{}{expanded}{}", &text[..start], &text[end + 1..]);
    }
    Ok(text)
}

/// The first `{name|` in `text`: the positions of its `{` and `|`.
fn find_repeat(text: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(open) = text[from..].find('{').map(|i| i + from) {
        let name_len = text[open + 1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(0);
        let after = open + 1 + name_len;
        if name_len > 0 && text[after..].starts_with('|') {
            return Some((open, after));
        }
        from = open + 1;
    }
    None
}

/// Fills a layer template with a trial's values: `{name|pattern}` repeats (see
/// `expand_repeats`), then every `{name}` becomes the value (lists as `a, b`), repeating
/// so that a value may itself hold placeholders; a placeholder left over is an error.
pub fn fill_template(template: &str, params: &Map<String, Value>) -> Result<String, crate::Error> {
    let mut text = expand_repeats(template, params)?;
    for _ in 0..4 {
        let before = text.clone();
        for (name, value) in params {
            text = text.replace(&format!("{{{name}}}"), &template_text(value));
        }
        text = expand_repeats(&text, params)?;
        if text == before {
            break;
        }
    }
    if let Some(start) = text.find('{') {
        let rest = &text[start..];
        let end = rest.find('}').map_or(rest.len(), |e| e + 1);
        return Err(crate::Error::from(format!(
            "layers: {} has no value in the grid",
            &rest[..end]
        )));
    }
    Ok(text)
}

/// Parses a model's layers for items of shape `input`, naming the model in any error.
pub fn model_spec(
    name: &str,
    input: Shape,
    layers: &str,
    init: Init,
) -> Result<ModelSpec, crate::Error> {
    let spec = ModelSpec::parse(name, input, layers)
        .map_err(|e| format!("{name}: {}", e.0))?
        .with_init(init);
    spec.layer_infos().map_err(|e| format!("{name}: {}", e.0))?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn templates_fill_nested_values_and_name_missing_ones() {
        let params = map(json!({"hidden": "dense({units}, relu); dropout({dropout})",
                                "units": 512, "dropout": 0.25}));
        assert_eq!(
            fill_template("flatten; {hidden}; dense(10, softmax)", &params).unwrap(),
            "flatten; dense(512, relu); dropout(0.25); dense(10, softmax)"
        );
        let err = fill_template("conv({filters}, 3x3)", &params).unwrap_err();
        assert!(err.to_string().contains("{filters}"), "{err}");
        let params = map(json!({"architecture": [512, 256], "dropout": 0.3}));
        assert_eq!(
            fill_template(
                "flatten; {architecture|dense(#, relu); dropout({dropout})}",
                &params
            )
            .unwrap(),
            "flatten; dense(512, relu); dropout(0.3); dense(256, relu); dropout(0.3)"
        );
        let err = fill_template("{layers|dense(#)}", &params).unwrap_err();
        assert!(err.to_string().contains("layers"), "{err}");
    }

    #[test]
    fn later_settings_win_and_unknown_names_are_refused() {
        let file = map(json!({"batch_size": 128, "epochs": 100, "optimizer": "adam"}));
        let trial = map(json!({"batch_size": 256, "filters": 8}));
        let t = Training::merged(&[&file], Some(&trial)).unwrap();
        assert!(
            Training::merged(&[&file, &trial], None)
                .unwrap_err()
                .to_string()
                .contains("filters")
        );
        assert_eq!((t.batch_size, t.epochs), (256, 100));
        assert_eq!(t.optimizer_spec().unwrap(), OptimizerSpec::adam(0.001));
        let sgd = map(
            json!({"optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9,
                                           "nesterov": true}}),
        );
        assert_eq!(
            Training::merged(&[&sgd], None)
                .unwrap()
                .optimizer_spec()
                .unwrap(),
            OptimizerSpec::sgd(0.01, 0.9, true)
        );
        let bad = map(json!({"optimizer": "adamw"}));
        assert!(
            Training::merged(&[&bad], None)
                .unwrap_err()
                .to_string()
                .contains("adamw")
        );
        let bad = map(json!({"validation": 1.5}));
        assert!(
            Training::merged(&[&bad], None)
                .unwrap_err()
                .to_string()
                .contains("validation")
        );
        let bad = map(json!({"early_stopping": {"monitor": "val_accuracy", "patience": 3}}));
        let err = Training::merged(&[&bad], None).unwrap_err();
        assert!(err.to_string().contains("validation"), "{err}");
        for (field, value) in [
            ("learning_rate", json!(-0.1)),
            ("learning_rate", json!(0.0)),
            ("momentum", json!(1.5)),
            ("l2", json!(-1.0)),
            ("epochs", json!(0)),
            ("batch_size", json!(0)),
        ] {
            let mut bad = map(json!({"optimizer": "sgd"}));
            bad.insert(field.into(), value.clone());
            assert!(
                Training::merged(&[&bad], None).is_err(),
                "{field} = {value} was accepted"
            );
        }
    }
}
