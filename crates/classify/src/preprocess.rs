//! Image preprocessing as the TF Hub image modules expect it, reproducing TensorFlow's ops:
//! `tf.image.decode_image` -> `tf.image.convert_image_dtype(float32)` (x * (1/255)) ->
//! optional `tf.image.central_crop(fraction)` -> `tf.image.resize(size, "bilinear",
//! antialias=False)` (half-pixel centers) -> `[H, W, 3]` RGB in `[0, 1]`.

use std::path::Path;

/// An RGB float image, row-major `[height, width, 3]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

/// Decodes a JPEG/PNG file into `[0, 1]` floats (`u8 * (1/255)` as TF's convert_image_dtype).
pub fn load(path: &Path) -> anyhow::Result<Image> {
    let img = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| anyhow::anyhow!("{}: cannot read image: {e}", path.display()))?
        .decode()
        .map_err(|e| anyhow::anyhow!("{}: cannot decode image: {e}", path.display()))?
        .to_rgb8();
    let (w, h) = img.dimensions();
    let scale = 1.0f32 / 255.0;
    Ok(Image {
        height: h as usize,
        width: w as usize,
        data: img
            .into_raw()
            .into_iter()
            .map(|v| v as f32 * scale)
            .collect(),
    })
}

/// `tf.image.central_crop(image, fraction)`.
pub fn central_crop(img: &Image, fraction: f64) -> Image {
    if fraction >= 1.0 {
        return img.clone();
    }
    let start = |n: usize| ((n as f64 - n as f64 * fraction) / 2.0) as usize;
    let (y0, x0) = (start(img.height), start(img.width));
    let (h, w) = (img.height - 2 * y0, img.width - 2 * x0);
    let mut data = Vec::with_capacity(h * w * 3);
    for y in y0..y0 + h {
        let row = (y * img.width + x0) * 3;
        data.extend_from_slice(&img.data[row..row + w * 3]);
    }
    Image {
        height: h,
        width: w,
        data,
    }
}

struct Interp {
    lower: usize,
    upper: usize,
    lerp: f32,
}

/// TF's `compute_interpolation_weights` with `HalfPixelScaler`.
fn weights(out_size: usize, in_size: usize) -> Vec<Interp> {
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|i| {
            let x = (i as f32 + 0.5) * scale - 0.5;
            let xf = x.floor();
            Interp {
                lower: (xf as i64).max(0) as usize,
                upper: (x.ceil() as i64).min(in_size as i64 - 1).max(0) as usize,
                lerp: x - xf,
            }
        })
        .collect()
}

/// `tf.image.resize(img, [out_h, out_w], method="bilinear", antialias=False)`.
pub fn resize_bilinear(img: &Image, out_h: usize, out_w: usize) -> Image {
    if img.height == out_h && img.width == out_w {
        return img.clone();
    }
    let ys = weights(out_h, img.height);
    let xs = weights(out_w, img.width);
    let mut data = vec![0f32; out_h * out_w * 3];
    let px = |y: usize, x: usize, c: usize| img.data[(y * img.width + x) * 3 + c];
    for (oy, wy) in ys.iter().enumerate() {
        for (ox, wx) in xs.iter().enumerate() {
            for c in 0..3 {
                let tl = px(wy.lower, wx.lower, c);
                let tr = px(wy.lower, wx.upper, c);
                let bl = px(wy.upper, wx.lower, c);
                let br = px(wy.upper, wx.upper, c);
                let top = tl + (tr - tl) * wx.lerp;
                let bottom = bl + (br - bl) * wx.lerp;
                data[(oy * out_w + ox) * 3 + c] = top + (bottom - top) * wy.lerp;
            }
        }
    }
    Image {
        height: out_h,
        width: out_w,
        data,
    }
}

/// Load, crop and resize one file for the network.
pub fn prepare(path: &Path, size: usize, crop: f64) -> anyhow::Result<Image> {
    let img = load(path)?;
    Ok(resize_bilinear(&central_crop(&img, crop), size, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_matches_tf_half_pixel_bilinear() {
        // tf.image.resize([[0,1],[2,3]] as [1,2,2,1], [4,4], "bilinear") row 0:
        // [0, 0.25, 0.75, 1] (values computed by TF 2.21); here on 3 equal channels.
        let data: Vec<f32> = [0.0f32, 1.0, 2.0, 3.0]
            .iter()
            .flat_map(|&v| [v, v, v])
            .collect();
        let out = resize_bilinear(
            &Image {
                height: 2,
                width: 2,
                data,
            },
            4,
            4,
        );
        let ch0: Vec<f32> = out.data.iter().step_by(3).copied().collect();
        assert_eq!(&ch0[0..4], &[0.0, 0.25, 0.75, 1.0]);
        assert_eq!(&ch0[4..8], &[0.5, 0.75, 1.25, 1.5]);
        assert_eq!(&ch0[12..16], &[2.0, 2.25, 2.75, 3.0]);
    }

    #[test]
    fn central_crop_matches_tf() {
        // tf.image.central_crop on 10x7 with 0.875: start = int((10 - 8.75)/2) = 0, int((7-6.125)/2) = 0
        let img = Image {
            height: 10,
            width: 7,
            data: vec![0.0; 210],
        };
        let c = central_crop(&img, 0.875);
        assert_eq!((c.height, c.width), (10, 7));
        let img = Image {
            height: 100,
            width: 80,
            data: (0..24000).map(|v| v as f32).collect(),
        };
        let c = central_crop(&img, 0.5);
        assert_eq!((c.height, c.width), (50, 40));
        assert_eq!(c.data[0], ((25 * 80 + 20) * 3) as f32);
    }
}
