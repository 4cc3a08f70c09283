//! `predict`: loads a saved model (a folder with model.json and weights.safetensors, as the
//! experiment binaries write under `final/`) and classifies a user's own images or the rows
//! of a CSV file, printing the most likely classes with their probabilities.
//!
//! ```text
//! cargo run --release -p experiments --bin predict -- --model out/mnist/final --image my-digit.png
//! cargo run --release -p experiments --bin predict -- --model out/iris/final --csv flowers.csv
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
    #[arg(long, num_args = 1.., conflicts_with = "csv")]
    image: Vec<PathBuf>,
    /// A CSV file of feature rows (an optional header line; as many numbers per row as the
    /// model has inputs).
    #[arg(long)]
    csv: Option<PathBuf>,
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
    let (names, samples) = match (&args.csv, args.image.is_empty()) {
        (Some(csv), _) => read_csv(csv, input.len())?,
        (None, false) => read_images(&args.image, input, args.invert, args.resize)?,
        (None, true) => return Err("give --image FILE... or --csv FILE".into()),
    };
    let predictions = model.predict(&samples).map_err(|e| e.to_string())?;
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
