//! Training reports shared by the training programs (`finetune`, `train-imdb`).
//!
//! A [`TrainingReport`] holds one [`EpochRecord`] per epoch
//! (`{epoch, loss, accuracy, val_loss, val_accuracy, seconds}`) plus free-form
//! top-level fields (`test_loss`, `train_examples`, ...). It writes:
//! - `metrics.json`: `{"epochs": [...], <extra fields>}` (the CLI contract's schema),
//! - `metrics.csv`: `epoch,loss,accuracy,val_loss,val_accuracy,seconds` (empty cell = no value),
//! - `curves.png`: two panels (loss, accuracy) with the training curve in blue and the
//!   validation curve in orange, drawn with the `image` crate and a built-in 5x7 font.
//!
//! Every file is written to a temporary name in the same folder and then renamed.

use image::{Rgb, RgbImage};
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

    /// Draws the training curves (`curves.png`).
    pub fn plot(&self) -> RgbImage {
        let loss_train: Vec<(f64, f64)> = self
            .epochs
            .iter()
            .map(|r| (r.epoch as f64, r.loss))
            .collect();
        let loss_val: Vec<(f64, f64)> = self
            .epochs
            .iter()
            .filter_map(|r| r.val_loss.map(|v| (r.epoch as f64, v)))
            .collect();
        let acc_train: Vec<(f64, f64)> = self
            .epochs
            .iter()
            .map(|r| (r.epoch as f64, r.accuracy))
            .collect();
        let acc_val: Vec<(f64, f64)> = self
            .epochs
            .iter()
            .filter_map(|r| r.val_accuracy.map(|v| (r.epoch as f64, v)))
            .collect();
        let mut img = RgbImage::from_pixel(PLOT_W * 2, PLOT_H, WHITE);
        draw_panel(&mut img, 0, "loss", &loss_train, &loss_val);
        draw_panel(&mut img, PLOT_W, "accuracy", &acc_train, &acc_val);
        img
    }

    pub fn write_plot(&self, path: &Path) -> Result<(), ReportError> {
        let img = self.plot();
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

const PLOT_W: u32 = 480;
const PLOT_H: u32 = 360;
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);
const GREY: Rgb<u8> = Rgb([220, 220, 220]);
const BLUE: Rgb<u8> = Rgb([31, 119, 180]);
const ORANGE: Rgb<u8> = Rgb([255, 127, 14]);

fn draw_panel(img: &mut RgbImage, x0: u32, title: &str, train: &[(f64, f64)], val: &[(f64, f64)]) {
    let (left, right, top, bottom) = (
        x0 as i64 + 60,
        (x0 + PLOT_W) as i64 - 20,
        30i64,
        PLOT_H as i64 - 40,
    );
    let all = train.iter().chain(val.iter()).filter(|p| p.1.is_finite());
    let (mut xmin, mut xmax, mut ymin, mut ymax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        xmin = xmin.min(x);
        xmax = xmax.max(x);
        ymin = ymin.min(y);
        ymax = ymax.max(y);
    }
    if xmin > xmax {
        (xmin, xmax, ymin, ymax) = (1.0, 2.0, 0.0, 1.0);
    }
    if xmax - xmin < 1e-12 {
        xmax = xmin + 1.0;
    }
    if ymax - ymin < 1e-12 {
        ymin -= 0.5;
        ymax += 0.5;
    }
    let pad = (ymax - ymin) * 0.05;
    let (ymin, ymax) = (ymin - pad, ymax + pad);
    let px = |x: f64| left + ((x - xmin) / (xmax - xmin) * (right - left) as f64).round() as i64;
    let py = |y: f64| bottom - ((y - ymin) / (ymax - ymin) * (bottom - top) as f64).round() as i64;

    // Grid and y tick labels (5 ticks).
    for i in 0..=4 {
        let v = ymin + (ymax - ymin) * i as f64 / 4.0;
        let y = py(v);
        line(img, left, y, right, y, GREY);
        let label = format_tick(v);
        text(img, left - 6 - text_width(&label), y - 3, &label, BLACK);
    }
    // x ticks at integer epochs (at most ~10 labels).
    let span = (xmax - xmin).max(1.0);
    let step = ((span / 10.0).ceil() as i64).max(1);
    let mut e = xmin.ceil() as i64;
    while (e as f64) <= xmax + 1e-9 {
        let x = px(e as f64);
        line(img, x, bottom, x, bottom + 4, BLACK);
        let label = e.to_string();
        text(img, x - text_width(&label) / 2, bottom + 8, &label, BLACK);
        e += step;
    }
    // Axes.
    line(img, left, top, left, bottom, BLACK);
    line(img, left, bottom, right, bottom, BLACK);
    text(
        img,
        (left + right) / 2 - text_width("epoch") / 2,
        bottom + 22,
        "epoch",
        BLACK,
    );
    text(img, left, 10, title, BLACK);
    // Legend.
    let lx = right - 70;
    line(img, lx, 14, lx + 14, 14, BLUE);
    text(img, lx + 18, 11, "train", BLUE);
    if !val.is_empty() {
        line(img, lx, 26, lx + 14, 26, ORANGE);
        text(img, lx + 18, 23, "val", ORANGE);
    }
    for (series, colour) in [(train, BLUE), (val, ORANGE)] {
        let pts: Vec<(i64, i64)> = series
            .iter()
            .filter(|p| p.1.is_finite())
            .map(|&(x, y)| (px(x), py(y)))
            .collect();
        for w in pts.windows(2) {
            thick_line(img, w[0].0, w[0].1, w[1].0, w[1].1, colour);
        }
        for &(x, y) in &pts {
            for dy in -2..=2 {
                for dx in -2..=2 {
                    put(img, x + dx, y + dy, colour);
                }
            }
        }
    }
}

fn format_tick(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e4).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn line(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb<u8>) {
    // Bresenham.
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (x0, y0, dx + dy);
    loop {
        put(img, x, y, c);
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

fn thick_line(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, c: Rgb<u8>) {
    for o in -1..=1 {
        line(img, x0, y0 + o, x1, y1 + o, c);
        line(img, x0 + o, y0, x1 + o, y1, c);
    }
}

fn text_width(s: &str) -> i64 {
    s.chars().count() as i64 * 6
}

/// Draws text with a 5x7 bitmap font (digits, lower-case letters, `.`, `-`, `+`, `e`).
fn text(img: &mut RgbImage, x: i64, y: i64, s: &str, c: Rgb<u8>) {
    for (i, ch) in s.chars().enumerate() {
        let rows = glyph(ch);
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..5 {
                if bits & (0x10 >> col) != 0 {
                    put(img, x + i as i64 * 6 + col, y + r as i64, c);
                }
            }
        }
    }
}

fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        'a' => [0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F],
        'c' => [0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E],
        'e' => [0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E],
        'h' => [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11],
        'i' => [0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E],
        'l' => [0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'n' => [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11],
        'o' => [0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E],
        'p' => [0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10],
        'r' => [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10],
        's' => [0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E],
        't' => [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06],
        'u' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D],
        'v' => [0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'y' => [0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E],
        _ => [0x00; 7],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
