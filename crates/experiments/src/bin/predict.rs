//! `predict`: loads a saved model (a folder with model.json and weights.safetensors, as
//! `train` and the experiment binaries write) and predicts for a user's own images or the
//! rows of a CSV file: the most likely classes with their probabilities, or values in the
//! target's units. A model trained by `train` on a table reads new rows through the same
//! column encoding (columns found by header name; the target column, if present, ignored).
//!
//! ```text
//! cargo run --release -p experiments --bin predict -- --model out/mnist/final --image my-digit.png
//! cargo run --release -p experiments --bin predict -- --model out/houses --data new.csv --out predictions.csv
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use data::image_folder::{Channels, decode_image_resized};
use data::{Samples, Targets};
use models::{DeviceChoice, Shape, select_device};
use trainer::{Predictions, TrainedModel};

#[derive(Parser)]
#[command(
    name = "predict",
    version,
    about = "Classify images or CSV rows with a saved model"
)]
struct Args {
    /// Folder of the saved model (model.json, weights.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Image files (PNG or JPEG) of the model's input size (see --resize), converted to
    /// its channels.
    #[arg(long, num_args = 1.., conflicts_with = "data")]
    image: Vec<PathBuf>,
    /// A CSV/TSV file (`.gz` too) of rows to predict: for a model trained by `train` on a
    /// table, rows of that table (the target column may be left out); otherwise as many
    /// numbers per row as the model has inputs (an optional header line).
    #[arg(long, alias = "csv")]
    data: Option<PathBuf>,
    /// Write one prediction per row to this CSV file (the row's line, the predicted class
    /// and each class's probability, or the predicted value) instead of printing the top
    /// classes.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Invert grey images (dark strokes on white paper to the datasets' light on black).
    #[arg(long)]
    invert: bool,
    /// Resize images of another size to the model's input (bilinear, aspect ratio not
    /// kept); without it, such an image is an error naming both sizes.
    #[arg(long)]
    resize: bool,
    /// Classes to print per item.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    top: u32,
    /// Device: auto, cpu or gpu.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
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
    let selected = select_device(args.device).map_err(|e| e.to_string())?;
    let model = TrainedModel::load(&args.model, &selected.device).map_err(|e| e.to_string())?;
    let input = model.card.spec.input;
    let (names, samples) = match (&args.data, args.image.is_empty(), &model.card.table) {
        (Some(path), _, Some(encoder)) => read_table(path, encoder)?,
        (Some(folder), _, None) if folder.is_dir() => {
            read_images(&image_files(folder)?, input, args.invert, args.resize)?
        }
        (Some(csv), _, None) => read_csv(csv, input.len())?,
        (None, false, _) => read_images(&args.image, input, args.invert, args.resize)?,
        (None, true, _) => return Err("give --image FILE... or --data FILE".into()),
    };
    let predictions = model.predict(&samples).map_err(|e| e.to_string())?;
    if let Some(out) = &args.out {
        return write_predictions(out, &names, &predictions, &model);
    }
    match predictions {
        Predictions::Classes {
            probabilities,
            classes,
            ..
        } => {
            let n = classes.len();
            for (name, p) in names.iter().zip(probabilities.chunks(n)) {
                let mut order: Vec<usize> = (0..n).collect();
                order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
                let top: Vec<String> = order
                    .iter()
                    .take(args.top as usize)
                    .map(|&c| format!("{} {:.1}%", classes.name(c), 100.0 * p[c]))
                    .collect();
                println!("{name}: {}", top.join(", "));
            }
        }
        Predictions::Values(values) => {
            let width = values.len() / names.len().max(1);
            for (name, v) in names.iter().zip(values.chunks(width.max(1))) {
                let v: Vec<String> = v.iter().map(|x| format!("{x:.3}")).collect();
                println!("{name}: {}", v.join(", "));
            }
        }
    }
    Ok(())
}

/// Rows of a table, encoded as the model's training table was.
fn read_table(
    path: &Path,
    encoder: &data::tabular::TableEncoder,
) -> Result<(Vec<String>, Samples), String> {
    let table = data::tabular::Table::read(path, &Default::default()).map_err(|e| e.to_string())?;
    let rows: Vec<usize> = (0..table.len()).collect();
    let samples = encoder.inputs(&table, &rows).map_err(|e| e.to_string())?;
    let names = table.lines.iter().map(|l| format!("line {l}")).collect();
    Ok((names, samples))
}

/// One CSV row per item: its name, the predicted class and each class's probability, or
/// the predicted values; written atomically (a temporary file renamed over `out`).
fn write_predictions(
    out: &Path,
    names: &[String],
    predictions: &Predictions,
    model: &TrainedModel,
) -> Result<(), String> {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut text = String::new();
    match predictions {
        Predictions::Classes {
            probabilities,
            labels,
            classes,
        } => {
            let target = model
                .card
                .table
                .as_ref()
                .map_or("class", |t| t.target.0.as_str());
            let header: Vec<String> = std::iter::once("item".to_string())
                .chain(std::iter::once(quote(target)))
                .chain(classes.0.iter().map(|c| quote(&format!("p({c})"))))
                .collect();
            text.push_str(&header.join(","));
            text.push('\n');
            let n = classes.len();
            for ((name, label), p) in names.iter().zip(labels).zip(probabilities.chunks(n)) {
                let p: Vec<String> = p.iter().map(|v| format!("{v:.6}")).collect();
                text.push_str(&format!(
                    "{},{},{}\n",
                    quote(name),
                    quote(classes.name(*label)),
                    p.join(",")
                ));
            }
        }
        Predictions::Values(values) => {
            let targets = match &model.card.task {
                trainer::Outputs::Regression { names, .. } => names.clone(),
                trainer::Outputs::Classification { .. } => vec!["value".into()],
            };
            let header: Vec<String> = std::iter::once("item".to_string())
                .chain(targets.iter().map(|t| quote(t)))
                .collect();
            text.push_str(&header.join(","));
            text.push('\n');
            for (name, v) in names.iter().zip(values.chunks(targets.len().max(1))) {
                let v: Vec<String> = v.iter().map(|x| format!("{x}")).collect();
                text.push_str(&format!("{},{}\n", quote(name), v.join(",")));
            }
        }
    }
    let tmp = out.with_extension("csv.tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, out).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("{} predictions written to {}", names.len(), out.display());
    Ok(())
}

/// Samples with placeholder targets (prediction ignores them).
fn unlabelled(features: Vec<f32>, shape: Vec<usize>, count: usize) -> Result<Samples, String> {
    Samples::new(
        features,
        shape,
        Vec::new(),
        Targets::Values {
            values: vec![0.0; count],
            width: 1,
            names: vec!["unknown".into()],
        },
    )
    .map_err(|e| e.to_string())
}

fn read_images(
    paths: &[PathBuf],
    input: Shape,
    invert: bool,
    resize: bool,
) -> Result<(Vec<String>, Samples), String> {
    let (channels, height, width) = match input {
        Shape::Image {
            channels,
            height,
            width,
        } => (channels, height, width),
        Shape::Flat(n) => {
            return Err(format!(
                "this model takes {n} numbers per item, not an image: use --csv"
            ));
        }
    };
    let mode = match channels {
        1 => Channels::Grey,
        3 => Channels::Rgb,
        c => {
            return Err(format!(
                "the model takes {c}-channel images; only 1 or 3 are supported"
            ));
        }
    };
    let mut features = Vec::new();
    for path in paths {
        let mut pixels = decode_image_resized(path, mode, width as u32, height as u32, resize)
            .map_err(|e| e.to_string())?;
        if invert {
            pixels.iter_mut().for_each(|p| *p = 255.0 - *p);
        }
        features.extend(pixels);
    }
    let names = paths.iter().map(|p| p.display().to_string()).collect();
    let samples = unlabelled(features, vec![channels, height, width], paths.len())?;
    Ok((names, samples))
}

/// The PNG and JPEG files directly in `folder`, in name order.
fn image_files(folder: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(folder).map_err(|e| format!("{}: {e}", folder.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_lowercase().as_str()))
        })
        .collect();
    if files.is_empty() {
        return Err(format!("{}: no PNG or JPEG images in it", folder.display()));
    }
    files.sort();
    Ok(files)
}

fn read_csv(path: &Path, inputs: usize) -> Result<(Vec<String>, Samples), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut features = Vec::new();
    let mut names = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // Commas, tabs or semicolons; else runs of spaces. Quotes around a field dropped.
        let fields: Vec<&str> = if line.contains([',', '\t', ';']) {
            line.split([',', '\t', ';']).collect()
        } else {
            line.split_whitespace().collect()
        };
        let fields: Vec<&str> = fields
            .into_iter()
            .map(|f| f.trim().trim_matches('"'))
            .collect();
        let parsed: Result<Vec<f32>, _> = fields.iter().map(|f| f.parse::<f32>()).collect();
        let Ok(values) = parsed else {
            if i == 0 {
                continue; // a header line
            }
            let bad = fields
                .iter()
                .position(|f| f.parse::<f32>().is_err())
                .unwrap_or(0);
            return Err(format!(
                "{} line {}: field {} ({:?}) is not a number",
                path.display(),
                i + 1,
                bad + 1,
                fields[bad]
            ));
        };
        if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "{} line {}: field {} ({:?}) is not a finite number",
                path.display(),
                i + 1,
                bad + 1,
                fields[bad]
            ));
        }
        if values.len() != inputs {
            return Err(format!(
                "{} line {}: {} values, the model takes {inputs}",
                path.display(),
                i + 1,
                values.len()
            ));
        }
        features.extend(values);
        names.push(format!("line {}", i + 1));
    }
    if names.is_empty() {
        return Err(format!(
            "{}: no rows of numbers (only a header line, or an empty file)",
            path.display()
        ));
    }
    let count = names.len();
    Ok((names, unlabelled(features, vec![inputs], count)?))
}
