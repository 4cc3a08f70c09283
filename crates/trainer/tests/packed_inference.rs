//! Predictions and evaluations go through the weights packed once for inference
//! (`Network::predictor`, `flex_ops::packed_dense`), with the values of `Network::predict`.
//! Alone in its test binary: it counts the packed products the process runs.
#![cfg(feature = "flex")]

use burn::tensor::{Device, Tensor, TensorData};
use data::{ClassNames, Samples, Targets};
use flex_ops::packed_dense::packed_products;
use models::{ModelSpec, Network, Shape};
use trainer::{Loss, evaluate, predict_outputs};

#[test]
fn the_test_pass_and_predict_run_on_packed_weights_with_predicts_values() {
    let device = Device::flex();
    let spec =
        ModelSpec::parse("m", Shape::Flat(20), "dense(64, relu); dense(3, softmax)").expect("spec");
    let network = Network::new(&spec, 3, &device).expect("network");
    let (rows, width) = (300, 20);
    let features: Vec<f32> = (0..rows * width)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let labels = (0..rows).map(|i| i % 3).collect();
    let samples = Samples::new(
        features.clone(),
        vec![width],
        vec![],
        Targets::Classes {
            labels,
            classes: ClassNames::numbered(3),
        },
    )
    .expect("samples");
    let packs = network.predictor().packed_layers();
    let before = packed_products();
    let outputs = predict_outputs(&network, &samples, &device);
    let after_predict = packed_products();
    let evaluation = evaluate(&network, &samples, Loss::CrossEntropy, &device);
    let after_evaluate = packed_products();
    // One batch of 300 rows (the evaluation batch is larger), both layers.
    let expected = if packs > 0 { 2 } else { 0 };
    assert_eq!(after_predict - before, expected, "predict_outputs");
    assert_eq!(after_evaluate - after_predict, expected, "evaluate");
    if std::arch::is_x86_feature_detected!("avx512f") {
        assert_eq!(packs, 2, "both dense layers packed on an AVX-512 CPU");
    }
    let x = Tensor::<2>::from_data(TensorData::new(features, [rows, width]), &device);
    let unpacked: Vec<f32> = network
        .predict(x)
        .into_data()
        .try_into_vec_as::<f32>()
        .expect("values");
    assert_eq!(
        packed_products(),
        after_evaluate,
        "Network::predict packs nothing"
    );
    let same = outputs
        .iter()
        .zip(&unpacked)
        .all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(
        same && outputs.len() == unpacked.len(),
        "packed and unpacked values differ"
    );
    assert!(evaluation.loss.is_finite());
}
