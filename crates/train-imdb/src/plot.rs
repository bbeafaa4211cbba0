//! `curves.png`: loss (left) and accuracy (right) per epoch, training in blue,
//! validation in orange, drawn straight into an RGB image (no font needed:
//! grid lines at 0.1 steps of each panel's range).

use image::{Rgb, RgbImage};

const W: u32 = 900;
const H: u32 = 400;
const BLUE: Rgb<u8> = Rgb([31, 119, 180]);
const ORANGE: Rgb<u8> = Rgb([255, 127, 14]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const AXIS: Rgb<u8> = Rgb([60, 60, 60]);

fn line(img: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb<u8>) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (x0, y0, dx + dy);
    loop {
        for (ox, oy) in [(0, 0), (1, 0), (0, 1)] {
            let (px, py) = (x + ox, y + oy);
            if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                img.put_pixel(px as u32, py as u32, c);
            }
        }
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

fn panel(img: &mut RgbImage, x0: i64, series: &[(&[f64], Rgb<u8>)]) {
    let (pw, ph, top, left) = (W as i64 / 2 - 60, H as i64 - 60, 20i64, x0 + 40);
    let vals: Vec<f64> = series.iter().flat_map(|(s, _)| s.iter().copied()).filter(|v| v.is_finite()).collect();
    let (mut lo, mut hi) = vals.iter().fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if vals.is_empty() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let pad = (hi - lo) * 0.05;
    let (lo, hi) = (lo - pad, hi + pad);
    for i in 0..=10 {
        let y = top + ph - (ph * i) / 10;
        line(img, (left, y), (left + pw, y), GRID);
    }
    line(img, (left, top), (left, top + ph), AXIS);
    line(img, (left, top + ph), (left + pw, top + ph), AXIS);
    let n = series.iter().map(|(s, _)| s.len()).max().unwrap_or(0).max(2);
    for (s, c) in series {
        let pts: Vec<(i64, i64)> = s
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let x = left + (pw * i as i64) / (n as i64 - 1);
                let y = top + ph - ((v - lo) / (hi - lo) * ph as f64) as i64;
                (x, y)
            })
            .collect();
        for w in pts.windows(2) {
            line(img, w[0], w[1], *c);
        }
        for &(x, y) in &pts {
            for dx in -2..=2 {
                for dy in -2..=2 {
                    let (px, py) = (x + dx, y + dy);
                    if px >= 0 && py >= 0 && (px as u32) < W && (py as u32) < H {
                        img.put_pixel(px as u32, py as u32, *c);
                    }
                }
            }
        }
    }
}

/// Draws the curves; returns PNG-encodable pixels.
pub fn curves(loss: &[f64], val_loss: &[f64], acc: &[f64], val_acc: &[f64]) -> RgbImage {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    panel(&mut img, 0, &[(loss, BLUE), (val_loss, ORANGE)]);
    panel(&mut img, W as i64 / 2, &[(acc, BLUE), (val_acc, ORANGE)]);
    img
}
