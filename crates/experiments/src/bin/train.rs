//! `train`: one model on your own data (a CSV or TSV file, gzip or not; a folder of class
//! subfolders of images; an IDX pair; or a named dataset), with sensible defaults: numeric
//! columns standardised, text columns one-hot, a held-out test set, early stopping on a
//! validation part, and the test scores, curves and saved model in the output folder.
//!
//! ```text
//! cargo run --release -p experiments --bin train -- --data houses.csv --target price --out out/houses
//! cargo run --release -p experiments --bin train -- --data photos/ --epochs 20 --out out/photos
//! cargo run --release -p experiments --bin predict -- --model out/houses --data new.csv
//! ```

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use data::tabular::{Impute, TargetSpec, TaskChoice};
use data::user_data::{LoadOptions, Loaded, Source, load};
use data::{HoldOut, Samples, Targets, split_samples};
use experiments::output::Output;
use experiments::plot;
use models::{Activation, DeviceChoice, Layer, ModelSpec, Network, Shape, select_device};
use trainer::metrics::{confusion_matrix, mean_absolute_error, mean_squared_error, r2_score};
use trainer::{
    EarlyStopping, FitConfig, HeldOut, History, Loss, Monitor, OptimizerSpec, Outcome, Predictions,
    Preprocessing, TrainedModel, Verbosity, train_model,
};

#[derive(Parser)]
#[command(
    name = "train",
    version,
    about = "Train one model on your own CSV, image folder or IDX files and save it"
)]
struct Args {
    /// A CSV/TSV file (`.gz` too), a folder of `<class>/<image>` (or with `train/` and
    /// `test/` inside), an IDX images file (labels beside it), or a dataset name (iris,
    /// statlog, diabetes, mnist, fashion-mnist, cifar10).
    #[arg(long)]
    data: String,
    /// Target column of a table: a header name or a 0-based index (default: the last column).
    #[arg(long, default_value = "last")]
    target: String,
    /// auto: classification for text labels or a few distinct whole numbers, regression
    /// otherwise (says which and why).
    #[arg(long, default_value = "auto")]
    task: TaskChoice,
    /// The table's first row names the columns (detected when neither flag is given).
    #[arg(long, conflicts_with = "no_header")]
    header: bool,
    /// The table's first row is data.
    #[arg(long)]
    no_header: bool,
    /// Missing values in feature columns (empty, NA, NaN, ?): an error naming row and column
    /// (none), or the training rows' mean or median (text columns: the most frequent value).
    #[arg(long, default_value = "none")]
    impute: Impute,
    /// A separate test file or folder, laid out as --data (default: hold out --test-fraction).
    #[arg(long)]
    test: Option<PathBuf>,
    /// Fraction of the data held out as the test set (stratified for classes).
    #[arg(long, default_value_t = 0.2)]
    test_fraction: f64,
    /// Fraction of the training part held out as validation data, whose loss early stopping
    /// then watches (stratified for classes; 0: none). Default: 0 for classes, as scikit-learn's
    /// MLPClassifier; 0.1 for values (a small regression's training loss goes on falling long
    /// after its test error has turned).
    #[arg(long)]
    validation_fraction: Option<f64>,
    /// Resize images of another size to the first image's (bilinear); without it, mixed
    /// sizes are an error naming both.
    #[arg(long)]
    resize: bool,
    /// Hidden layer sizes of an MLP, e.g. `64,32` (default: 100 units, scikit-learn's
    /// MLPClassifier's; images default to a small CNN).
    #[arg(long, conflicts_with = "model")]
    layers: Option<String>,
    /// Layers as text, e.g. "conv(32,3) relu maxpool(2) flatten dense(64) relu"; the output
    /// layer (dense with softmax for classes, linear for values) is added unless the text
    /// ends with one of the right size.
    #[arg(long)]
    model: Option<String>,
    /// Activation of the hidden layers given by --layers.
    #[arg(long, default_value = "relu")]
    activation: String,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerChoice::Adam)]
    optimizer: OptimizerChoice,
    /// Learning rate.
    #[arg(long, alias = "lr", default_value_t = 1e-3)]
    learning_rate: f64,
    /// Most epochs (early stopping usually ends sooner).
    #[arg(long, default_value_t = 200)]
    epochs: usize,
    /// Mini-batch size.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Epochs without improvement before training stops (0: train every epoch). With
    /// validation data: a better validation loss, and the best epoch's weights are kept
    /// (default 20); without: the training loss falling by at least 1e-4, as scikit-learn's
    /// MLP stops (default 10, its n_iter_no_change).
    #[arg(long)]
    early_stopping: Option<usize>,
    /// L2 penalty on the weights (the loss adds l2 * sum(w^2)).
    #[arg(long, default_value_t = 1e-4)]
    l2: f64,
    /// Seed of the splits, the initial weights, the shuffle and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Device: auto, cpu or gpu.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Folder holding the named datasets (default: BURN_REPORTS_DATA, then datasets/).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Output folder: the saved model (model.json, weights.safetensors), history.csv,
    /// curves.svg, the test report and a confusion matrix or residual figures.
    #[arg(long, default_value = "out/train")]
    out: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OptimizerChoice {
    Adam,
    Nadam,
    Sgd,
    Rmsprop,
    Adagrad,
    Adadelta,
}

fn main() -> ExitCode {
    experiments::allocator::keep_freed_memory();
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    check_numbers(args)?;
    let selected = select_device(args.device).map_err(|e| e.to_string())?;
    println!("{}", selected.description);
    let source = Source::of(&args.data).map_err(|e| e.to_string())?;
    let loaded = load(&source, &load_options(args)).map_err(|e| e.to_string())?;
    for note in &loaded.notes {
        println!("{note}");
    }
    let (train, validation) = validation_split(&loaded.train, args)?;
    let spec = model_spec(args, &loaded.train)?;
    println!("{}", spec.summary().map_err(|e| e.0)?);
    let network = Network::new(&spec, args.seed, &selected.device).map_err(|e| e.0)?;
    let preprocessing = Preprocessing::for_data(&train);
    println!("inputs: {}", describe_inputs(preprocessing));
    let config = fit_config(args, &train, validation.is_some())?;
    let (mut model, history) = train_model(
        network,
        &train,
        validation.as_ref(),
        preprocessing,
        &config,
        &selected.device,
    )
    .map_err(|e| e.to_string())?;
    model.card.table = loaded.encoder.clone();
    let out = Output::create(&args.out)?;
    let kept = history.kept_epoch(config.early_stopping.as_ref());
    let report = test_report(&model, &loaded, (&history, kept), &out)?;
    println!("{report}");
    model.save(&out.dir).map_err(|e| e.to_string())?;
    out.write("history.csv", &history.to_csv())?;
    let text = format!("{}\n\n{report}\n", loaded.notes.join("\n"));
    out.write("report.txt", &text)?;
    let markdown = format!(
        "# {}\n\nDevice {}; seed {}; written by `train` {}.\n\n```\n{text}```\n",
        args.data,
        selected.description,
        args.seed,
        env!("CARGO_PKG_VERSION"),
    );
    experiments::page::write_index(&out, &format!("train: {}", args.data), &markdown)?;
    println!(
        "saved to {} (model.json, weights.safetensors, history.csv, report.txt, the charts, \
         index.html); \
         predict with: predict --model {} --data FILE",
        out.dir.display(),
        out.dir.display()
    );
    Ok(())
}

/// A NaN or out-of-range number on the command line is refused before any work.
fn check_numbers(args: &Args) -> Result<(), String> {
    let fraction = |name: &str, v: f64, zero_ok: bool| {
        if v.is_finite() && (v > 0.0 || (zero_ok && v == 0.0)) && v < 1.0 {
            Ok(())
        } else {
            Err(format!("--{name} {v} must be in (0, 1)"))
        }
    };
    fraction("test-fraction", args.test_fraction, false)?;
    if let Some(v) = args.validation_fraction {
        fraction("validation-fraction", v, true)?;
    }
    if !(args.learning_rate.is_finite() && args.learning_rate > 0.0) {
        return Err(format!(
            "--learning-rate {} must be a positive number",
            args.learning_rate
        ));
    }
    if !(args.l2.is_finite() && args.l2 >= 0.0) {
        return Err(format!("--l2 {} must be a non-negative number", args.l2));
    }
    mlp_layers(
        args.layers.as_deref().unwrap_or("1"),
        &args.activation,
        false,
    )?;
    if let Some(text) = &args.model {
        models::spec::parse_layers(text).map_err(|e| format!("--model: {}", e.0))?;
    }
    Ok(())
}

fn load_options(args: &Args) -> LoadOptions {
    LoadOptions {
        target: TargetSpec::parse(&args.target),
        task: args.task.0,
        header: match (args.header, args.no_header) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        impute: args.impute,
        test: args.test.clone(),
        test_fraction: args.test_fraction,
        resize: args.resize,
        seed: args.seed,
        data_dir: args.data_dir.clone(),
        fetch: data::locate::at_a_terminal(),
    }
}

/// `--validation-fraction`, or its default for the task of `train`'s targets.
fn validation_fraction(train: &Samples, args: &Args) -> f64 {
    args.validation_fraction.unwrap_or(match train.targets {
        Targets::Classes { .. } => 0.0,
        Targets::Values { .. } => 0.1,
    })
}

/// The training part and its validation part (none when the fraction is 0).
fn validation_split(train: &Samples, args: &Args) -> Result<(Samples, Option<Samples>), String> {
    let fraction = validation_fraction(train, args);
    if fraction == 0.0 {
        println!(
            "validation: none; early stopping watches the training loss (--validation-fraction F \
             holds a fraction out)"
        );
        return Ok((train.clone(), None));
    }
    let split = split_samples(train, HoldOut::Fraction(fraction), true, args.seed)
        .map_err(|e| format!("validation split: {e}"))?;
    println!(
        "validation: {} of the {} training items (early stopping watches their loss)",
        split.held_out.len(),
        train.len()
    );
    Ok((
        train.subset(&split.train),
        Some(train.subset(&split.held_out)),
    ))
}

/// The layers: --model's text, --layers' MLP, or the default for the data, with the output
/// layer the task needs.
fn model_spec(args: &Args, train: &Samples) -> Result<ModelSpec, String> {
    let input = Shape::from_dims(&train.shape).map_err(|e| e.0)?;
    let (outputs, output_activation) = match &train.targets {
        Targets::Classes { classes, .. } => (classes.len(), Activation::Softmax),
        Targets::Values { width, .. } => (*width, Activation::Linear),
    };
    let image = matches!(input, Shape::Image { .. });
    let mut layers = match (&args.model, &args.layers) {
        (Some(text), _) => {
            models::spec::parse_layers(text).map_err(|e| format!("--model: {}", e.0))?
        }
        (None, Some(sizes)) => mlp_layers(sizes, &args.activation, image)?,
        (None, None) if image => models::spec::parse_layers(
            "conv(32, 3, same) relu maxpool(2) conv(64, 3, same) relu maxpool(2) flatten \
             dense(128) relu dropout(0.25)",
        )
        .map_err(|e| e.0)?,
        (None, None) => mlp_layers("100", &args.activation, false)?,
    };
    let spec = ModelSpec::new("model", input, layers.clone());
    let ends_right = matches!(
        (layers.last(), spec.output_shape()),
        (Some(Layer::Dense { units, .. }), Ok(Shape::Flat(n))) if *units == outputs && n == outputs
    );
    if ends_right {
        if let Some(Layer::Dense { activation, .. }) = layers.last_mut()
            && *activation == Activation::Linear
        {
            *activation = output_activation;
        }
    } else {
        if matches!(spec.output_shape(), Ok(Shape::Image { .. })) {
            layers.push(Layer::Flatten);
        }
        layers.push(Layer::Dense {
            units: outputs,
            activation: output_activation,
        });
    }
    let spec = ModelSpec::new("model", input, layers);
    spec.output_shape().map_err(|e| e.0)?;
    Ok(spec)
}

fn mlp_layers(sizes: &str, activation: &str, image: bool) -> Result<Vec<Layer>, String> {
    let activation: Activation = activation
        .parse()
        .map_err(|e: models::SpecError| format!("--activation: {}", e.0))?;
    let mut layers = if image {
        vec![Layer::Flatten]
    } else {
        Vec::new()
    };
    for size in sizes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let units: usize = size
            .parse()
            .ok()
            .filter(|&u| u > 0)
            .ok_or_else(|| format!("--layers: {size:?} is not a positive number of units"))?;
        layers.push(Layer::Dense { units, activation });
    }
    Ok(layers)
}

fn fit_config(args: &Args, train: &Samples, has_validation: bool) -> Result<FitConfig, String> {
    let lr = args.learning_rate;
    let optimizer = match args.optimizer {
        OptimizerChoice::Adam => OptimizerSpec::adam(lr),
        OptimizerChoice::Nadam => OptimizerSpec::nadam(lr),
        OptimizerChoice::Sgd => OptimizerSpec::sgd(lr, 0.9, false),
        OptimizerChoice::Rmsprop => OptimizerSpec::rmsprop(lr),
        OptimizerChoice::Adagrad => OptimizerSpec::adagrad(lr),
        OptimizerChoice::Adadelta => OptimizerSpec::adadelta(lr),
    };
    let loss = match train.targets {
        Targets::Classes { .. } => Loss::CrossEntropy,
        Targets::Values { .. } => Loss::Mse,
    };
    let mut config = FitConfig::new(args.epochs, args.batch_size, optimizer, loss);
    config.l2 = args.l2;
    config.seed = args.seed;
    config.verbose = if std::io::stdout().is_terminal() {
        Verbosity::Bar
    } else {
        Verbosity::Epoch
    };
    config.early_stopping = early_stopping(args.early_stopping, has_validation);
    config.validate(has_validation).map_err(|e| e.to_string())?;
    Ok(config)
}

/// Early stopping: on the validation loss with the best weights kept (patience 20 by
/// default), or without validation data on the training loss as scikit-learn's MLP stops
/// (an improvement of 1e-4 or more within 10 epochs); none with a patience of 0.
fn early_stopping(patience: Option<usize>, has_validation: bool) -> Option<EarlyStopping> {
    let rule = if has_validation {
        EarlyStopping {
            monitor: Monitor::ValLoss,
            patience: patience.unwrap_or(20),
            min_delta: 0.0,
            restore_best_weights: true,
        }
    } else {
        EarlyStopping {
            monitor: Monitor::Loss,
            patience: patience.unwrap_or(10),
            min_delta: 1e-4,
            restore_best_weights: false,
        }
    };
    (rule.patience > 0).then_some(rule)
}

fn describe_inputs(preprocessing: Preprocessing) -> &'static str {
    match preprocessing.inputs {
        trainer::InputScaling::Pixels => "8-bit pixels divided by 255 (to 0-1)",
        trainer::InputScaling::Standard => {
            "every feature standardised (mean 0, standard deviation 1 on the training part)"
        }
        trainer::InputScaling::MinMax => "every feature scaled to 0-1 on the training part",
        trainer::InputScaling::None => "as they are",
    }
}

/// The test scores in words, with the curves and the confusion matrix drawn into `out`.
fn test_report(
    model: &TrainedModel,
    loaded: &Loaded,
    (history, kept): (&History, Option<usize>),
    out: &Output,
) -> Result<String, String> {
    let test = &loaded.test;
    let name = loaded.key.split('@').next().unwrap_or("data");
    let charts = plot::model_charts(
        out,
        &plot::ModelCharts {
            title: &format!("{name}, {} test items", test.len()),
            model,
            history,
            held_out: HeldOut::Validation,
            kept,
            test,
        },
    )?;
    let mut lines = vec![match history.outcome {
        Outcome::EarlyStopped { best_epoch } if kept == Some(best_epoch) => format!(
            "early stopping after {} epochs; the best validation loss was at epoch \
             {best_epoch}, whose weights are kept",
            history.epochs.len()
        ),
        Outcome::EarlyStopped { best_epoch } => format!(
            "early stopping after {} epochs: the training loss last fell by 1e-4 or more in \
             epoch {best_epoch}; the last epoch's weights are kept",
            history.epochs.len()
        ),
        Outcome::Finished => format!("trained all {} epochs", history.epochs.len()),
        Outcome::Diverged { epoch } => {
            return Err(format!(
                "the loss became NaN or infinite in epoch {epoch}: lower --learning-rate or \
                 check the data"
            ));
        }
    }];
    match (
        model.predict(test).map_err(|e| e.to_string())?,
        &test.targets,
    ) {
        (
            Predictions::Classes {
                labels, classes, ..
            },
            Targets::Classes { labels: truth, .. },
        ) => {
            let (report, log_loss) = model
                .classification_report(test)
                .map_err(|e| e.to_string())?;
            lines.push(format!(
                "test accuracy {:.4}, log loss {log_loss:.4} ({} items)",
                trainer::accuracy(&labels, truth),
                test.len()
            ));
            lines.push(report.to_text());
            let matrix = confusion_matrix(&labels, truth, classes.len());
            lines.push(confusion_text(&matrix, &classes.0));
        }
        (
            Predictions::Values(values),
            Targets::Values {
                values: truth,
                width,
                ..
            },
        ) => {
            lines.push(format!(
                "test R² {:.4}, MSE {:.4}, MAE {:.4} ({} items, in the target's units)",
                r2_score(&values, truth, *width),
                mean_squared_error(&values, truth),
                mean_absolute_error(&values, truth),
                test.len()
            ));
        }
        _ => return Err("the model's outputs do not match the test targets".into()),
    }
    lines.push(format!("charts: {}", charts.join(", ")));
    Ok(lines.join("\n"))
}

/// Rows are true classes, columns predicted.
fn confusion_text(matrix: &[Vec<usize>], names: &[String]) -> String {
    let width = names.iter().map(|n| n.len()).max().unwrap_or(1).max(6);
    let mut text = format!(
        "confusion matrix (rows: true, columns: predicted)\n{:>width$}",
        ""
    );
    for n in names {
        text.push_str(&format!(" {n:>width$}"));
    }
    for (name, row) in names.iter().zip(matrix) {
        text.push_str(&format!("\n{name:>width$}"));
        for count in row {
            text.push_str(&format!(" {count:>width$}"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stopping_watches_validation_loss_or_the_training_loss_as_scikit_learn() {
        let on_validation = early_stopping(None, true).unwrap();
        assert_eq!(on_validation.monitor, Monitor::ValLoss);
        assert_eq!(on_validation.patience, 20);
        assert!(on_validation.restore_best_weights);
        let on_training = early_stopping(None, false).unwrap();
        assert_eq!(on_training.monitor, Monitor::Loss);
        assert_eq!((on_training.patience, on_training.min_delta), (10, 1e-4));
        assert!(!on_training.restore_best_weights);
        assert_eq!(early_stopping(Some(5), false).unwrap().patience, 5);
        assert!(early_stopping(Some(0), true).is_none());
    }
}
