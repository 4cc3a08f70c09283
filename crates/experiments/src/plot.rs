//! Pictures as SVG (opens in any browser, diffs as text, needs no plotting library):
//! training curves, confusion matrices and bar charts of the best trials.

use std::fmt::Write;

use trainer::History;

const WIDTH: f64 = 420.0;
const HEIGHT: f64 = 300.0;
const MARGIN: f64 = 50.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A rounded axis range covering `values` (finite ones only).
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// One line chart at `(x0, y0)` inside a larger picture.
fn line_panel(
    out: &mut String,
    (x0, y0): (f64, f64),
    title: &str,
    x_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) {
    let (xl, xh) = range(series.iter().flat_map(|s| s.1.iter().map(|p| p.0)));
    let (yl, yh) = range(series.iter().flat_map(|s| s.1.iter().map(|p| p.1)));
    let (pw, ph) = (WIDTH - 1.6 * MARGIN, HEIGHT - 2.0 * MARGIN);
    let (left, top) = (x0 + 1.2 * MARGIN, y0 + MARGIN);
    let sx = |x: f64| left + (x - xl) / (xh - xl) * pw;
    let sy = |y: f64| top + ph - (y - yl) / (yh - yl) * ph;
    let _ = write!(
        out,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="14">{}</text>
<rect x="{left:.1}" y="{top:.1}" width="{pw:.1}" height="{ph:.1}" fill="none" stroke="#888"/>
"##,
        left + pw / 2.0,
        y0 + MARGIN * 0.6,
        escape(title)
    );
    for i in 0..=4 {
        let fy = yl + (yh - yl) * i as f64 / 4.0;
        let fx = xl + (xh - xl) * i as f64 / 4.0;
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="10">{}</text>
<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>
<line x1="{left:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#eee"/>
"##,
            left - 4.0,
            sy(fy) + 3.0,
            tick(fy),
            sx(fx),
            top + ph + 14.0,
            tick(fx),
            left + pw,
            sy(fy),
            sy(fy)
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>"##,
        left + pw / 2.0,
        top + ph + 30.0,
        escape(x_label)
    );
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = points
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            out,
            r##"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>
<text x="{:.1}" y="{:.1}" font-size="11" fill="{colour}">{}</text>
"##,
            path.join(" "),
            left + 8.0,
            top + 14.0 + 14.0 * i as f64,
            escape(name)
        );
    }
}

fn tick(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn svg(width: f64, height: f64, body: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
{body}</svg>
"##
    )
}

/// Loss and score per epoch, train and held-out data (named for what it is: validation, or
/// the test set when that stood in for it), side by side (the reports' figures).
pub fn curves(
    title: &str,
    history: &History,
    score_name: &str,
    held_out: trainer::HeldOut,
) -> String {
    let epoch = |f: fn(&trainer::EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .epochs
            .iter()
            .filter_map(|r| f(r).map(|v| (r.epoch as f64, v)))
            .collect()
    };
    let mut loss = vec![("train", epoch(|r| Some(r.loss)))];
    let mut score = vec![("train", epoch(|r| Some(r.score)))];
    if history.epochs.iter().any(|r| r.val_loss.is_some()) {
        loss.push((held_out.name(), epoch(|r| r.val_loss)));
        score.push((held_out.name(), epoch(|r| r.val_score)));
    }
    let mut body = format!(
        r##"<text x="{:.0}" y="18" text-anchor="middle" font-size="15" font-weight="bold">{}</text>
"##,
        WIDTH,
        escape(title)
    );
    line_panel(&mut body, (0.0, 10.0), "loss", "epoch", &loss);
    line_panel(&mut body, (WIDTH, 10.0), score_name, "epoch", &score);
    svg(2.0 * WIDTH, HEIGHT + 10.0, &body)
}

/// A confusion matrix: rows are true classes, columns predicted, darker for more.
pub fn confusion(title: &str, matrix: &[Vec<usize>], names: &[String]) -> String {
    let n = matrix.len().max(1);
    let cell = (360.0 / n as f64).clamp(24.0, 60.0);
    let (left, top) = (110.0, 60.0);
    let max = matrix.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let mut body = format!(
        r##"<text x="{:.0}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>
<text x="{:.0}" y="{:.0}" text-anchor="middle" font-size="12">predicted</text>
"##,
        left + cell * n as f64 / 2.0,
        escape(title),
        left + cell * n as f64 / 2.0,
        top + cell * n as f64 + 40.0
    );
    for (i, row) in matrix.iter().enumerate() {
        let name = names.get(i).map_or(i.to_string(), |s| s.clone());
        let _ = write!(
            body,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>
<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11">{}</text>
"##,
            left - 6.0,
            top + cell * (i as f64 + 0.6),
            escape(&name),
            left + cell * (i as f64 + 0.5),
            top + cell * n as f64 + 16.0,
            escape(&truncate(&name, 6))
        );
        for (j, &count) in row.iter().enumerate() {
            let shade = count as f64 / max;
            let fill = format!(
                "rgb({0:.0},{1:.0},{2:.0})",
                255.0 - 225.0 * shade,
                255.0 - 140.0 * shade,
                255.0 - 75.0 * shade
            );
            let text = if shade > 0.5 { "white" } else { "black" };
            let _ = write!(
                body,
                r##"<rect x="{:.1}" y="{:.1}" width="{cell:.1}" height="{cell:.1}" fill="{fill}" stroke="#ccc"/>
<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="{text}">{count}</text>
"##,
                left + cell * j as f64,
                top + cell * i as f64,
                left + cell * (j as f64 + 0.5),
                top + cell * (i as f64 + 0.6)
            );
        }
    }
    svg(
        left + cell * n as f64 + 20.0,
        top + cell * n as f64 + 60.0,
        &body,
    )
}

fn truncate(text: &str, n: usize) -> String {
    text.chars().take(n).collect()
}

/// Horizontal bars, one per labelled value (the best trials of a grid, best on top).
pub fn bars(title: &str, axis: &str, rows: &[(String, f64)]) -> String {
    let bar = 18.0;
    let (left, top, span) = (330.0, 40.0, 300.0);
    let (lo, hi) = range(rows.iter().map(|r| r.1).chain([0.0]));
    let lo = lo
        .max(0.0)
        .min(rows.iter().map(|r| r.1).fold(f64::INFINITY, f64::min) * 0.9);
    let scale = |v: f64| ((v - lo) / (hi - lo)).clamp(0.0, 1.0) * span;
    let mut body = format!(
        r##"<text x="{:.0}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>
"##,
        (left + span) / 2.0,
        escape(title)
    );
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = top + i as f64 * (bar + 6.0);
        let _ = write!(
            body,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" font-size="11">{}</text>
<rect x="{left:.1}" y="{y:.1}" width="{:.1}" height="{bar:.1}" fill="{}"/>
<text x="{:.1}" y="{:.1}" font-size="11">{}</text>
"##,
            left - 6.0,
            y + 13.0,
            escape(label),
            scale(*value).max(1.0),
            COLOURS[0],
            left + scale(*value).max(1.0) + 4.0,
            y + 13.0,
            tick(*value)
        );
    }
    let bottom = top + rows.len() as f64 * (bar + 6.0) + 10.0;
    let _ = writeln!(
        body,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="11">{} (axis from {})</text>"##,
        left + span / 2.0,
        bottom + 8.0,
        escape(axis),
        tick(lo)
    );
    svg(left + span + 60.0, bottom + 20.0, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trainer::{EpochRecord, Outcome};

    fn history() -> History {
        History {
            epochs: (1..=5)
                .map(|e| EpochRecord {
                    epoch: e,
                    loss: 1.0 / e as f64,
                    score: 0.5 + 0.1 * e as f64,
                    val_loss: Some(1.2 / e as f64),
                    val_score: Some(0.45 + 0.1 * e as f64),
                    lr: 0.01,
                    seconds: 0.1,
                })
                .collect(),
            outcome: Outcome::Finished,
        }
    }

    #[test]
    fn curves_draw_train_and_validation_of_loss_and_score() {
        let svg = curves(
            "iris <final>",
            &history(),
            "accuracy",
            trainer::HeldOut::Validation,
        );
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("iris &lt;final&gt;"));
        assert!(svg.contains(">validation<"));
        // The test set standing in for validation data is called test, never validation.
        let svg = curves("iris", &history(), "accuracy", trainer::HeldOut::Test);
        assert!(svg.contains(">test<") && !svg.contains(">validation<"));
        // Five points per line.
        let first = svg.split("points=\"").nth(1).unwrap();
        assert_eq!(first.split('"').next().unwrap().split(' ').count(), 5);
    }

    #[test]
    fn confusion_has_a_cell_per_pair_with_its_count() {
        let m = vec![vec![5, 1], vec![0, 7]];
        let svg = confusion("cm", &m, &["cat".into(), "dog".into()]);
        assert_eq!(svg.matches("<rect x=").count(), 4);
        assert!(svg.contains(">7</text>") && svg.contains(">cat</text>"));
    }

    #[test]
    fn bars_keep_the_order_given() {
        let svg = bars(
            "best",
            "test accuracy",
            &[("a".into(), 0.9), ("b".into(), 0.8)],
        );
        assert!(svg.find(">a</text>").unwrap() < svg.find(">b</text>").unwrap());
        assert_eq!(svg.matches("<rect x=").count(), 2);
    }
}
