//! Grid search: a grid is named lists of values whose product is the set of trials (written
//! in Rust or read from TOML or JSON; full, randomly sampled, or sharded across machines).
//! Trials run in parallel on worker threads, optionally in groups trained together; each
//! finished trial is appended durably to a JSON-lines results file, so a rerun skips what is
//! done and a kill loses at most the trials in flight. Trials are ranked by score, ties
//! broken by loss, and printed as the reports' tables.

pub mod error;
pub mod grid;
pub mod halving;
pub mod key;
pub mod mlp;
pub mod rank;
pub mod runner;
pub mod store;
pub mod table;

pub use error::SearchError;
pub use grid::{Dimension, Grid, Shard, Trial};
pub use halving::{Halving, Rung, successive_halving};
pub use mlp::{MLP_COLUMNS, MLP_PARAMS, MlpSearch, PROJECT_NAMES, project_name, to_trial_names};
pub use rank::{RankBy, best, ranked};
pub use runner::{
    SearchOptions, SearchSummary, TrialOutcome, run_grouped, run_grouped_recorded, run_search,
    run_search_recorded,
};
pub use store::{MergeSummary, ResultsFile, Status, TrialRecord, merge};
pub use table::Table;
