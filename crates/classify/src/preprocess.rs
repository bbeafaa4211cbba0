//! Image preprocessing as the TF Hub image modules expect it, reproducing TensorFlow's ops:
//! `tf.image.decode_image` -> `tf.image.convert_image_dtype(float32)` (x * (1/255)) ->
//! optional `tf.image.central_crop(fraction)` -> `tf.image.resize(size, "bilinear",
//! antialias=False)` (half-pixel centers) -> `[H, W, 3]` RGB in `[0, 1]`.
//! The ops themselves live in [`models::imageops`] (tested against TF values there).

pub use models::imageops::Image;
use std::path::Path;

/// Load, crop and resize one file for the network.
pub fn prepare(path: &Path, height: usize, width: usize, crop: f64) -> anyhow::Result<Image> {
    let img = Image::open(path)?;
    Ok(img.central_crop(crop).resize_bilinear(height, width))
}
