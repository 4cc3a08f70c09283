//! A grid: named lists of values whose Cartesian product is the set of trials. Written in
//! Rust or read from TOML or JSON (`hidden_layer = [[10, 10, 5], [32]]`, `eta = [0.01,
//! 0.001]`); dimensions keep the order they are written in.

use std::path::Path;

use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::SearchError;

/// One named dimension and its values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dimension {
    /// Name of the hyperparameter.
    pub name: String,
    /// Its values (any JSON value: numbers, strings, lists, objects).
    pub values: Vec<Value>,
}

/// Named lists of values.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Grid {
    /// Dimensions, in order; the last varies fastest.
    pub dimensions: Vec<Dimension>,
}

/// One point of a grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// Position in the full grid's order.
    pub index: usize,
    /// Hyperparameter values, in the grid's dimension order.
    pub params: Map<String, Value>,
    /// Everything else that determines the trial's result (dataset, split, seed, the
    /// values the grid does not name, ...), in the canonical form of [`crate::key`]; null
    /// until the caller sets it with [`Trial::with_config`].
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub config: Value,
}

impl Trial {
    /// A trial of `params` at `index`, with no configuration yet.
    pub fn new(index: usize, params: Map<String, Value>) -> Self {
        Trial {
            index,
            params,
            config: Value::Null,
        }
    }

    /// The same trial with `config` as the rest of what determines its result.
    pub fn with_config(mut self, config: Value) -> Self {
        self.config = config;
        self
    }

    /// Everything that determines the result: the parameters and the configuration, in
    /// canonical form.
    pub fn full_config(&self) -> Value {
        crate::key::canonical(&serde_json::json!({
            "params": Value::Object(self.params.clone()),
            "config": self.config,
        }))
    }

    /// The trial's identity in a results file: the hash of [`Trial::full_config`]
    /// ([`crate::key::config_key`]). Any change of parameters or configuration changes it.
    pub fn key(&self) -> String {
        crate::key::config_key(&self.full_config())
    }

    /// The value of `name`, converted to `T`.
    pub fn get<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, SearchError> {
        let value = self.params.get(name).ok_or_else(|| {
            SearchError::Grid(format!("trial {} has no parameter {name:?}", self.index))
        })?;
        serde_json::from_value(value.clone())
            .map_err(|e| SearchError::Grid(format!("parameter {name:?} = {value}: {e}")))
    }

    /// The value of `name`, or `default` when the grid does not have it.
    pub fn get_or<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        default: T,
    ) -> Result<T, SearchError> {
        if self.params.contains_key(name) {
            self.get(name)
        } else {
            Ok(default)
        }
    }
}

impl Grid {
    /// An empty grid (one trial with no parameters).
    pub fn new() -> Self {
        Grid::default()
    }

    /// Adds a dimension.
    pub fn with<T: Serialize>(mut self, name: &str, values: impl IntoIterator<Item = T>) -> Self {
        self.dimensions.push(Dimension {
            name: name.to_string(),
            values: values
                .into_iter()
                .map(|v| serde_json::to_value(v).unwrap_or(Value::Null))
                .collect(),
        });
        self
    }

    /// Parses a JSON object of arrays.
    pub fn from_json(text: &str) -> Result<Self, SearchError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| SearchError::Grid(format!("invalid JSON grid: {e}")))?;
        Self::from_value(value)
    }

    /// Parses a TOML table of arrays.
    pub fn from_toml(text: &str) -> Result<Self, SearchError> {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| SearchError::Grid(format!("invalid TOML grid: {e}")))?;
        if let Some(field) = non_finite(&toml::Value::Table(table.clone())) {
            return Err(SearchError::Grid(format!(
                "{field}: nan and inf are not valid values (write a finite number)"
            )));
        }
        let value = serde_json::to_value(table)
            .map_err(|e| SearchError::Grid(format!("invalid TOML grid: {e}")))?;
        Self::from_value(value)
    }

    /// Reads a `.toml` or `.json` grid file.
    pub fn from_file(path: &Path) -> Result<Self, SearchError> {
        let text = std::fs::read_to_string(path).map_err(|e| SearchError::io(path, e))?;
        let parsed = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Self::from_json(&text),
            _ => Self::from_toml(&text),
        };
        parsed.map_err(|e| SearchError::Grid(format!("{}: {e}", path.display())))
    }

    /// A grid from a JSON object of arrays (for grids embedded in larger files).
    pub fn from_value(value: Value) -> Result<Self, SearchError> {
        let Value::Object(map) = value else {
            return Err(SearchError::Grid("a grid is a table of named lists".into()));
        };
        let mut grid = Grid::new();
        for (name, values) in map {
            let Value::Array(values) = values else {
                return Err(SearchError::Grid(format!(
                    "dimension {name:?} must be a list of values, like {name} = [1, 2]"
                )));
            };
            if values.is_empty() {
                return Err(SearchError::Grid(format!(
                    "dimension {name:?} has no values"
                )));
            }
            grid.dimensions.push(Dimension { name, values });
        }
        Ok(grid)
    }

    /// Number of trials in the full grid.
    pub fn len(&self) -> usize {
        self.dimensions.iter().map(|d| d.values.len()).product()
    }

    /// True when some dimension is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The trial at `index` of the full grid (the last dimension varies fastest).
    pub fn trial(&self, index: usize) -> Trial {
        let mut rest = index;
        let mut picks = vec![0; self.dimensions.len()];
        for (d, dim) in self.dimensions.iter().enumerate().rev() {
            picks[d] = rest % dim.values.len();
            rest /= dim.values.len();
        }
        let params = self
            .dimensions
            .iter()
            .zip(picks)
            .map(|(dim, i)| (dim.name.clone(), dim.values[i].clone()))
            .collect();
        Trial::new(index, params)
    }

    /// Every trial, in order.
    pub fn trials(&self) -> Vec<Trial> {
        (0..self.len()).map(|i| self.trial(i)).collect()
    }

    /// `n` distinct trials drawn at random with `seed` (all of them when `n` is larger), in
    /// grid order.
    pub fn sample(&self, n: usize, seed: u64) -> Vec<Trial> {
        let total = self.len();
        if n >= total {
            return self.trials();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut picked = sample(&mut rng, total, n).into_vec();
        picked.sort_unstable();
        picked.into_iter().map(|i| self.trial(i)).collect()
    }
}

/// The path (`section.training.learning_rate`, `grid.eta[1]`) of the first NaN or
/// infinite number in a TOML value, if any. JSON, the form grids and trials take, cannot
/// hold them: unchecked, they would become null and then a default.
pub fn non_finite(value: &toml::Value) -> Option<String> {
    fn walk(value: &toml::Value, at: &str) -> Option<String> {
        let join = |key: &str| {
            if at.is_empty() {
                key.to_string()
            } else {
                format!("{at}.{key}")
            }
        };
        match value {
            toml::Value::Float(x) if !x.is_finite() => Some(at.to_string()),
            toml::Value::Table(t) => t.iter().find_map(|(k, v)| walk(v, &join(k))),
            toml::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| walk(v, &format!("{at}[{i}]"))),
            _ => None,
        }
    }
    walk(value, "")
}

/// Which trials a shard runs: those whose index is `shard` modulo `shards`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, from 0.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = SearchError;

    /// Parses `i/n` with `0 <= i < n`.
    fn from_str(text: &str) -> Result<Self, SearchError> {
        let bad = || {
            SearchError::Grid(format!(
                "shard {text:?}: expected i/n with 0 <= i < n, like 0/4"
            ))
        };
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Keeps this shard's trials.
    pub fn select(&self, trials: Vec<Trial>) -> Vec<Trial> {
        trials
            .into_iter()
            .filter(|t| t.index % self.count == self.index)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iris_grid() -> Grid {
        Grid::new()
            .with(
                "hidden_layer",
                [
                    vec![5, 5, 5, 5],
                    vec![10, 10, 5],
                    vec![15, 15],
                    vec![20, 15, 10],
                    vec![32],
                ],
            )
            .with("activation", ["tanh", "relu", "leakyrelu(0.1)"])
            .with("batch_size", [16, 64, 128])
            .with("epoch", [300])
            .with("mu", [0.0, 0.8])
            .with("beta", [0.3])
            .with("eta", [0.01, 0.001])
            .with("alpha", [0.001, 0.01, 0.0])
    }

    #[test]
    fn report_001_iris_grid_has_540_trials() {
        let grid = iris_grid();
        assert_eq!(grid.len(), 540);
        let trials = grid.trials();
        assert_eq!(
            trials[0].get::<Vec<usize>>("hidden_layer").unwrap(),
            [5, 5, 5, 5]
        );
        assert_eq!(trials[1].get::<f64>("alpha").unwrap(), 0.01);
        assert_eq!(trials[539].get::<Vec<usize>>("hidden_layer").unwrap(), [32]);
        let keys: std::collections::HashSet<String> = trials.iter().map(Trial::key).collect();
        assert_eq!(keys.len(), 540);
    }

    #[test]
    fn toml_and_json_keep_dimension_order() {
        let toml =
            "eta = [0.01, 0.001]\nhidden_layer = [[10, 10, 5], [32]]\nactivation = [\"relu\"]\n";
        let grid = Grid::from_toml(toml).unwrap();
        let names: Vec<&str> = grid.dimensions.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["eta", "hidden_layer", "activation"]);
        assert_eq!(grid.len(), 4);
        let json = r#"{"b": [1, 2, 3], "a": ["x"]}"#;
        let grid = Grid::from_json(json).unwrap();
        assert_eq!(grid.dimensions[0].name, "b");
        assert_eq!(grid.trial(2).get::<i64>("b").unwrap(), 3);
    }

    #[test]
    fn bad_grids_are_named_errors() {
        assert!(
            Grid::from_toml("eta = 0.1")
                .unwrap_err()
                .to_string()
                .contains("\"eta\" must be a list")
        );
        assert!(
            Grid::from_toml("eta = []")
                .unwrap_err()
                .to_string()
                .contains("no values")
        );
        assert!(
            Grid::from_json("[1]")
                .unwrap_err()
                .to_string()
                .contains("table of named lists")
        );
        let t = Grid::new().with("eta", [0.1]).trial(0);
        assert!(
            t.get::<String>("eta")
                .unwrap_err()
                .to_string()
                .contains("\"eta\"")
        );
        assert!(
            t.get::<f64>("mu")
                .unwrap_err()
                .to_string()
                .contains("no parameter")
        );
        assert_eq!(t.get_or("mu", 0.5).unwrap(), 0.5);
    }

    #[test]
    fn sampling_is_seeded_and_distinct() {
        let grid = iris_grid();
        let a = grid.sample(20, 1);
        assert_eq!(a.len(), 20);
        assert_eq!(a, grid.sample(20, 1));
        assert_ne!(a, grid.sample(20, 2));
        let idx: std::collections::HashSet<usize> = a.iter().map(|t| t.index).collect();
        assert_eq!(idx.len(), 20);
    }

    #[test]
    fn shards_partition_the_grid() {
        let grid = iris_grid();
        let mut all: Vec<usize> = (0..3)
            .flat_map(|i| Shard { index: i, count: 3 }.select(grid.trials()))
            .map(|t| t.index)
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..540).collect::<Vec<_>>());
        assert!("3/3".parse::<Shard>().is_err());
        assert_eq!(
            "1/4".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 4 }
        );
    }
}
