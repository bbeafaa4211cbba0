//! `curves.png` as the CLI contract promises it: two panels (loss, accuracy), each with the
//! training curve and the validation curve, axis labels and a legend, drawn with text from
//! the embedded font (no system font is needed).

use image::{Rgb, RgbImage};
use std::path::PathBuf;
use training::report::{PLOT_H, PLOT_W, TRAIN_COLOUR, VALIDATION_COLOUR};
use training::{EpochRecord, TrainingReport};

const TRAIN: Rgb<u8> = Rgb(TRAIN_COLOUR);
const VAL: Rgb<u8> = Rgb(VALIDATION_COLOUR);

fn report(epochs: usize, validation: bool) -> TrainingReport {
    let mut r = TrainingReport::new();
    for e in 1..=epochs {
        let t = e as f64;
        r.push(EpochRecord {
            epoch: e,
            loss: 1.5 / t,
            accuracy: 1.0 - 0.6 / t,
            val_loss: validation.then_some(1.7 / t + 0.1),
            val_accuracy: validation.then_some(0.95 - 0.6 / t),
            seconds: 1.0,
            train_seconds: None,
        });
    }
    r
}

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("curves-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Pixels of `colour` in the rectangle `[x0, x1) x [y0, y1)`.
fn count(img: &RgbImage, (x0, x1): (u32, u32), (y0, y1): (u32, u32), colour: Rgb<u8>) -> usize {
    (y0..y1)
        .flat_map(|y| (x0..x1).map(move |x| (x, y)))
        .filter(|&(x, y)| *img.get_pixel(x, y) == colour)
        .count()
}

/// Dark (text or axis) pixels in the rectangle.
fn dark(img: &RgbImage, (x0, x1): (u32, u32), (y0, y1): (u32, u32)) -> usize {
    (y0..y1)
        .flat_map(|y| (x0..x1).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 110))
        .count()
}

/// Pixels neither white nor black nor a curve colour: grey levels, as the anti-aliased edges
/// of rendered glyphs have.
fn grey(img: &RgbImage, (x0, x1): (u32, u32), (y0, y1): (u32, u32)) -> usize {
    (y0..y1)
        .flat_map(|y| (x0..x1).map(move |x| (x, y)))
        .filter(|&(x, y)| {
            let [r, g, b] = img.get_pixel(x, y).0;
            r == g && g == b && (30..200).contains(&r)
        })
        .count()
}

#[test]
fn curves_png_has_both_panels_both_curves_and_text() {
    let dir = out_dir("full");
    report(8, true).write_all(&dir).unwrap();
    let bytes = std::fs::read(dir.join("curves.png")).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .unwrap()
        .to_rgb8();
    assert_eq!((img.width(), img.height()), (2 * PLOT_W, PLOT_H));
    let all_rows = (0, PLOT_H);
    for (panel, x0) in [("loss", 0), ("accuracy", PLOT_W)] {
        let cols = (x0, x0 + PLOT_W);
        let (t, v) = (
            count(&img, cols, all_rows, TRAIN),
            count(&img, cols, all_rows, VAL),
        );
        assert!(t > 300, "{panel}: training curve drawn ({t} px)");
        assert!(v > 300, "{panel}: validation curve drawn ({v} px)");
        // The caption band (panel title) holds only text: dark glyph pixels and the grey
        // levels of their anti-aliased edges.
        let caption = ((x0 + 100, x0 + PLOT_W - 100), (0, 32));
        let (d, g) = (
            dark(&img, caption.0, caption.1),
            grey(&img, caption.0, caption.1),
        );
        assert!(
            d > 20 && g > 10,
            "{panel}: title text drawn ({d} dark, {g} grey px)"
        );
        // The axis description left of the y tick labels ("loss" / "accuracy", rotated).
        let ylabel = ((x0 + 8, x0 + 30), (60, PLOT_H - 60));
        let d = dark(&img, ylabel.0, ylabel.1);
        assert!(d > 10, "{panel}: y axis label drawn ({d} px)");
        // The x tick labels and "epoch" below the plot area.
        let xlabel = ((x0 + 80, x0 + PLOT_W - 20), (PLOT_H - 35, PLOT_H));
        let d = dark(&img, xlabel.0, xlabel.1);
        assert!(d > 40, "{panel}: x axis labels drawn ({d} px)");
        // The legend (upper or lower right of the plot area, away from where the curves
        // end) names both curves: anti-aliased glyphs and a sample of each colour.
        let legend = ((x0 + PLOT_W - 150, x0 + PLOT_W - 15), (35, PLOT_H - 55));
        let g = grey(&img, legend.0, legend.1);
        assert!(g > 15, "{panel}: legend text drawn ({g} grey px)");
        for (name, c) in [("training", TRAIN), ("validation", VAL)] {
            let n = count(&img, legend.0, legend.1, c);
            assert!(
                n >= 20,
                "{panel}: legend sample of the {name} curve ({n} px)"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn without_validation_only_the_training_curve_is_drawn() {
    let dir = out_dir("train-only");
    report(3, false).write_all(&dir).unwrap();
    let img = image::open(dir.join("curves.png")).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (2 * PLOT_W, PLOT_H));
    for x0 in [0, PLOT_W] {
        let cols = (x0, x0 + PLOT_W);
        assert!(count(&img, cols, (0, PLOT_H), TRAIN) > 100);
        assert_eq!(count(&img, cols, (0, PLOT_H), VAL), 0);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn one_epoch_and_non_finite_values_still_draw() {
    let dir = out_dir("one");
    let mut r = report(1, true);
    r.epochs[0].val_loss = Some(f64::NAN);
    r.write_all(&dir).unwrap();
    let img = image::open(dir.join("curves.png")).unwrap().to_rgb8();
    // One epoch: a marker per curve; the NaN validation loss is left out.
    assert!(count(&img, (0, PLOT_W), (0, PLOT_H), TRAIN) > 20);
    assert!(count(&img, (PLOT_W, 2 * PLOT_W), (0, PLOT_H), VAL) > 20);
    let empty = out_dir("empty");
    TrainingReport::new().write_all(&empty).unwrap();
    assert!(image::open(empty.join("curves.png")).is_ok());
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&empty).ok();
}
