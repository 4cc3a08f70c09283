//! Data shared by the trainer's tests.

use data::{ClassNames, Samples, Targets};

/// Noisy 6x6 pictures of three shapes (horizontal bar, vertical bar, diagonal). `noise` maps
/// each draw of a xorshift generator started from `state` to the value added to a pixel.
pub fn pictures(n: usize, mut state: u64, noise: impl Fn(u64) -> f32) -> Samples {
    let mut draw = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        noise(state)
    };
    let (mut features, mut labels) = (Vec::new(), Vec::new());
    for i in 0..n {
        let class = i % 3;
        let at = (i / 3) % 4 + 1;
        for row in 0..6 {
            for col in 0..6 {
                let on = match class {
                    0 => row == at,
                    1 => col == at,
                    _ => row == col,
                };
                features.push(if on { 1.0 } else { 0.0 } + draw());
            }
        }
        labels.push(class);
    }
    Samples::new(
        features,
        vec![1, 6, 6],
        vec![],
        Targets::Classes {
            labels,
            classes: ClassNames::numbered(3),
        },
    )
    .unwrap()
}
