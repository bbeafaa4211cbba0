//! Image preprocessing reproducing TensorFlow's ops exactly (shared by `classify`,
//! `finetune` and `stylize`):
//!
//! - [`decode_rgb8`]: `tf.io.decode_image(channels=3)` (format guessed from the bytes); PNG
//!   exactly (the `image` crate); JPEG exactly by the `jpeg-tf` crate (libjpeg-turbo's fast
//!   integer IDCT, fancy upsampling and fixed-point YCbCr, as TF's defaults) for sequential
//!   and progressive Huffman JPEGs with 1 or 3 components. Arithmetic-coded, 12-bit and CMYK
//!   JPEGs, and progressive ones with incomplete coefficients, fall back to the `image`
//!   crate's decoder, whose pixels differ from TF's by a few levels (another IDCT and
//!   upsampling).
//! - [`Image::from_rgb8`]: `tf.image.convert_image_dtype(float32)`, i.e. `u8 * (1/255)`;
//!   [`Image::from_rgb8_div255`]: `u8 / 255` (numpy style; differs in the last bit for
//!   about half the values).
//! - [`Image::central_crop`]: `tf.image.central_crop(fraction)`;
//!   [`Image::central_square`]: the central `min(h, w)` square (`crop_to_bounding_box`).
//! - [`Image::resize_bilinear`]: `tf.image.resize(..., "bilinear", antialias=False)` (TF2:
//!   half-pixel centres); [`Image::resize_to_fit`]: the same with `preserve_aspect_ratio=True`.
//! - [`Image::avg_pool3`]: `tf.nn.avg_pool(ksize=3, strides=1, padding="SAME")`.

use burn::tensor::{Device, Tensor, TensorData};
use std::path::{Path, PathBuf};

/// An RGB float image, row-major `[height, width, 3]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: cannot read image: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot decode image: {msg}")]
    Decode { path: PathBuf, msg: String },
}

/// Largest width or height decoded.
pub const MAX_SIDE: u32 = 16384;
/// Largest number of pixels decoded: the pipeline holds the RGB8 image and its f32 copy
/// (15 bytes per pixel), so this keeps an image under ~1.5 GB whatever its format.
pub const MAX_PIXELS: u64 = 100_000_000;
/// Most bytes the decoder itself may allocate.
const MAX_DECODER_ALLOC: u64 = 1 << 30;

/// Decodes a JPEG/PNG file (format guessed from its bytes) to 8-bit RGB. The dimensions are
/// read from the header and checked against [`MAX_SIDE`] and [`MAX_PIXELS`] before anything
/// is decoded or expanded (a small PNG can declare 23000 x 23000 pixels).
pub fn decode_rgb8(path: &Path) -> Result<image::RgbImage, ImageError> {
    let read = |source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    };
    let decode_err = |msg: String| ImageError::Decode {
        path: path.to_path_buf(),
        msg,
    };
    if let Some(img) = decode_jpeg_tf(path)? {
        return Ok(img);
    }
    let open = |limited: bool| -> Result<image::ImageReader<std::io::BufReader<std::fs::File>>, ImageError> {
        let mut r = image::ImageReader::open(path)
            .map_err(read)?
            .with_guessed_format()
            .map_err(read)?;
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(MAX_SIDE);
        limits.max_image_height = Some(MAX_SIDE);
        limits.max_alloc = Some(MAX_DECODER_ALLOC);
        if limited {
            r.limits(limits);
        }
        Ok(r)
    };
    // The header alone (nothing allocated by size), checked by our rule for a clear message;
    // then decoded under the decoder's own limits as well.
    let (w, h) = open(false)?
        .into_dimensions()
        .map_err(|e| decode_err(e.to_string()))?;
    check_dimensions(w, h).map_err(decode_err)?;
    let img = open(true)?
        .decode()
        .map_err(|e| decode_err(e.to_string()))?;
    // No copy when the file is already 8-bit RGB.
    Ok(img.into_rgb8())
}

/// JPEG files through `jpeg-tf` (TF's bytes exactly): `None` when the file is not a JPEG or
/// is one `jpeg-tf` does not reproduce (arithmetic-coded, 12-bit, CMYK, progressive with
/// incomplete coefficients), left to the `image` crate. The dimensions are checked from the
/// SOF header before anything is allocated by size; the file itself is read whole, so it is
/// refused above `MAX_DECODER_ALLOC` bytes.
fn decode_jpeg_tf(path: &Path) -> Result<Option<image::RgbImage>, ImageError> {
    use std::io::Read;
    let read = |source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    };
    let decode_err = |msg: String| ImageError::Decode {
        path: path.to_path_buf(),
        msg,
    };
    let mut file = std::fs::File::open(path).map_err(read)?;
    let mut head = [0u8; 3];
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]).map_err(read)? {
            0 => break,
            k => n += k,
        }
    }
    if !jpeg_tf::is_jpeg(&head[..n]) {
        return Ok(None);
    }
    let len = file.metadata().map_err(read)?.len();
    if len > MAX_DECODER_ALLOC {
        return Err(decode_err(format!(
            "the file is {len} bytes, more than the {MAX_DECODER_ALLOC} read"
        )));
    }
    let mut data = head.to_vec();
    file.take(MAX_DECODER_ALLOC)
        .read_to_end(&mut data)
        .map_err(read)?;
    match jpeg_tf::decode_rgb(&data, check_dimensions) {
        Ok(img) => {
            let rgb = image::RgbImage::from_raw(img.width, img.height, img.data)
                .expect("jpeg-tf gives width * height * 3 bytes");
            Ok(Some(rgb))
        }
        Err(jpeg_tf::Error::Unsupported(_)) => Ok(None),
        Err(e) => Err(decode_err(e.to_string())),
    }
}

/// `Ok` when a `w x h` image is within [`MAX_SIDE`] and [`MAX_PIXELS`].
pub fn check_dimensions(w: u32, h: u32) -> Result<(), String> {
    let pixels = u64::from(w) * u64::from(h);
    if w > MAX_SIDE || h > MAX_SIDE || pixels > MAX_PIXELS {
        return Err(format!(
            "{w} x {h} pixels is larger than the limit ({MAX_SIDE} pixels a side, \
             {MAX_PIXELS} pixels in all)"
        ));
    }
    Ok(())
}

/// TF `compute_interpolation_weights` with `HalfPixelScaler`: `(lower, upper, lerp)` for
/// each output index.
pub fn interp_weights(out_size: usize, in_size: usize) -> Vec<(usize, usize, f32)> {
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|i| {
            let x = (i as f32 + 0.5) * scale - 0.5;
            let xf = x.floor();
            let lower = (xf as i64).max(0) as usize;
            let upper = (x.ceil() as i64).min(in_size as i64 - 1).max(0) as usize;
            (lower, upper, x - xf)
        })
        .collect()
}

impl Image {
    /// `u8 * (1/255)`, as TF's `convert_image_dtype`.
    pub fn from_rgb8(img: &image::RgbImage) -> Self {
        let scale = 1.0f32 / 255.0;
        Self::from_rgb8_with(img, |v| v as f32 * scale)
    }

    /// `u8 / 255` (numpy `astype(float32) / 255`).
    pub fn from_rgb8_div255(img: &image::RgbImage) -> Self {
        Self::from_rgb8_with(img, |v| v as f32 / 255.0)
    }

    fn from_rgb8_with(img: &image::RgbImage, f: impl Fn(u8) -> f32) -> Self {
        Image {
            height: img.height() as usize,
            width: img.width() as usize,
            data: img.as_raw().iter().map(|&v| f(v)).collect(),
        }
    }

    /// [`decode_rgb8`] then [`Image::from_rgb8`] (TF `decode_image` + `convert_image_dtype`).
    pub fn open(path: &Path) -> Result<Self, ImageError> {
        Ok(Self::from_rgb8(&decode_rgb8(path)?))
    }

    /// [`Image::central_crop`] without copying the image when nothing is cropped.
    pub fn into_central_crop(self, fraction: f64) -> Self {
        if fraction >= 1.0 {
            self
        } else {
            self.central_crop(fraction)
        }
    }

    /// `tf.image.central_crop(image, fraction)` (`fraction >= 1` keeps the image).
    pub fn central_crop(&self, fraction: f64) -> Self {
        if fraction >= 1.0 {
            return self.clone();
        }
        let start = |n: usize| ((n as f64 - n as f64 * fraction) / 2.0) as usize;
        let (y0, x0) = (start(self.height), start(self.width));
        self.crop(y0, x0, self.height - 2 * y0, self.width - 2 * x0)
    }

    /// The central square (side `min(h, w)`, offset `(h - s) / 2`, `(w - s) / 2`, like
    /// `crop_to_bounding_box`).
    pub fn central_square(&self) -> Self {
        let s = self.height.min(self.width);
        self.crop((self.height - s) / 2, (self.width - s) / 2, s, s)
    }

    fn crop(&self, y0: usize, x0: usize, h: usize, w: usize) -> Self {
        let mut data = Vec::with_capacity(h * w * 3);
        for y in y0..y0 + h {
            let row = (y * self.width + x0) * 3;
            data.extend_from_slice(&self.data[row..row + w * 3]);
        }
        Image {
            height: h,
            width: w,
            data,
        }
    }

    /// `tf.image.resize(img, [out_h, out_w], method="bilinear", antialias=False)`.
    pub fn resize_bilinear(&self, out_h: usize, out_w: usize) -> Self {
        if self.height == out_h && self.width == out_w {
            return self.clone();
        }
        let ys = interp_weights(out_h, self.height);
        let xs = interp_weights(out_w, self.width);
        let mut data = vec![0f32; out_h * out_w * 3];
        let px = |y: usize, x: usize, c: usize| self.data[(y * self.width + x) * 3 + c];
        for (oy, &(y0, y1, ly)) in ys.iter().enumerate() {
            for (ox, &(x0, x1, lx)) in xs.iter().enumerate() {
                for c in 0..3 {
                    let (tl, tr, bl, br) =
                        (px(y0, x0, c), px(y0, x1, c), px(y1, x0, c), px(y1, x1, c));
                    let top = tl + (tr - tl) * lx;
                    let bottom = bl + (br - bl) * lx;
                    data[(oy * out_w + ox) * 3 + c] = top + (bottom - top) * ly;
                }
            }
        }
        Image {
            height: out_h,
            width: out_w,
            data,
        }
    }

    /// `tf.image.resize(img, (size, size), preserve_aspect_ratio=True)`: bilinear resize
    /// to fit inside `size x size`.
    pub fn resize_to_fit(&self, size: usize) -> Self {
        let scale = (size as f64 / self.height as f64).min(size as f64 / self.width as f64);
        let h = ((self.height as f64 * scale).round() as usize).max(1);
        let w = ((self.width as f64 * scale).round() as usize).max(1);
        self.resize_bilinear(h, w)
    }

    /// `tf.nn.avg_pool(img, ksize=3, strides=1, padding='SAME')` (padding excluded from the mean).
    pub fn avg_pool3(&self) -> Self {
        let (h, w) = (self.height, self.width);
        let mut data = vec![0f32; h * w * 3];
        for y in 0..h {
            for x in 0..w {
                let mut sum = [0f32; 3];
                let mut n = 0.0;
                for yy in y.saturating_sub(1)..(y + 2).min(h) {
                    for xx in x.saturating_sub(1)..(x + 2).min(w) {
                        for (c, s) in sum.iter_mut().enumerate() {
                            *s += self.data[(yy * w + xx) * 3 + c];
                        }
                        n += 1.0;
                    }
                }
                for c in 0..3 {
                    data[(y * w + x) * 3 + c] = sum[c] / n;
                }
            }
        }
        Image {
            height: h,
            width: w,
            data,
        }
    }

    /// `[1, h, w, 3]` tensor.
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(self.data.clone(), [1, self.height, self.width, 3]),
            device,
        )
    }
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
        let out = Image {
            height: 2,
            width: 2,
            data,
        }
        .resize_bilinear(4, 4);
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
        let c = img.central_crop(0.875);
        assert_eq!((c.height, c.width), (10, 7));
        let img = Image {
            height: 100,
            width: 80,
            data: (0..24000).map(|v| v as f32).collect(),
        };
        let c = img.central_crop(0.5);
        assert_eq!((c.height, c.width), (50, 40));
        assert_eq!(c.data[0], ((25 * 80 + 20) * 3) as f32);
    }

    #[test]
    fn u8_scalings_are_tf_and_numpy() {
        // 3 * (1/255) and 3 / 255 differ in float32 (TF convert_image_dtype multiplies).
        let img = image::RgbImage::from_pixel(1, 1, image::Rgb([3, 255, 0]));
        let tf = Image::from_rgb8(&img);
        let np = Image::from_rgb8_div255(&img);
        assert_eq!(tf.data[0], 3.0f32 * (1.0f32 / 255.0));
        assert_eq!(np.data[0], 3.0f32 / 255.0);
        assert_ne!(tf.data[0], np.data[0]);
        assert_eq!((tf.data[1], tf.data[2]), (1.0, 0.0));
    }
}
