//! Grids over report 001's MLP (`trainer::Mlp`): a trial's parameters carry the report's
//! names, as the study files and grid files write them (`hidden_layer`, `activation`,
//! `epoch`, `eta`, `beta`, `alpha`, `mu`, `batch_size`, `seed`), and stop here: they are read
//! into the MLP's fields (`hidden_layers`, `epochs`, `learning_rate`, `init_scale`, `l2`,
//! `momentum`); what a grid leaves out comes from the search's defaults. Trials
//! that share layers, activation, batch size and epochs train together as one stacked
//! model (`Mlp::fit_stacked`), which is what makes a 540-trial grid of tiny MLPs fast.

use burn::tensor::Device;
use data::Samples;
use models::Activation;
use trainer::{History, Mlp, Outcome, Task, TrainedModel};

use serde_json::{Value, json};

use crate::error::SearchError;
use crate::grid::Trial;
use crate::runner::{SearchOptions, SearchSummary, TrialOutcome, run_grouped};
use crate::store::{ResultsFile, Status, TrialRecord};

/// The parameter names a trial may set.
pub const MLP_PARAMS: [&str; 9] = [
    "hidden_layer",
    "activation",
    "epoch",
    "eta",
    "beta",
    "alpha",
    "mu",
    "batch_size",
    "seed",
];

/// A trial's parameters as `name value, ...` for messages.
fn params_text(params: &serde_json::Map<String, Value>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The columns of report 001's tables, in its order: the parameters but the seed.
pub const MLP_COLUMNS: &[&str] = MLP_PARAMS.split_at(8).0;

/// A search over MLPs on fixed data.
pub struct MlpSearch<'a> {
    /// Training data (raw; each trial standardises it).
    pub train: &'a Samples,
    /// Data scored after every epoch, if any.
    pub validation: Option<&'a Samples>,
    /// Data scored once at the end, if any.
    pub test: Option<&'a Samples>,
    /// Values of the parameters a grid does not name.
    pub defaults: Mlp,
    /// Where to train.
    pub device: Device,
    /// Train trials that can share a model together (on by default; off trains one by one,
    /// for comparison).
    pub stacked: bool,
    /// Most trials in one stacked model.
    pub max_stack: usize,
    /// What the data is (dataset, task, split, subset, validation part), as part of every
    /// trial's configuration: results on other data are never taken for these.
    pub data: Value,
}

/// Report 001's MLP in the canonical form of result keys: explicit names (the vocabulary
/// of the rest of the project), not the serde form of [`Mlp`].
pub fn mlp_config(mlp: &Mlp) -> Value {
    json!({
        "model": "report-001-mlp",
        "hidden_layers": mlp.hidden_layers,
        "activation": mlp.activation.to_string(),
        "epochs": mlp.epochs,
        "learning_rate": mlp.learning_rate,
        // f32's shortest decimal (0.1, not 0.10000000149011612).
        "init_scale": mlp.init_scale.to_string().parse::<f64>().unwrap_or(f64::from(mlp.init_scale)),
        "l2": mlp.l2,
        "momentum": mlp.momentum,
        "batch_size": mlp.batch_size,
        "task": match mlp.task {
            Task::Classification => "classification",
            Task::Regression => "regression",
        },
        "seed": mlp.seed,
    })
}

impl<'a> MlpSearch<'a> {
    /// A search with `defaults` for what the grid leaves out, stacking on.
    pub fn new(train: &'a Samples, defaults: Mlp, device: Device) -> Self {
        MlpSearch {
            train,
            validation: None,
            test: None,
            defaults,
            device,
            stacked: true,
            max_stack: 64,
            data: Value::Null,
        }
    }

    /// What determines a trial's result beyond its parameters: the defaults of what the
    /// grid leaves out, the data, and the numerics versions (of `fit`, which trains a group
    /// of one, and of stacked training).
    pub fn config(&self) -> Value {
        json!({
            "defaults": mlp_config(&self.defaults),
            "data": self.data,
            "numerics": trainer::NUMERICS_VERSION,
            "stacked_numerics": trainer::stacked::STACKED_NUMERICS_VERSION,
        })
    }

    /// `trials` with this search's [`MlpSearch::config`], so that their keys cover it.
    pub fn keyed(&self, trials: &[Trial]) -> Vec<Trial> {
        let config = self.config();
        trials
            .iter()
            .map(|t| t.clone().with_config(config.clone()))
            .collect()
    }

    /// The MLP a trial describes; an unknown parameter name or a value of the wrong kind
    /// is an error naming it.
    pub fn mlp(&self, trial: &Trial) -> Result<Mlp, SearchError> {
        if let Some(unknown) = trial
            .params
            .keys()
            .find(|k| !MLP_PARAMS.contains(&k.as_str()))
        {
            return Err(SearchError::Grid(format!(
                "unknown MLP parameter {unknown:?}: use {}",
                MLP_PARAMS.join(", ")
            )));
        }
        let d = &self.defaults;
        let activation = match trial.params.get("activation") {
            None => d.activation,
            Some(v) => {
                let text = v.as_str().ok_or_else(|| {
                    SearchError::Grid(format!("activation {v}: write it as text, e.g. \"relu\""))
                })?;
                text.parse::<Activation>()
                    .map_err(|e| SearchError::Grid(format!("activation: {e}")))?
            }
        };
        let mlp = Mlp {
            hidden_layers: trial.get_or("hidden_layer", d.hidden_layers.clone())?,
            activation,
            epochs: trial.get_or("epoch", d.epochs)?,
            learning_rate: trial.get_or("eta", d.learning_rate)?,
            init_scale: trial.get_or("beta", d.init_scale)?,
            l2: trial.get_or("alpha", d.l2)?,
            momentum: trial.get_or("mu", d.momentum)?,
            batch_size: trial.get_or("batch_size", d.batch_size)?,
            verbose: false,
            task: d.task,
            seed: trial.get_or("seed", d.seed)?,
        };
        if mlp.epochs == 0 || mlp.batch_size == 0 || mlp.hidden_layers.contains(&0) {
            return Err(SearchError::Grid(format!(
                "trial {}: epoch, batch_size and every hidden layer must be at least 1",
                trial.index
            )));
        }
        let finite = [
            mlp.learning_rate,
            mlp.momentum,
            mlp.l2,
            f64::from(mlp.init_scale),
        ]
        .iter()
        .all(|x| x.is_finite());
        if !(finite
            && mlp.learning_rate > 0.0
            && (0.0..1.0).contains(&mlp.momentum)
            && mlp.l2 >= 0.0
            && mlp.init_scale > 0.0)
        {
            return Err(SearchError::Grid(format!(
                "trial {} ({}): eta (learning rate) and beta must be positive finite numbers, \
                 mu (momentum) in [0, 1), alpha (l2) a finite number at least 0; got eta {}, \
                 beta {}, mu {}, alpha {}",
                trial.index,
                params_text(&trial.params),
                mlp.learning_rate,
                mlp.init_scale,
                mlp.momentum,
                mlp.l2
            )));
        }
        Ok(mlp)
    }

    /// Checks every trial before anything trains, so a typo in a grid fails at once.
    /// Each trial's model is built on paper too (shapes, and the size check of
    /// [`models::ModelSpec::layer_infos`]), so a layer too large for memory is refused here.
    pub fn check(&self, trials: &[Trial]) -> Result<(), SearchError> {
        let input =
            models::Shape::from_dims(&self.train.shape).map_err(|e| SearchError::Grid(e.0))?;
        let outputs = match &self.train.targets {
            data::Targets::Classes { classes, .. } => classes.len(),
            data::Targets::Values { width, .. } => *width,
        };
        trials.iter().try_for_each(|t| {
            let mlp = self.mlp(t)?;
            mlp.spec(input, outputs)
                .layer_infos()
                .map(|_| ())
                .map_err(|e| SearchError::Grid(format!("trial {}: {}", t.index, e.0)))
        })
    }

    /// Trials with the same key can train as one stacked model.
    pub fn group_key(&self, trial: &Trial) -> String {
        match (self.stacked, self.mlp(trial)) {
            (true, Ok(m)) => format!(
                "{:?}|{}|{}|{}",
                m.hidden_layers, m.activation, m.batch_size, m.epochs
            ),
            _ => format!("trial {}", trial.index),
        }
    }

    /// Trains a group of trials (one stacked model, or one trial) and scores each.
    pub fn run_group(&self, group: &[Trial]) -> Vec<TrialOutcome> {
        let mlps: Result<Vec<Mlp>, SearchError> = group.iter().map(|t| self.mlp(t)).collect();
        let mlps = match mlps {
            Ok(m) => m,
            Err(e) => return vec![TrialOutcome::failed(e.to_string()); group.len()],
        };
        let mut outcomes = Vec::with_capacity(group.len());
        for chunk in mlps.chunks(self.max_stack.max(1)) {
            let trained = if chunk.len() == 1 {
                chunk[0]
                    .fit(self.train, self.validation, &self.device)
                    .map(|r| vec![r])
            } else {
                Mlp::fit_stacked(chunk, self.train, self.validation, &self.device)
            };
            match trained {
                Ok(models) => outcomes.extend(models.iter().map(|(m, h)| self.outcome(m, h))),
                Err(e) => {
                    outcomes.extend(vec![TrialOutcome::failed(e.to_string()); chunk.len()]);
                }
            }
        }
        outcomes
    }

    fn outcome(&self, model: &TrainedModel, history: &History) -> TrialOutcome {
        let status = match history.outcome {
            Outcome::Finished => Status::Finished,
            Outcome::EarlyStopped { .. } => Status::EarlyStopped,
            Outcome::Diverged { .. } => Status::Diverged,
        };
        // Regression losses are mean squared errors in the target's own units, which
        // users compare; classification losses are the cross-entropy.
        let regression = matches!(model.card.task, trainer::Outputs::Regression { .. });
        let score = |data: Option<&Samples>| {
            let d = data?;
            let e = model.evaluate(d).ok()?;
            let loss = if regression {
                model.mse(d).ok()?
            } else {
                e.loss
            };
            Some((e.score, loss))
        };
        let diverged = status == Status::Diverged;
        TrialOutcome {
            status,
            epochs: history.epochs.len(),
            train: if diverged {
                None
            } else {
                score(Some(self.train))
            },
            validation: if diverged {
                None
            } else {
                score(self.validation)
            },
            test: if diverged { None } else { score(self.test) },
            final_lr: history.epochs.last().map(|e| e.lr),
            earlier_seconds: 0.0,
        }
    }

    /// Runs every trial not yet in `results` (keyed with [`MlpSearch::keyed`] first, so
    /// pass the same keyed trials to [`ResultsFile::records_of`]): groups that share a model train together,
    /// the longest (smallest batch size) first so that workers finish together.
    pub fn run(
        &self,
        trials: &[Trial],
        results: &mut ResultsFile,
        options: &SearchOptions,
    ) -> Result<SearchSummary, SearchError> {
        self.check(trials)?;
        let mut ordered = self.keyed(trials);
        ordered.sort_by_key(|t| {
            std::cmp::Reverse(
                self.mlp(t)
                    .map_or(0, |m| m.epochs * self.train.len().div_ceil(m.batch_size)),
            )
        });
        run_grouped(
            &ordered,
            results,
            options,
            |t| self.group_key(t),
            |g| self.run_group(g),
        )
    }

    /// Trains the model of a recorded trial again (training is deterministic for a seed,
    /// so this is the model the record describes), for saving the best one.
    pub fn refit(&self, record: &TrialRecord) -> Result<(TrainedModel, History), SearchError> {
        let trial = Trial::new(record.index, record.params.clone());
        self.mlp(&trial)?
            .fit(self.train, self.validation, &self.device)
            .map_err(|e| SearchError::Grid(format!("retraining trial {}: {e}", record.index)))
    }
}
