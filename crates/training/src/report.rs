//! Training reports shared by the training programs (`finetune`, `train-imdb`).
//!
//! A [`TrainingReport`] holds one [`EpochRecord`] per epoch
//! (`{epoch, loss, accuracy, val_loss, val_accuracy, seconds}`) plus free-form
//! top-level fields (`test_loss`, `train_examples`, ...). It writes:
//! - `metrics.json`: `{"epochs": [...], <extra fields>}` (the CLI contract's schema),
//! - `metrics.csv`: `epoch,loss,accuracy,val_loss,val_accuracy,seconds` (empty cell = no value),
//! - `curves.png`: two panels (loss, accuracy) with the training curve in blue and the
//!   validation curve in orange, axis labels and a legend, drawn with `plotters` (bitmap
//!   backend, `ab_glyph` text) in DejaVu Sans embedded by the `dejavu` crate (no system
//!   font is read).
//!
//! Every file is written to a temporary name in the same folder and then renamed.

use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::FontStyle;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid metrics file: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("{path}: cannot write PNG: {msg}")]
    Png { path: PathBuf, msg: String },
    #[error("cannot draw the training curves: {0}")]
    Plot(String),
}

/// Metrics of one epoch. `epoch` counts from 1. Validation values are `None`
/// (JSON `null`, empty CSV cell) when there is no validation set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub loss: f64,
    pub accuracy: f64,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub seconds: f64,
    /// Seconds of the training pass alone (without validation), for programs that
    /// measure it (`train-imdb`); left out of `metrics.json` when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_seconds: Option<f64>,
}

/// Per-epoch records plus extra top-level fields of `metrics.json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrainingReport {
    pub epochs: Vec<EpochRecord>,
    /// Extra top-level fields, written after `epochs` (e.g. `test_accuracy`).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl TrainingReport {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, record: EpochRecord) {
        self.epochs.push(record);
    }

    /// Sets an extra top-level field of `metrics.json`.
    pub fn set(&mut self, key: &str, value: impl Into<serde_json::Value>) {
        self.extra.insert(key.to_string(), value.into());
    }

    /// The `metrics.json` document.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        map.insert(
            "epochs".into(),
            serde_json::to_value(&self.epochs).unwrap_or(serde_json::Value::Array(vec![])),
        );
        for (k, v) in &self.extra {
            if k != "epochs" {
                map.insert(k.clone(), v.clone());
            }
        }
        serde_json::Value::Object(map)
    }

    /// Parses a `metrics.json` document (for resuming a run).
    pub fn from_json(value: &serde_json::Value) -> Result<Self, String> {
        let obj = value.as_object().ok_or("not a JSON object")?;
        let epochs = match obj.get("epochs") {
            Some(e) => serde_json::from_value::<Vec<EpochRecord>>(e.clone())
                .map_err(|e| format!("field `epochs`: {e}"))?,
            None => return Err("missing field `epochs`".into()),
        };
        let extra = obj
            .iter()
            .filter(|(k, _)| k.as_str() != "epochs")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(TrainingReport { epochs, extra })
    }

    /// Reads a `metrics.json` file.
    pub fn read_json(path: &Path) -> Result<Self, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
            path: path.into(),
            source,
        })?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ReportError::Parse {
                path: path.into(),
                msg: e.to_string(),
            })?;
        Self::from_json(&value).map_err(|msg| ReportError::Parse {
            path: path.into(),
            msg,
        })
    }

    /// The `metrics.csv` text.
    pub fn to_csv(&self) -> String {
        let mut s = String::from("epoch,loss,accuracy,val_loss,val_accuracy,seconds\n");
        let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        for r in &self.epochs {
            s.push_str(&format!(
                "{},{},{},{},{},{}\n",
                r.epoch,
                r.loss,
                r.accuracy,
                opt(r.val_loss),
                opt(r.val_accuracy),
                r.seconds
            ));
        }
        s
    }

    pub fn write_json(&self, path: &Path) -> Result<(), ReportError> {
        let text = serde_json::to_string_pretty(&self.to_json()).unwrap_or_default();
        write_atomic(path, text.as_bytes())
    }

    pub fn write_csv(&self, path: &Path) -> Result<(), ReportError> {
        write_atomic(path, self.to_csv().as_bytes())
    }

    /// Draws the training curves (`curves.png`): a loss panel and an accuracy panel, each
    /// with the training curve and, when there is one, the validation curve, axis labels
    /// and a legend.
    pub fn plot(&self) -> Result<RgbImage, ReportError> {
        let curve = |f: &dyn Fn(&EpochRecord) -> Option<f64>| -> Curve {
            self.epochs
                .iter()
                .filter_map(|r| f(r).filter(|v| v.is_finite()).map(|v| (r.epoch as i64, v)))
                .collect()
        };
        let loss = (curve(&|r| Some(r.loss)), curve(&|r| r.val_loss));
        let accuracy = (curve(&|r| Some(r.accuracy)), curve(&|r| r.val_accuracy));
        let (w, h) = (PLOT_W * 2, PLOT_H);
        let mut buf = vec![255u8; w as usize * h as usize * 3];
        let drawn = (|| -> Result<(), Box<dyn std::error::Error>> {
            register_font()?;
            let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
            root.fill(&WHITE)?;
            let panels = root.split_evenly((1, 2));
            draw_panel(&panels[0], "loss", &loss.0, &loss.1)?;
            draw_panel(&panels[1], "accuracy", &accuracy.0, &accuracy.1)?;
            root.present()?;
            Ok(())
        })();
        drawn.map_err(|e| ReportError::Plot(e.to_string()))?;
        RgbImage::from_raw(w, h, buf)
            .ok_or_else(|| ReportError::Plot("the drawing buffer has the wrong size".into()))
    }

    pub fn write_plot(&self, path: &Path) -> Result<(), ReportError> {
        let img = self.plot()?;
        let mut bytes = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|e| ReportError::Png {
            path: path.into(),
            msg: e.to_string(),
        })?;
        write_atomic(path, &bytes)
    }

    /// Writes `metrics.json`, `metrics.csv` and `curves.png` into `dir` (created if needed).
    pub fn write_all(&self, dir: &Path) -> Result<(), ReportError> {
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
            path: dir.into(),
            source,
        })?;
        self.write_json(&dir.join("metrics.json"))?;
        self.write_csv(&dir.join("metrics.csv"))?;
        self.write_plot(&dir.join("curves.png"))
    }
}

/// [`model_folder::write_file_atomic`], its error naming `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    model_folder::write_file_atomic(path, bytes).map_err(|source| ReportError::Io {
        path: path.into(),
        source,
    })
}

// ---------------------------------------------------------------------------------------------
// Plotting

/// Width of one panel of `curves.png` (the image is two panels side by side: loss, accuracy).
pub const PLOT_W: u32 = 480;
/// Height of `curves.png`.
pub const PLOT_H: u32 = 360;
/// Colour of the training curves.
pub const TRAIN_COLOUR: [u8; 3] = [31, 119, 180];
/// Colour of the validation curves.
pub const VALIDATION_COLOUR: [u8; 3] = [255, 127, 14];

/// The family name plotters uses for its default text style.
const FONT_FAMILY: &str = "sans-serif";

/// Registers DejaVu Sans (embedded by the `dejavu` crate) as plotters' `sans-serif`: plotters
/// is built with `ab_glyph`, which reads no system font, so the PNG's text does not depend on
/// the fonts installed on the machine.
fn register_font() -> Result<(), String> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, dejavu::sans::regular())
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err("the embedded DejaVu Sans font cannot be read".into())
    }
}

/// `(epoch, value)` points of one curve, non-finite values left out.
type Curve = Vec<(i64, f64)>;

fn draw_panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    title: &str,
    train: &Curve,
    val: &Curve,
) -> Result<(), Box<dyn std::error::Error>> {
    let points = || train.iter().chain(val.iter());
    let (xmin, xmax) = (
        points().map(|p| p.0).min().unwrap_or(1),
        points().map(|p| p.0).max().unwrap_or(1),
    );
    let (mut ymin, mut ymax) = points().fold((f64::MAX, f64::MIN), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    if ymin > ymax {
        (ymin, ymax) = (0.0, 1.0);
    }
    if ymax - ymin < 1e-12 {
        ymin -= 0.5;
        ymax += 0.5;
    }
    // The legend goes where the curves end far from it: lower right when they end in the
    // upper half (a rising accuracy), else upper right (a falling loss).
    let ends_high = [train, val]
        .iter()
        .filter_map(|c| c.last())
        .any(|&(_, y)| (y - ymin) / (ymax - ymin) > 0.5);
    let pad = (ymax - ymin) * 0.08;
    let (ymin, ymax) = (ymin - pad, ymax + pad);
    // Half an epoch of room on each side so that the end markers are not cut; one epoch
    // alone is centred.
    let xpad = if xmin == xmax { 1.0 } else { 0.25 };
    let xrange = (xmin as f64 - xpad)..(xmax as f64 + xpad);
    let decimals = tick_decimals((ymax - ymin) / 6.0);

    let mut chart = ChartBuilder::on(area)
        .caption(title, (FONT_FAMILY, 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(xrange, ymin..ymax)?;
    let x_labels = ((xmax - xmin + 1) as usize).min(10);
    let x_format = |e: &f64| {
        if e.fract() == 0.0 {
            format!("{e:.0}")
        } else {
            String::new()
        }
    };
    let y_format = |v: &f64| format_tick(*v, decimals);
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(title)
        .x_labels(x_labels)
        .y_labels(6)
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(220, 220, 220))
        .label_style((FONT_FAMILY, 13))
        .axis_desc_style((FONT_FAMILY, 14))
        .draw()?;

    for (curve, colour, label) in [
        (train, TRAIN_COLOUR, "training"),
        (val, VALIDATION_COLOUR, "validation"),
    ] {
        if curve.is_empty() {
            continue;
        }
        let colour = RGBColor(colour[0], colour[1], colour[2]);
        let line = ShapeStyle::from(colour).stroke_width(2);
        let at = |&(e, v): &(i64, f64)| (e as f64, v);
        chart
            .draw_series(LineSeries::new(curve.iter().map(at), line))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], line));
        chart.draw_series(
            curve
                .iter()
                .map(|p| Circle::new(at(p), 3, ShapeStyle::from(colour).filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(if ends_high {
            SeriesLabelPosition::LowerRight
        } else {
            SeriesLabelPosition::UpperRight
        })
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT_FAMILY, 14))
        .draw()?;
    Ok(())
}

/// Decimals that tell ticks `step` apart (at least one, at most six).
fn tick_decimals(step: f64) -> usize {
    if step.is_finite() && step > 0.0 {
        (-step.log10().floor()).clamp(1.0, 6.0) as usize
    } else {
        3
    }
}

fn format_tick(v: f64, decimals: usize) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e4).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.decimals$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    const BLUE: Rgb<u8> = Rgb(TRAIN_COLOUR);
    const ORANGE: Rgb<u8> = Rgb(VALIDATION_COLOUR);

    fn sample() -> TrainingReport {
        let mut r = TrainingReport::new();
        r.push(EpochRecord {
            epoch: 1,
            loss: 1.0,
            accuracy: 0.4,
            val_loss: Some(1.1),
            val_accuracy: Some(0.35),
            seconds: 2.5,
            train_seconds: None,
        });
        r.push(EpochRecord {
            epoch: 2,
            loss: 0.5,
            accuracy: 0.8,
            val_loss: None,
            val_accuracy: None,
            seconds: 2.0,
            train_seconds: None,
        });
        r.set("test_accuracy", 0.75);
        r
    }

    #[test]
    fn json_has_contract_fields_and_round_trips() {
        let r = sample();
        let j = r.to_json();
        let e0 = &j["epochs"][0];
        for key in [
            "epoch",
            "loss",
            "accuracy",
            "val_loss",
            "val_accuracy",
            "seconds",
        ] {
            assert!(e0.get(key).is_some(), "missing {key}");
        }
        assert_eq!(e0["val_accuracy"].as_f64(), Some(0.35));
        assert!(j["epochs"][1]["val_loss"].is_null());
        assert_eq!(j["test_accuracy"].as_f64(), Some(0.75));
        assert_eq!(TrainingReport::from_json(&j).unwrap(), r);
    }

    #[test]
    fn csv_rows() {
        let csv = sample().to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "epoch,loss,accuracy,val_loss,val_accuracy,seconds"
        );
        assert_eq!(lines[1], "1,1,0.4,1.1,0.35,2.5");
        assert_eq!(lines[2], "2,0.5,0.8,,,2");
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn write_all_files_and_plot_has_curves() {
        let dir = std::env::temp_dir().join(format!("report-test-{}", std::process::id()));
        let r = sample();
        r.write_all(&dir).unwrap();
        let back = TrainingReport::read_json(&dir.join("metrics.json")).unwrap();
        assert_eq!(back, r);
        let img = image::open(dir.join("curves.png")).unwrap().to_rgb8();
        assert_eq!((img.width(), img.height()), (2 * PLOT_W, PLOT_H));
        let blue = img.pixels().filter(|p| **p == BLUE).count();
        let orange = img.pixels().filter(|p| **p == ORANGE).count();
        assert!(blue > 100, "train curve drawn ({blue} px)");
        assert!(orange > 20, "validation points drawn ({orange} px)");
        // No temporary files left behind.
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn read_json_reports_bad_file() {
        let dir = std::env::temp_dir().join(format!("report-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("metrics.json");
        std::fs::write(&p, "{\"nope\": 1}").unwrap();
        let err = TrainingReport::read_json(&p).unwrap_err().to_string();
        assert!(
            err.contains("metrics.json") && err.contains("epochs"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
