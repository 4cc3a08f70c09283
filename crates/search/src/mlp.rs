//! Grids over report 001's MLP (`trainer::Mlp`): a trial's parameters carry the report's
//! names, as the study files write them (`hidden_layer`, `activation`, `epoch`, `eta`,
//! `beta`, `alpha`, `mu`, `batch_size`, `seed`; the result keys of every committed run hash
//! them), and stop here: they are read into the MLP's fields (`hidden_layers`, `epochs`,
//! `learning_rate`, `init_scale`, `l2`, `momentum`). A grid file may use those project
//! names instead ([`to_trial_names`] turns them into the trials' names, so both spellings
//! make the same trials and keys). What a grid leaves out comes from the search's
//! defaults. Trials
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

/// The project's names of report 001's MLP parameters (scikit-learn's and Keras'
/// vocabulary), each beside the report's name that trials carry and result keys hash.
/// A grid or its defaults may use either; [`to_trial_names`] makes them one.
pub const PROJECT_NAMES: [(&str, &str); 6] = [
    ("hidden_layers", "hidden_layer"),
    ("epochs", "epoch"),
    ("learning_rate", "eta"),
    ("init_scale", "beta"),
    ("l2", "alpha"),
    ("momentum", "mu"),
];

/// `params` (a grid's named lists, or its defaults) with the project's names
/// ([`PROJECT_NAMES`]: `learning_rate`, `epochs`, `l2`, ...) written as the report's, in
/// place, so that a grid written in either vocabulary makes the same trials, under the same
/// keys. Naming one parameter both ways is an error; other names pass through (an unknown
/// one is refused when a trial is read).
pub fn to_trial_names(
    params: serde_json::Map<String, Value>,
) -> Result<serde_json::Map<String, Value>, SearchError> {
    let mut out = serde_json::Map::new();
    for (name, value) in params {
        let trial_name = PROJECT_NAMES
            .iter()
            .find(|(project, _)| *project == name)
            .map_or(name.as_str(), |(_, report)| report);
        if out.contains_key(trial_name) {
            return Err(SearchError::Grid(format!(
                "{} and {trial_name} name the same parameter: give one",
                project_name(trial_name).unwrap_or(trial_name)
            )));
        }
        out.insert(trial_name.to_string(), value);
    }
    Ok(out)
}

/// The project's name of a parameter trials carry under report 001's name (`eta` →
/// `learning_rate`), where the two differ.
pub fn project_name(trial_name: &str) -> Option<&'static str> {
    PROJECT_NAMES
        .iter()
        .find(|(_, report)| *report == trial_name)
        .map(|(project, _)| *project)
}

/// The parameter names a grid may use, for messages: the project's, with the report's in
/// brackets.
fn parameter_names() -> String {
    MLP_PARAMS
        .iter()
        .map(|p| match project_name(p) {
            Some(project) => format!("{project} ({p})"),
            None => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

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
    /// grid leaves out, the data, and the numerics versions; a search whose trials train one
    /// by one (`fit`, whose sums run in another order than stacked training's) says so, so
    /// that its results and a stacked search's never stand for each other.
    pub fn config(&self) -> Value {
        let mut config = json!({
            "defaults": mlp_config(&self.defaults),
            "data": self.data,
            "numerics": trainer::NUMERICS_VERSION,
            "stacked_numerics": trainer::stacked::STACKED_NUMERICS_VERSION,
        });
        if !self.stacked {
            config["training"] = json!("one by one");
        }
        config
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
                parameter_names()
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
                "trial {}: epochs (epoch), batch_size and every hidden layer must be at least 1",
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
                "trial {} ({}): learning_rate (eta) and init_scale (beta) must be positive \
                 finite numbers, momentum (mu) in [0, 1), l2 (alpha) a finite number at least \
                 0; got learning_rate {}, init_scale {}, momentum {}, l2 {}",
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

    /// Trains a group of trials (one stacked model, or one trial) and scores each. A stacked
    /// search trains even a group of one stacked, so that a trial's figures do not depend on
    /// which trials share its group (a shard, a resumed run, the last chunk of a large group).
    pub fn run_group(&self, group: &[Trial]) -> Vec<TrialOutcome> {
        let mlps: Result<Vec<Mlp>, SearchError> = group.iter().map(|t| self.mlp(t)).collect();
        let mlps = match mlps {
            Ok(m) => m,
            Err(e) => return vec![TrialOutcome::failed(e.to_string()); group.len()],
        };
        let mut outcomes = Vec::with_capacity(group.len());
        for chunk in mlps.chunks(self.max_stack.max(1)) {
            let trained = if self.stacked {
                Mlp::fit_stacked(chunk, self.train, self.validation, &self.device)
            } else {
                chunk[0]
                    .fit(self.train, self.validation, &self.device)
                    .map(|r| vec![r])
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

#[cfg(all(test, feature = "flex"))]
mod tests {
    use super::*;
    use data::{ClassNames, Targets};
    use serde_json::Map;

    /// `PROJECT_NAMES` are `trainer::Mlp`'s own field names, each beside the serde alias
    /// that reads the report's name into the same field: the two lists cannot drift apart.
    #[test]
    fn project_names_are_the_mlps_fields_and_aliases() {
        let mlp = Mlp::new(Task::Classification, 0);
        let fields = serde_json::to_value(&mlp).unwrap();
        for (project, report) in PROJECT_NAMES {
            assert!(
                fields.get(project).is_some(),
                "{project} is not a field of Mlp"
            );
            let mut renamed = fields.as_object().unwrap().clone();
            let value = renamed.remove(project).unwrap();
            renamed.insert(report.to_string(), value);
            let read: Mlp = serde_json::from_value(Value::Object(renamed)).unwrap();
            assert_eq!(read, mlp, "{report} is not read as {project}");
            assert_eq!(project_name(report), Some(project));
            assert!(MLP_PARAMS.contains(&report));
        }
        assert_eq!(project_name("batch_size"), None);
    }

    /// Three noisy classes on two features, deterministic.
    fn three_classes() -> Samples {
        let (mut features, mut labels) = (Vec::new(), Vec::new());
        for i in 0..90 {
            let class = i % 3;
            let jitter = ((i * 7919) % 100) as f32 / 100.0 - 0.5;
            features.extend([class as f32 + jitter, 1.0 - class as f32 * jitter]);
            labels.push(class);
        }
        let classes = ClassNames::numbered(3);
        Samples::new(
            features,
            vec![2],
            vec![],
            Targets::Classes { labels, classes },
        )
        .unwrap()
    }

    fn trial(index: usize, eta: f64) -> Trial {
        let mut params = Map::new();
        params.insert("eta".into(), json!(eta));
        Trial::new(index, params)
    }

    /// A trial's figures do not depend on the trials it trains beside: alone (a shard's
    /// share, the last chunk of a group) it ends where it ends in a stack of three.
    #[test]
    fn a_trial_alone_trains_as_it_does_in_a_stack() {
        let data = three_classes();
        let mut defaults = Mlp::new(Task::Classification, 0);
        (defaults.hidden_layers, defaults.activation) = (vec![10, 10, 5], Activation::Tanh);
        (defaults.epochs, defaults.batch_size) = (100, 16);
        (defaults.momentum, defaults.l2) = (0.8, 0.01);
        let search = MlpSearch::new(&data, defaults, Device::flex());
        let trials: Vec<Trial> = [0.1, 0.05, 0.01]
            .iter()
            .enumerate()
            .map(|(i, &eta)| trial(i, eta))
            .collect();
        let together = search.run_group(&trials);
        for (t, stacked) in trials.iter().zip(&together) {
            let alone = search.run_group(std::slice::from_ref(t));
            assert_eq!(alone[0].train, stacked.train, "trial {}", t.index);
            assert_eq!(alone[0].epochs, stacked.epochs);
        }
        // One by one trains with `fit`, whose sums run in another order: other keys.
        let one_by_one = MlpSearch {
            stacked: false,
            ..MlpSearch::new(&data, search.defaults.clone(), Device::flex())
        };
        assert_ne!(
            search.keyed(&trials)[0].key(),
            one_by_one.keyed(&trials)[0].key()
        );
    }
}
