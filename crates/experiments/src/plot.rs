//! Charts drawn with plotters, each written twice, as `<name>.svg` (opens in any browser) and
//! `<name>.png` (for a README, a slide or a chat message), text in the bundled DejaVu Sans so
//! a PNG looks the same on a machine with no fonts: training curves with the best epoch and
//! learning-rate changes marked, confusion matrices (counts and row-normalised), the report's
//! figures beside ours, scores by hyperparameter value, predicted against true values, and
//! image samples with their labels. Colours are the Okabe-Ito palette (colour-blind safe).

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, FontTransform, register_font};
use trainer::{HeldOut, History};

use crate::output::Output;

/// Okabe and Ito's colour-blind-safe palette: blue, orange, bluish green, vermillion,
/// reddish purple, sky blue, yellow, black.
pub const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bundled file is a valid font (a test draws with it); were it not, text would
        // be missing from the PNGs only, and the SVGs would still name the family.
        for style in [FontStyle::Normal, FontStyle::Bold] {
            let _ = register_font(FONT, style, FONT_BYTES);
        }
    });
}

/// A chart that can draw itself on any plotters backend.
pub trait Chart {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws onto `root`.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), crate::Error>;
}

/// Writes `chart` as `<stem>.svg` and `<stem>.png` in `out`; returns the two file names.
pub fn render(out: &Output, stem: &str, chart: &impl Chart) -> Result<[String; 2], crate::Error> {
    register_fonts();
    let size = chart.size();
    let names = [format!("{stem}.svg"), format!("{stem}.png")];
    let svg = out.path(&names[0]);
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        chart.draw(&root)?;
        root.present()
            .map_err(|e| format!("{}: {e}", svg.display()))?;
    }
    fix_embedded_images(&svg)?;
    let png = out.path(&names[1]);
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        chart.draw(&root)?;
        root.present()
            .map_err(|e| format!("{}: {e}", png.display()))?;
    }
    Ok(names)
}

/// plotters' SVG backend labels embedded bitmaps `data:png`, which browsers do not show:
/// the media type is `image/png`.
fn fix_embedded_images(svg: &std::path::Path) -> Result<(), crate::Error> {
    let text = std::fs::read_to_string(svg).map_err(|e| crate::Error::io(svg, e))?;
    if text.contains("\"data:png;") {
        let fixed = text.replace("\"data:png;", "\"data:image/png;");
        std::fs::write(svg, fixed).map_err(|e| crate::Error::io(svg, e))?;
    }
    Ok(())
}

fn err(e: impl std::fmt::Display) -> String {
    format!("drawing a chart: {e}")
}

fn font(size: u32) -> TextStyle<'static> {
    (FONT, size).into_font().into()
}

fn bold(size: u32) -> TextStyle<'static> {
    (FONT, size, FontStyle::Bold).into_font().into()
}

/// A tick label with no trailing zeros (`450`, `0.25`).
fn tick(v: &f64) -> String {
    let text = format!("{v:.6}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".into()
    } else {
        text.to_string()
    }
}

/// The range of finite `values`, padded by 5 % (a unit wide when they are all equal).
fn padded(values: impl Iterator<Item = f64>) -> (f64, f64) {
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

/// A title line at the top of `root`, and the area below it.
fn titled<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
) -> Result<DrawingArea<DB, Shift>, crate::Error> {
    root.fill(&WHITE).map_err(err)?;
    Ok(root.titled(title, bold(18)).map_err(err)?)
}

/// A legend drawn as a row of coloured marks and names in its own strip (never on the data).
fn legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[(String, RGBColor, bool)],
) -> Result<(), crate::Error> {
    let mut x = 20;
    for (name, colour, dashed) in entries {
        let y = 12;
        if *dashed {
            for k in 0..4 {
                area.draw(&PathElement::new(
                    vec![(x + k * 7, y), (x + k * 7 + 4, y)],
                    colour.stroke_width(2),
                ))
                .map_err(err)?;
            }
        } else {
            area.draw(&PathElement::new(
                vec![(x, y), (x + 26, y)],
                colour.stroke_width(3),
            ))
            .map_err(err)?;
        }
        area.draw(&Text::new(name.clone(), (x + 32, y - 8), font(14)))
            .map_err(err)?;
        x += 32 + 9 * name.chars().count() as i32 + 24;
    }
    Ok(())
}

/// Loss and score per epoch, training and held-out data side by side, with the epoch whose
/// weights were kept marked and every learning-rate change shown.
pub struct Curves<'a> {
    /// Dataset, model and split, in words.
    pub title: String,
    /// The history.
    pub history: &'a History,
    /// The score's name (`accuracy`, `R²`).
    pub score: &'a str,
    /// What the held-out curve was measured on.
    pub held_out: HeldOut,
    /// The epoch whose weights the model holds ([`History::kept_epoch`]).
    pub kept: Option<usize>,
}

impl Curves<'_> {
    /// Epochs at which the learning rate changed, with the new rate.
    fn lr_changes(&self) -> Vec<(usize, f64)> {
        self.history
            .epochs
            .windows(2)
            .filter(|w| (w[1].lr - w[0].lr).abs() > 1e-12 * w[0].lr.abs().max(1e-30))
            .map(|w| (w[1].epoch, w[1].lr))
            .collect()
    }

    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        y_name: &str,
        pick: fn(&trainer::EpochRecord) -> (f64, Option<f64>),
    ) -> Result<(), crate::Error> {
        let epochs = &self.history.epochs;
        let train: Vec<(f64, f64)> = epochs.iter().map(|e| (e.epoch as f64, pick(e).0)).collect();
        let held: Vec<(f64, f64)> = epochs
            .iter()
            .filter_map(|e| pick(e).1.map(|v| (e.epoch as f64, v)))
            .collect();
        let last = epochs.last().map_or(1.0, |e| e.epoch as f64).max(2.0);
        let (lo, hi) = padded(train.iter().chain(&held).map(|p| p.1));
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(1.0..last, lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&tick)
            .y_desc(y_name)
            .axis_desc_style(font(15))
            .label_style(font(13))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        for (e, _) in self.lr_changes() {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(e as f64, lo), (e as f64, hi)],
                    4,
                    4,
                    PALETTE[4].stroke_width(1),
                ))
                .map_err(err)?;
        }
        if let Some(kept) = self.kept {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(kept as f64, lo), (kept as f64, hi)],
                    6,
                    4,
                    BLACK.stroke_width(1),
                ))
                .map_err(err)?;
        }
        chart
            .draw_series(LineSeries::new(train, PALETTE[0].stroke_width(2)))
            .map_err(err)?;
        if !held.is_empty() {
            chart
                .draw_series(LineSeries::new(held, PALETTE[1].stroke_width(2)))
                .map_err(err)?;
        }
        Ok(())
    }
}

impl Chart for Curves<'_> {
    fn size(&self) -> (u32, u32) {
        (1000, 440)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), crate::Error> {
        let body = titled(root, &self.title)?;
        let (top, panels) = body.split_vertically(28);
        let mut entries = vec![("training".to_string(), PALETTE[0], false)];
        if self.history.epochs.iter().any(|e| e.val_loss.is_some()) {
            entries.push((self.held_out.name().to_string(), PALETTE[1], false));
        }
        if let Some(kept) = self.kept {
            entries.push((format!("weights kept: epoch {kept}"), BLACK, true));
        }
        let changes = self.lr_changes();
        if let Some((e, lr)) = changes.first() {
            let more = if changes.len() > 1 {
                format!(" (+{} more)", changes.len() - 1)
            } else {
                String::new()
            };
            entries.push((
                format!("learning rate {lr:.0e} from epoch {e}{more}"),
                PALETTE[4],
                true,
            ));
        }
        legend(&top, &entries)?;
        let (left, right) = panels.split_horizontally(500);
        self.panel(&left, "loss", |e| (e.loss, e.val_loss))?;
        self.panel(&right, self.score, |e| (e.score, e.val_score))
    }
}

/// A confusion matrix twice: counts, and each true class's row as percentages.
pub struct Confusion<'a> {
    /// Dataset, model and split, in words.
    pub title: String,
    /// Rows are true classes, columns predicted.
    pub matrix: &'a [Vec<usize>],
    /// Class names, in full.
    pub names: &'a [String],
}

impl Confusion<'_> {
    fn label_space(&self) -> u32 {
        let longest = self
            .names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(1);
        (longest as u32 * 8 + 16).clamp(40, 260)
    }

    fn cell(&self) -> u32 {
        (420 / self.names.len().max(1) as u32).clamp(26, 70)
    }

    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        heading: &str,
        normalised: bool,
    ) -> Result<(), crate::Error> {
        let n = self.names.len();
        let labels = self.label_space() as i32;
        let cell = self.cell() as i32;
        let (x0, y0) = (labels + 28, 40);
        area.draw(&Text::new(heading.to_string(), (x0, 8), bold(15)))
            .map_err(err)?;
        let max_count = self
            .matrix
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        for (i, row) in self.matrix.iter().enumerate() {
            let total: usize = row.iter().sum();
            for (j, &count) in row.iter().enumerate() {
                let value = if normalised {
                    count as f64 / total.max(1) as f64
                } else {
                    count as f64 / max_count
                };
                let shade = |c: u8| (255.0 - value * (255.0 - c as f64)) as u8;
                let colour = RGBColor(shade(8), shade(81), shade(156));
                let (x, y) = (x0 + j as i32 * cell, y0 + i as i32 * cell);
                area.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    colour.filled(),
                ))
                .map_err(err)?;
                area.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    WHITE.stroke_width(1),
                ))
                .map_err(err)?;
                let text = if normalised {
                    format!("{:.0}%", 100.0 * value)
                } else {
                    count.to_string()
                };
                let ink = if value > 0.5 { WHITE } else { BLACK };
                let style = font(if cell < 40 { 10 } else { 13 }).color(&ink);
                area.draw(&Text::new(text, (x + 4, y + cell / 2 - 7), style))
                    .map_err(err)?;
            }
        }
        for (i, name) in self.names.iter().enumerate() {
            let y = y0 + i as i32 * cell + cell / 2 - 7;
            area.draw(&Text::new(name.clone(), (8, y), font(13)))
                .map_err(err)?;
            let x = x0 + i as i32 * cell + cell / 2 - 7;
            let rotated = font(13).transform(FontTransform::Rotate90);
            area.draw(&Text::new(
                name.clone(),
                (x + 14, y0 + n as i32 * cell + 6),
                rotated,
            ))
            .map_err(err)?;
        }
        let bottom = y0 + n as i32 * cell + labels + 8;
        area.draw(&Text::new("predicted class", (x0, bottom), font(14)))
            .map_err(err)?;
        area.draw(&Text::new(
            "true class (rows)",
            (8, y0 - 20),
            font(12).color(&RGBColor(90, 90, 90)),
        ))
        .map_err(err)?;
        Ok(())
    }
}

impl Chart for Confusion<'_> {
    fn size(&self) -> (u32, u32) {
        let n = self.names.len().max(1) as u32;
        let panel = self.label_space() + 40 + n * self.cell();
        (
            2 * panel + 20,
            40 + 40 + n * self.cell() + self.label_space() + 40,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), crate::Error> {
        let body = titled(root, &self.title)?;
        let (w, _) = body.dim_in_pixel();
        let (left, right) = body.split_horizontally(w / 2);
        self.panel(&left, "counts", false)?;
        self.panel(&right, "share of each true class", true)
    }
}

/// Horizontal bars: one group per row, a bar per series (the report's figure and ours, or
/// the best trials' scores), the value written at each bar's end.
pub struct Bars<'a> {
    /// What the chart shows.
    pub title: String,
    /// The value axis' title (figure and split).
    pub axis: String,
    /// The series' names (one colour each).
    pub series: &'a [&'a str],
    /// Each row's label and its value per series (`None`: no figure).
    pub rows: &'a [(String, Vec<Option<f64>>)],
}

impl Chart for Bars<'_> {
    fn size(&self) -> (u32, u32) {
        let per_row = 10 + 18 * self.series.len() as u32;
        (1000, 120 + per_row * self.rows.len().max(1) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), crate::Error> {
        let body = titled(root, &self.title)?;
        let (top, plot) = body.split_vertically(28);
        let entries: Vec<(String, RGBColor, bool)> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| (s.to_string(), PALETTE[i % PALETTE.len()], false))
            .collect();
        if self.series.len() > 1 {
            legend(&top, &entries)?;
        }
        let values: Vec<f64> = self
            .rows
            .iter()
            .flat_map(|r| r.1.iter().flatten().copied())
            .collect();
        let (lo, hi) = padded(values.iter().copied());
        // Bars start at a round value below the smallest, so equal bars still read.
        let lo = if lo > 0.0 && values.iter().all(|&v| v > 0.0) {
            (lo * 10.0).floor() / 10.0
        } else {
            lo.min(0.0)
        };
        let longest = self
            .rows
            .iter()
            .map(|r| r.0.chars().count())
            .max()
            .unwrap_or(1);
        let slots = self.series.len().max(1);
        let n = self.rows.len().max(1);
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size((longest as u32 * 7 + 12).clamp(60, 420))
            .build_cartesian_2d(lo..hi.max(lo + 1e-9), 0.0..(n * (slots + 1)) as f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .disable_y_axis()
            .x_label_formatter(&tick)
            .x_desc(self.axis.as_str())
            .axis_desc_style(font(15))
            .label_style(font(12))
            .draw()
            .map_err(err)?;
        // Row labels right-aligned beside their group, in full.
        let right = font(12).pos(Pos::new(HPos::Right, VPos::Center));
        for (r, (label, _)) in self.rows.iter().enumerate() {
            let middle = ((n - 1 - r) * (slots + 1)) as f64 + 0.5 + slots as f64 / 2.0;
            let (x, y) = chart.backend_coord(&(lo, middle));
            root.draw(&Text::new(label.clone(), (x - 8, y), right.clone()))
                .map_err(err)?;
        }
        for (r, (_, row)) in self.rows.iter().enumerate() {
            let base = ((n - 1 - r) * (slots + 1)) as f64 + 0.5;
            for (s, value) in row.iter().enumerate() {
                let Some(v) = value else { continue };
                let y = base + (slots - 1 - s) as f64;
                let colour = PALETTE[s % PALETTE.len()];
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(lo, y), (*v, y + 0.9)],
                        colour.filled(),
                    )))
                    .map_err(err)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("{v:.4}"),
                        (*v, y + 0.75),
                        font(11),
                    )))
                    .map_err(err)?;
            }
        }
        Ok(())
    }
}

/// Points against a reference line: predicted against true values with the identity line,
/// or residuals against predictions with zero.
pub struct Scatter<'a> {
    /// What the chart shows.
    pub title: String,
    /// x values.
    pub x: &'a [f64],
    /// y values.
    pub y: &'a [f64],
    /// Axis titles.
    pub axes: (&'a str, &'a str),
    /// `true`: the line y = x; `false`: the line y = 0.
    pub identity: bool,
}

impl Chart for Scatter<'_> {
    fn size(&self) -> (u32, u32) {
        (620, 560)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), crate::Error> {
        let body = titled(root, &self.title)?;
        let (x_range, y_range) = if self.identity {
            let r = padded(self.x.iter().chain(self.y).copied());
            (r, r)
        } else {
            (
                padded(self.x.iter().copied()),
                padded(self.y.iter().copied().chain([0.0])),
            )
        };
        let mut chart = ChartBuilder::on(&body)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(x_range.0..x_range.1, y_range.0..y_range.1)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(self.axes.0)
            .y_desc(self.axes.1)
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .axis_desc_style(font(15))
            .label_style(font(13))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        let line = if self.identity {
            vec![(x_range.0, x_range.0), (x_range.1, x_range.1)]
        } else {
            vec![(x_range.0, 0.0), (x_range.1, 0.0)]
        };
        chart
            .draw_series(DashedLineSeries::new(line, 6, 4, BLACK.stroke_width(1)))
            .map_err(err)?;
        chart
            .draw_series(
                self.x
                    .iter()
                    .zip(self.y)
                    .map(|(&x, &y)| Circle::new((x, y), 3, PALETTE[0].mix(0.6).filled())),
            )
            .map_err(err)?;
        Ok(())
    }
}

/// A grid of images with a caption under each (true and predicted labels).
pub struct ImageGrid<'a> {
    /// What the images are.
    pub title: String,
    /// Each image as channel-first 0-255 values, `[channels, height, width]`.
    pub images: Vec<&'a [f32]>,
    /// `[channels, height, width]`.
    pub shape: [usize; 3],
    /// One caption per image; a caption starting with `✗` is drawn in vermillion.
    pub captions: Vec<String>,
}

impl ImageGrid<'_> {
    const COLUMNS: usize = 6;
    const TILE: usize = 176;

    fn scale(&self) -> usize {
        (96 / self.shape[1].max(1)).max(1)
    }
}

impl Chart for ImageGrid<'_> {
    fn size(&self) -> (u32, u32) {
        let tile = (self.shape[2] * self.scale()).max(Self::TILE);
        let rows = self.images.len().div_ceil(Self::COLUMNS).max(1);
        let height = self.shape[1] * self.scale() + 44;
        ((Self::COLUMNS * tile) as u32, (40 + rows * height) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), crate::Error> {
        let body = titled(root, &self.title)?;
        let [channels, h, w] = self.shape;
        let s = self.scale();
        let tile = (w * s).max(Self::TILE);
        let tile_h = h * s + 44;
        for (k, (image, caption)) in self.images.iter().zip(&self.captions).enumerate() {
            let (x0, y0) = (
                (k % Self::COLUMNS * tile + 8) as i32,
                (k / Self::COLUMNS * tile_h + 4) as i32,
            );
            // One bitmap per image (embedded as PNG in the SVG), each pixel an s x s block.
            let (ws, hs) = (w * s, h * s);
            let mut rgb = Vec::with_capacity(ws * hs * 3);
            for py in 0..hs {
                for px in 0..ws {
                    let (x, y) = (px / s, py / s);
                    let at = |c: usize| image[c * h * w + y * w + x].clamp(0.0, 255.0) as u8;
                    let c = if channels >= 3 {
                        [at(0), at(1), at(2)]
                    } else {
                        [at(0); 3]
                    };
                    rgb.extend_from_slice(&c);
                }
            }
            let bitmap: BitMapElement<_> =
                BitMapElement::with_owned_buffer((x0, y0), (ws as u32, hs as u32), rgb)
                    .ok_or("an image buffer of the wrong size")?;
            body.draw(&bitmap).map_err(err)?;
            let ink = if caption.starts_with('✗') {
                PALETTE[3]
            } else {
                BLACK
            };
            for (line, text) in caption.lines().enumerate() {
                body.draw(&Text::new(
                    text.to_string(),
                    (x0, y0 + (h * s) as i32 + 4 + 15 * line as i32),
                    font(12).color(&ink),
                ))
                .map_err(err)?;
            }
        }
        Ok(())
    }
}

/// Scores by hyperparameter value: one panel per hyperparameter that takes more than one
/// value, a column of points per value (every trial with that value), so a grid shows at a
/// glance which settings matter.
pub struct Strip<'a> {
    /// What the chart shows.
    pub title: String,
    /// The score's name and split (`validation accuracy`).
    pub score: &'a str,
    /// Per hyperparameter: its name, and each trial's value (as text) and score.
    pub params: Vec<(String, Vec<(String, f64)>)>,
}

impl Strip<'_> {
    const PANEL: (u32, u32) = (480, 300);

    /// A panel's values in their first order.
    fn values(points: &[(String, f64)]) -> Vec<&str> {
        let mut values: Vec<&str> = Vec::new();
        for (v, _) in points {
            if !values.contains(&v.as_str()) {
                values.push(v);
            }
        }
        values
    }

    /// Whether a panel's value names fit side by side under their columns; a panel whose
    /// names do not lists them down its left side instead (full, never cut).
    fn across(points: &[(String, f64)]) -> bool {
        let values = Self::values(points);
        let longest = values.iter().map(|v| v.chars().count()).max().unwrap_or(0);
        longest as u32 * 6 <= (Self::PANEL.0 - 80) / values.len().max(1) as u32
    }

    /// Panels per row: two, or one where some panel lists long names down its side.
    fn columns(&self) -> usize {
        if self.params.iter().all(|(_, points)| Self::across(points)) {
            2
        } else {
            1
        }
    }

    fn panel<DB: DrawingBackend>(
        &self,
        area: &DrawingArea<DB, Shift>,
        name: &str,
        points: &[(String, f64)],
        range: (f64, f64),
    ) -> Result<(), crate::Error> {
        let values = Self::values(points);
        let k = values.len();
        let value_name = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < k {
                values[i as usize].to_string()
            } else {
                String::new()
            }
        };
        // Each trial at its value's position, with a fixed spread inside the value's
        // column so that equal scores stay visible.
        let placed = points.iter().enumerate().map(|(n, (v, score))| {
            let column = values.iter().position(|x| x == v).unwrap_or(0) as f64;
            (column + ((n * 37) % 21) as f64 / 21.0 * 0.5 - 0.25, *score)
        });
        let dot = |at: (f64, f64)| Circle::new(at, 3, PALETTE[0].mix(0.55).filled());
        let grid = RGBColor(235, 235, 235);
        if Self::across(points) {
            let mut chart = ChartBuilder::on(area)
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(-0.5..(k as f64 - 0.5), range.0..range.1)
                .map_err(err)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(k)
                .x_label_formatter(&value_name)
                .y_label_formatter(&tick)
                .x_desc(name)
                .y_desc(self.score)
                .axis_desc_style(font(14))
                .label_style(font(12))
                .light_line_style(grid)
                .max_light_lines(2)
                .draw()
                .map_err(err)?;
            chart.draw_series(placed.map(dot)).map_err(err)?;
        } else {
            let longest = values.iter().map(|v| v.chars().count()).max().unwrap_or(0);
            let mut chart = ChartBuilder::on(area)
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(longest as u32 * 7 + 40)
                .build_cartesian_2d(range.0..range.1, -0.5..(k as f64 - 0.5))
                .map_err(err)?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(k)
                .y_label_formatter(&value_name)
                .x_label_formatter(&tick)
                .x_desc(self.score)
                .y_desc(name)
                .axis_desc_style(font(14))
                .label_style(font(12))
                .light_line_style(grid)
                .max_light_lines(2)
                .draw()
                .map_err(err)?;
            chart
                .draw_series(placed.map(|(column, score)| dot((score, column))))
                .map_err(err)?;
        }
        Ok(())
    }
}

impl Chart for Strip<'_> {
    fn size(&self) -> (u32, u32) {
        let rows = self.params.len().div_ceil(self.columns()).max(1) as u32;
        (2 * Self::PANEL.0, 40 + rows * Self::PANEL.1)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), crate::Error> {
        let body = titled(root, &self.title)?;
        let range = padded(self.params.iter().flat_map(|p| p.1.iter().map(|s| s.1)));
        let columns = self.columns();
        let rows = self.params.len().div_ceil(columns).max(1);
        let panels = body.split_evenly((rows, columns));
        for ((name, points), area) in self.params.iter().zip(panels.iter()) {
            self.panel(area, name, points, range)?;
        }
        Ok(())
    }
}

/// Lines over epochs, one per series (the best trials' training loss, report 001's Figures
/// 7, 9, 10 and 12), the legend in its own strip.
pub struct Overlay {
    /// What the chart shows.
    pub title: String,
    /// The value axis' title.
    pub axis: String,
    /// Each series' name and `(epoch, value)` points.
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

impl Chart for Overlay {
    fn size(&self) -> (u32, u32) {
        (1000, 520)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), crate::Error> {
        let body = titled(root, &self.title)?;
        let rows = self.series.len().div_ceil(2).max(1) as u32;
        let (top, plot) = body.split_vertically(24 * rows + 8);
        let entries: Vec<(String, RGBColor, bool)> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| (s.0.clone(), PALETTE[i % PALETTE.len()], false))
            .collect();
        for (row, chunk) in entries.chunks(2).enumerate() {
            let strip = top.margin(24 * row as u32, 0, 0, 0);
            legend(&strip, chunk)?;
        }
        let points = || self.series.iter().flat_map(|s| s.1.iter());
        let last = points().map(|p| p.0).fold(2.0, f64::max);
        let (lo, hi) = padded(points().map(|p| p.1));
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(1.0..last, lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&tick)
            .y_desc(self.axis.as_str())
            .axis_desc_style(font(15))
            .label_style(font(13))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        for (i, (_, points)) in self.series.iter().enumerate() {
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    PALETTE[i % PALETTE.len()].stroke_width(2),
                ))
                .map_err(err)?;
        }
        Ok(())
    }
}

/// What a trained model's charts show.
pub struct ModelCharts<'a> {
    /// Dataset and model, in words (the split is added per chart).
    pub title: &'a str,
    /// The model.
    pub model: &'a trainer::TrainedModel,
    /// Its history.
    pub history: &'a History,
    /// What the history's held-out curve was measured on.
    pub held_out: HeldOut,
    /// The epoch whose weights the model holds ([`History::kept_epoch`]).
    pub kept: Option<usize>,
    /// The test data.
    pub test: &'a data::Samples,
}

/// Writes a trained model's charts into `dir`: its curves; for classes the confusion matrix
/// and, for images, a sample of test images and the most confident mistakes; for values
/// predicted against true values and the residuals. Returns the files, SVG and PNG.
pub fn model_charts(dir: &Output, charts: &ModelCharts) -> Result<Vec<String>, crate::Error> {
    let ModelCharts {
        title,
        model,
        history,
        held_out,
        kept,
        test,
    } = *charts;
    let score = match test.targets {
        data::Targets::Classes { .. } => "accuracy",
        data::Targets::Values { .. } => "R²",
    };
    let mut files = Vec::new();
    let curves = Curves {
        title: format!("{title}: training curves"),
        history,
        score,
        held_out,
        kept,
    };
    files.extend(render(dir, "curves", &curves)?);
    let predictions = model.predict(test)?;
    match (&predictions, &test.targets) {
        (
            trainer::Predictions::Classes {
                labels,
                probabilities,
                classes,
            },
            data::Targets::Classes { labels: truth, .. },
        ) => {
            let matrix = trainer::confusion_matrix(labels, truth, classes.len());
            let confusion = Confusion {
                title: format!("{title}: test set"),
                matrix: &matrix,
                names: &classes.0,
            };
            files.extend(render(dir, "confusion", &confusion)?);
            if test.shape.len() == 3 {
                let shape = [test.shape[0], test.shape[1], test.shape[2]];
                let samples = sample_grid(test, labels, probabilities, &classes.0, shape, title);
                files.extend(render(dir, "test-samples", &samples.0)?);
                files.extend(render(dir, "confident-mistakes", &samples.1)?);
            }
        }
        (
            trainer::Predictions::Values(values),
            data::Targets::Values {
                values: truth,
                names,
                ..
            },
        ) => files.extend(value_charts(dir, title, values, truth, &names.join(", "))?),
        _ => {}
    }
    Ok(files)
}

/// A regression's test charts: predicted against true values (with the identity line) and
/// the residuals against the predictions, for the target `name`.
fn value_charts(
    dir: &Output,
    title: &str,
    predicted: &[f32],
    truth: &[f32],
    name: &str,
) -> Result<Vec<String>, crate::Error> {
    let predicted: Vec<f64> = predicted.iter().map(|&v| v as f64).collect();
    let actual: Vec<f64> = truth.iter().map(|&v| v as f64).collect();
    let residuals: Vec<f64> = actual.iter().zip(&predicted).map(|(t, p)| t - p).collect();
    let mut files = render(
        dir,
        "predicted-vs-true",
        &Scatter {
            title: format!("{title}: test set"),
            x: &actual,
            y: &predicted,
            axes: (&format!("true {name}"), &format!("predicted {name}")),
            identity: true,
        },
    )?
    .to_vec();
    files.extend(render(
        dir,
        "residuals",
        &Scatter {
            title: format!("{title}: test set residuals"),
            x: &predicted,
            y: &residuals,
            axes: (&format!("predicted {name}"), "true - predicted"),
            identity: false,
        },
    )?);
    Ok(files)
}

/// The first 18 test images with true and predicted labels, and the 18 mistakes made with
/// the highest probability.
fn sample_grid<'a>(
    test: &'a data::Samples,
    labels: &[usize],
    probabilities: &[f32],
    names: &[String],
    shape: [usize; 3],
    title: &str,
) -> (ImageGrid<'a>, ImageGrid<'a>) {
    let n = names.len().max(1);
    let truth = test.targets.labels().unwrap_or(&[]);
    let caption = |i: usize| {
        let mark = if labels[i] == truth[i] { "" } else { "✗ " };
        format!(
            "{mark}true {}\npredicted {} {:.0}%",
            names[truth[i]],
            names[labels[i]],
            100.0 * probabilities[i * n + labels[i]]
        )
    };
    let first: Vec<usize> = (0..test.len().min(18)).collect();
    let mut mistakes: Vec<usize> = (0..test.len()).filter(|&i| labels[i] != truth[i]).collect();
    mistakes.sort_by(|&a, &b| {
        probabilities[b * n + labels[b]].total_cmp(&probabilities[a * n + labels[a]])
    });
    mistakes.truncate(18);
    let grid = |items: &[usize], what: &str| ImageGrid {
        title: format!("{title}: {what}"),
        images: items.iter().map(|&i| test.item(i)).collect(),
        shape,
        captions: items.iter().map(|&i| caption(i)).collect(),
    };
    (
        grid(&first, "test images, true and predicted classes"),
        grid(&mistakes, "the most confident mistakes on the test set"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use trainer::{EpochRecord, Outcome};

    fn history() -> History {
        History {
            epochs: (1..=6)
                .map(|e| EpochRecord {
                    epoch: e,
                    loss: 1.0 / e as f64,
                    score: 0.5 + 0.05 * e as f64,
                    val_loss: Some(1.2 / e as f64),
                    val_score: Some(0.45 + 0.05 * e as f64),
                    lr: if e > 3 { 1e-4 } else { 1e-3 },
                    seconds: 1.0,
                })
                .collect(),
            outcome: Outcome::EarlyStopped { best_epoch: 4 },
        }
    }

    #[test]
    fn every_chart_is_written_as_svg_and_png() {
        let dir = tempfile::tempdir().unwrap();
        let out = Output::create(dir.path()).unwrap();
        let h = history();
        let curves = Curves {
            title: "iris, MLP (10), validation".into(),
            history: &h,
            score: "accuracy",
            held_out: HeldOut::Validation,
            kept: Some(4),
        };
        assert_eq!(curves.lr_changes(), [(4, 1e-4)]);
        let names = [
            "Iris-setosa".to_string(),
            "Iris-versicolor".into(),
            "Iris-virginica".into(),
        ];
        let matrix = vec![vec![10, 0, 0], vec![0, 9, 1], vec![0, 2, 8]];
        let rows = vec![
            (
                "a model with a long name".to_string(),
                vec![Some(0.9), Some(0.93)],
            ),
            ("another".to_string(), vec![Some(0.88), None]),
        ];
        let pixels: Vec<f32> = (0..16).map(|v| v as f32 * 16.0).collect();
        let written = [
            render(&out, "curves", &curves).unwrap(),
            render(
                &out,
                "confusion",
                &Confusion {
                    title: "t".into(),
                    matrix: &matrix,
                    names: &names,
                },
            )
            .unwrap(),
            render(
                &out,
                "bars",
                &Bars {
                    title: "t".into(),
                    axis: "test accuracy".into(),
                    series: &["report", "ours"],
                    rows: &rows,
                },
            )
            .unwrap(),
            render(
                &out,
                "scatter",
                &Scatter {
                    title: "t".into(),
                    x: &[1.0, 2.0],
                    y: &[1.1, 1.9],
                    axes: ("true", "predicted"),
                    identity: true,
                },
            )
            .unwrap(),
            render(
                &out,
                "samples",
                &ImageGrid {
                    title: "t".into(),
                    images: vec![&pixels, &pixels],
                    shape: [1, 4, 4],
                    captions: vec!["true 1\npredicted 1".into(), "✗ true 2\npredicted 1".into()],
                },
            )
            .unwrap(),
        ];
        for [svg, png] in written {
            let text = std::fs::read_to_string(out.path(&svg)).unwrap();
            assert!(text.starts_with("<svg"), "{svg}");
            let image = image::open(out.path(&png)).unwrap().to_rgb8();
            // Not blank: text and lines darken some pixels.
            assert!(image.pixels().any(|p| p.0[0] < 100), "{png} is blank");
        }
        let svg = std::fs::read_to_string(out.path("confusion.svg")).unwrap();
        assert!(
            svg.contains("Iris-versicolor") && svg.contains("90%"),
            "full names and shares"
        );
        let svg = std::fs::read_to_string(out.path("curves.svg")).unwrap();
        assert!(svg.contains("weights kept: epoch 4") && svg.contains("learning rate 1e-4"));
        let svg = std::fs::read_to_string(out.path("samples.svg")).unwrap();
        assert!(
            svg.contains("href=\"data:image/png;base64,"),
            "images embedded as PNG"
        );
        assert!(
            svg.len() < 20_000,
            "no rectangle per pixel: {} bytes",
            svg.len()
        );
    }

    #[test]
    fn the_best_trials_curves_overlay_with_a_legend() {
        let dir = tempfile::tempdir().unwrap();
        let out = Output::create(dir.path()).unwrap();
        let overlay = Overlay {
            title: "iris: training loss of the 2 best trials".into(),
            axis: "training loss".into(),
            series: vec![
                ("(10, 5) relu".into(), vec![(1.0, 1.0), (2.0, 0.5)]),
                ("(32,) tanh".into(), vec![(1.0, 0.9), (2.0, 0.7)]),
            ],
        };
        let [svg, png] = render(&out, "overlay", &overlay).unwrap();
        let text = std::fs::read_to_string(out.path(&svg)).unwrap();
        assert!(
            text.contains("(10, 5) relu") && text.contains("(32,) tanh"),
            "legend"
        );
        assert!(image::open(out.path(&png)).is_ok());
    }
}
