//! The trained model a user keeps: raw inputs in, predictions in the target's units out;
//! saved and loaded with bit-identical outputs; corrupt or mismatched files rejected.

use burn::tensor::Device;
use data::{ClassNames, Samples, Targets};
use models::{ModelSpec, Network, Shape};
use trainer::{
    FitConfig, InputScaling, Loss, OptimizerSpec, Predictions, Preprocessing, TrainedModel,
    train_model,
};

fn classes_data() -> Samples {
    let mut features = Vec::new();
    let mut labels = Vec::new();
    for i in 0..120 {
        let class = i % 3;
        features.extend([
            class as f32 * 100.0 + (i % 7) as f32,
            50.0 - class as f32 * 20.0,
        ]);
        labels.push(class);
    }
    Samples::new(
        features,
        vec![2],
        vec![],
        Targets::Classes {
            labels,
            classes: ClassNames(vec!["a".into(), "b".into(), "c".into()]),
        },
    )
    .unwrap()
}

fn regression_data() -> Samples {
    let x: Vec<f32> = (0..100).map(|i| i as f32 / 10.0).collect();
    let y: Vec<f32> = x.iter().map(|v| 300.0 + 40.0 * v).collect();
    Samples::new(
        x,
        vec![1],
        vec![],
        Targets::Values {
            values: y,
            width: 1,
            names: vec!["Y".into()],
        },
    )
    .unwrap()
}

fn trained_classifier() -> TrainedModel {
    let device = Device::flex();
    let spec = ModelSpec::parse("c", Shape::Flat(2), "dense(16, relu); dense(3, softmax)").unwrap();
    let network = Network::new(&spec, 1, &device).unwrap();
    let config = FitConfig::new(30, 16, OptimizerSpec::adam(0.02), Loss::CrossEntropy);
    let preprocessing = Preprocessing {
        inputs: InputScaling::Standard,
        scale_targets: false,
    };
    let data = classes_data();
    train_model(network, &data, None, preprocessing, &config, &device)
        .unwrap()
        .0
}

#[test]
fn classifier_scores_and_reports_on_raw_inputs() {
    let model = trained_classifier();
    let data = classes_data();
    assert!(model.score(&data).unwrap() > 0.95);
    let (report, log_loss) = model.classification_report(&data).unwrap();
    assert_eq!(report.names, ["a", "b", "c"]);
    assert!(log_loss < 0.5, "{log_loss}");
    match model.predict(&data).unwrap() {
        Predictions::Classes {
            probabilities,
            labels,
            ..
        } => {
            assert_eq!(labels.len(), 120);
            let row: f32 = probabilities[..3].iter().sum();
            assert!((row - 1.0).abs() < 1e-5);
        }
        Predictions::Values(_) => panic!("expected classes"),
    }
}

#[test]
fn regression_predicts_in_target_units() {
    let device = Device::flex();
    let spec = ModelSpec::parse("r", Shape::Flat(1), "dense(8, tanh); dense(1)").unwrap();
    let network = Network::new(&spec, 2, &device).unwrap();
    let config = FitConfig::new(60, 10, OptimizerSpec::adam(0.02), Loss::Mse);
    let preprocessing = Preprocessing {
        inputs: InputScaling::Standard,
        scale_targets: true,
    };
    let data = regression_data();
    let (model, _) = train_model(network, &data, None, preprocessing, &config, &device).unwrap();
    let r2 = model.score(&data).unwrap();
    assert!(r2 > 0.98, "{r2}");
    let Predictions::Values(values) = model.predict(&data).unwrap() else {
        panic!("expected values")
    };
    // In the target's units (300..700), not standardised.
    assert!((values[50] - 500.0).abs() < 25.0, "{}", values[50]);
    assert!(model.mse(&data).unwrap() < 400.0);
}

#[test]
fn the_default_preprocessing_suits_a_table_and_for_data_finds_8_bit_images() {
    // The default standardises features and regression targets (the trap it replaces
    // divided every table by 255): a regression on targets in the hundreds learns with it.
    assert_eq!(
        Preprocessing::default(),
        Preprocessing {
            inputs: InputScaling::Standard,
            scale_targets: true,
        }
    );
    let device = Device::flex();
    let spec = ModelSpec::parse("r", Shape::Flat(1), "dense(8, tanh); dense(1)").unwrap();
    let network = Network::new(&spec, 2, &device).unwrap();
    let config = FitConfig::new(60, 10, OptimizerSpec::adam(0.02), Loss::Mse);
    let data = regression_data();
    let (model, _) = train_model(
        network,
        &data,
        None,
        Preprocessing::default(),
        &config,
        &device,
    )
    .unwrap();
    assert!(model.score(&data).unwrap() > 0.98);
    assert_eq!(Preprocessing::for_data(&data), Preprocessing::default());

    let image = |values: Vec<f32>| {
        data::Samples::new(
            values,
            vec![1, 2, 2],
            vec![],
            data::Targets::Classes {
                labels: vec![0],
                classes: data::ClassNames::numbered(1),
            },
        )
        .unwrap()
    };
    let eight_bit = image(vec![0.0, 17.0, 255.0, 128.0]);
    assert_eq!(
        Preprocessing::for_data(&eight_bit).inputs,
        InputScaling::Pixels
    );
    let scaled = image(vec![0.0, 0.5, 1.0, 0.25]);
    assert_eq!(
        Preprocessing::for_data(&scaled).inputs,
        InputScaling::Standard
    );
}

#[test]
fn save_and_load_give_bit_identical_predictions() {
    let model = trained_classifier();
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    // The weights get the user's usual file mode, the one model.json was written with
    // (not the 0600 of a private temporary file).
    let mode = |f: &str| std::fs::metadata(dir.path().join(f)).unwrap().permissions();
    assert_eq!(mode("weights.safetensors"), mode("model.json"));
    let loaded = TrainedModel::load(dir.path(), &Device::flex()).unwrap();
    assert_eq!(loaded.card, model.card);
    let data = classes_data();
    assert_eq!(
        loaded.predict(&data).unwrap(),
        model.predict(&data).unwrap()
    );
}

#[test]
fn corrupt_or_mismatched_files_are_clear_errors() {
    let model = trained_classifier();
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();

    let weights = dir.path().join("weights.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    let err = TrainedModel::load(dir.path(), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(err.contains("weights.safetensors"), "{err}");

    model.save(dir.path()).unwrap();
    let card = dir.path().join("model.json");
    let text = std::fs::read_to_string(&card).unwrap();
    std::fs::write(&card, text.replace("\"units\": 16", "\"units\": 17")).unwrap();
    let err = TrainedModel::load(dir.path(), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(err.contains("weights.safetensors"), "{err}");

    std::fs::write(&card, "{not json").unwrap();
    let err = TrainedModel::load(dir.path(), &Device::flex())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.json") && err.contains("not a saved model"),
        "{err}"
    );

    let wrong = Samples::new(
        vec![0.0; 3],
        vec![3],
        vec![],
        Targets::Classes {
            labels: vec![0],
            classes: ClassNames::numbered(3),
        },
    )
    .unwrap();
    let err = model.predict(&wrong).unwrap_err().to_string();
    assert!(err.contains("expects 2"), "{err}");
}
