//! The flags every experiment binary takes, and where its files come from and go.

use std::path::{Path, PathBuf};

use clap::Parser;
use models::DeviceChoice;

/// Flags shared by the experiment binaries.
#[derive(Debug, Clone, Parser)]
pub struct Flags {
    /// Experiment file (default: `experiments/<binary>.toml`). Copy one to run your own study.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The same table at small scale (data subset, fewer epochs and trials), in about a
    /// minute on a laptop CPU; its table is labelled quick.
    #[arg(long)]
    pub quick: bool,
    /// Print the Keras-style summary of every model in the run, without training.
    #[arg(long)]
    pub summary: bool,
    /// Train every model for this many epochs instead of the file's.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub epochs: Option<u32>,
    /// Run at most this many grid trials (the report's rows first).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: Option<u32>,
    /// Train only the configurations the report's tables print (each grid's published
    /// rows and every named model), not the rest of each grid.
    #[arg(long)]
    pub rows: bool,
    /// Seed of the split, the initial weights, the shuffle and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (default: all cores for MLP grids; one for tables of Keras-style
    /// models, whose training already uses every core).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub jobs: Option<u32>,
    /// Device: auto, cpu or gpu (gpu needs the `wgpu` feature).
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Folder holding the datasets (default: BURN_REPORTS_DATA, then datasets/).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Output folder (default: `out/<study>`, or `out/<study>-quick` with --quick).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run only the sections and models whose name contains this text (tables of
    /// Keras-style models), for example `--only pooling` or `--only "Table 5"`; the
    /// `section / model` line a run prints before each model is matched too, so
    /// `--only "series / Dropout"` picks one model of one section.
    #[arg(long)]
    pub only: Option<String>,
    /// Best trials listed beside the report's rows.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Least seconds between two checkpoints of a model in training (written at epoch
    /// ends under `<out>/checkpoints/`; 0: every epoch). Running the same command again
    /// continues a model from its checkpoint.
    #[arg(long, default_value_t = 60)]
    pub checkpoint_every: u64,
    /// Train only this shard's share of the table's models, `I/N` (0-based): the trials
    /// whose index is I modulo N, into this run's own `--out` folder, then stop. N processes on N
    /// machines (a Slurm array, a Kubernetes Indexed Job) run the table; `--merge` joins them.
    #[arg(long)]
    pub shard: Option<search::Shard>,
    /// Join the trials, histories and saved models of these shard folders into `--out`
    /// before the table is built: the run then trains nothing they trained and writes the
    /// same table, charts and book rows as one unsharded run.
    #[arg(long, num_args = 1..)]
    pub merge: Vec<PathBuf>,
}

impl Flags {
    /// The experiment file: `--config`, else `experiments/<name>.toml` under the current
    /// folder, else the repository's copy.
    pub fn config_path(&self, name: &str) -> PathBuf {
        if let Some(p) = &self.config {
            return p.clone();
        }
        let local = Path::new("experiments").join(format!("{name}.toml"));
        if local.exists() {
            return local;
        }
        let built_in = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../experiments")
            .join(format!("{name}.toml"));
        // Named in messages without the `crates/experiments/../..` detour.
        built_in.canonicalize().unwrap_or(built_in)
    }

    /// The output folder: `--out`, else `out/<study>` (`-quick` added with `--quick`), where
    /// the study is the `--config` file's name or the binary's, so another study file never
    /// shares the built-in one's folder.
    pub fn out_dir(&self, name: &str) -> PathBuf {
        let built_in = Flags {
            config: None,
            ..self.clone()
        }
        .config_path(name);
        let same = |p: &Path| match (p.canonicalize(), built_in.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        let study = match &self.config {
            None => name.to_string(),
            Some(p) if same(p) => name.to_string(),
            Some(p) => match p.file_stem().map(|s| s.to_string_lossy().into_owned()) {
                Some(stem) if stem != name => stem,
                _ => format!("{name}-custom"),
            },
        };
        match &self.out {
            Some(p) => p.clone(),
            None if self.quick => Path::new("out").join(format!("{study}-quick")),
            None => Path::new("out").join(study),
        }
    }

    /// The grid trials run after the report's rows: all of `rest`, none with `--rows`, or
    /// with `--quick` an even spread of `extra_trials` of them (so every dimension is still
    /// visited), after the `chosen` ones; the whole cut to at most `--limit` trials.
    pub fn pick_rest<T: Clone>(
        &self,
        mut chosen: Vec<T>,
        rest: Vec<T>,
        extra_trials: usize,
    ) -> Vec<T> {
        if self.quick && !self.rows {
            let n = extra_trials.min(rest.len());
            chosen.extend((0..n).map(|i| rest[i * rest.len() / n.max(1)].clone()));
        } else if !self.rows {
            chosen.extend(rest);
        }
        if let Some(limit) = self.limit {
            chosen.truncate(limit as usize);
        }
        chosen
    }

    /// This run's share of `trials` under `--shard` (all of them without it).
    pub fn shard_of(&self, trials: Vec<search::Trial>) -> Vec<search::Trial> {
        match self.shard {
            None => trials,
            Some(shard) => shard.select(trials),
        }
    }

    /// Joins the `--merge` folders into `out`: their `trials.jsonl` merged into its own (a
    /// conflict or a missing file is an error and changes nothing), their `histories/` and
    /// `models/` copied in.
    pub fn merge_shards(&self, out: &Path) -> Result<(), crate::Error> {
        if self.merge.is_empty() {
            return Ok(());
        }
        let inputs: Vec<PathBuf> = self.merge.iter().map(|d| d.join("trials.jsonl")).collect();
        let summary = search::merge(&inputs, &out.join("trials.jsonl"))?;
        for dir in &self.merge {
            for sub in ["histories", "models"] {
                copy_tree(&dir.join(sub), &out.join(sub))?;
            }
        }
        println!(
            "merged {} shard folder(s) into {}: {} trial(s)",
            self.merge.len(),
            out.display(),
            summary.records
        );
        Ok(())
    }

    /// Worker threads.
    pub fn workers(&self) -> usize {
        self.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |j| j as usize,
        )
    }
}

/// Copies the files under `from` (if it exists) into `to`, keeping the layout.
fn copy_tree(from: &Path, to: &Path) -> Result<(), crate::Error> {
    if !from.is_dir() {
        return Ok(());
    }
    let at = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
    std::fs::create_dir_all(to).map_err(|e| at(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| at(from, e))? {
        let path = entry.map_err(|e| at(from, e))?.path();
        let target = to.join(path.file_name().unwrap_or_default());
        if path.is_dir() {
            copy_tree(&path, &target)?;
        } else {
            std::fs::copy(&path, &target).map_err(|e| at(&path, e))?;
        }
    }
    Ok(())
}
