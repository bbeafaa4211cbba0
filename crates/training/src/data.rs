//! The data of a fine-tuning run: a folder with one sub-folder of images per class.
//!
//! Files whose extension is not `.jpg`/`.jpeg`/`.png` are ignored; image files whose header
//! cannot be read are **skipped with a warning** (listed in [`ImageFolder::skipped`]); an
//! image that fails to decode later, during training, is an error naming the file.

use crate::{io, FinetuneError};
use models::imageops::{self, Image, ImageError};
use std::path::{Path, PathBuf};

/// Image file extensions read from the data folder (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// A folder with one sub-folder of images per class.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    pub root: PathBuf,
    /// Class names (sub-folder names, sorted); the index is the label.
    pub classes: Vec<String>,
    /// `(file, class index)`, sorted by class then file name.
    pub items: Vec<(PathBuf, usize)>,
    /// Image files skipped because their header could not be read, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

impl ImageFolder {
    /// Lists the classes and images of `root`. Errors: `root` missing or not a folder, no
    /// class sub-folder, a class without any readable image.
    pub fn scan(root: impl AsRef<Path>) -> Result<Self, FinetuneError> {
        let root = root.as_ref().to_path_buf();
        let mut dirs: Vec<(String, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&root).map_err(io(&root))? {
            let entry = entry.map_err(io(&root))?;
            let path = entry.path();
            if path.is_dir() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    dirs.push((name, path));
                }
            }
        }
        dirs.sort();
        if dirs.is_empty() {
            return Err(FinetuneError::NoClasses { path: root });
        }
        let mut items = Vec::new();
        let mut skipped = Vec::new();
        let mut classes = Vec::new();
        for (class, (name, dir)) in dirs.into_iter().enumerate() {
            let mut files: Vec<PathBuf> = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
                let path = entry.map_err(io(&dir))?.path();
                let ext = path
                    .extension()
                    .map(|e| e.to_string_lossy().to_ascii_lowercase())
                    .unwrap_or_default();
                if path.is_file() && IMAGE_EXTENSIONS.contains(&ext.as_str()) {
                    files.push(path);
                }
            }
            files.sort();
            let mut n = 0;
            for f in files {
                match image::ImageReader::open(&f).and_then(|r| r.with_guessed_format()) {
                    Ok(r) => match r.into_dimensions() {
                        Ok(_) => {
                            items.push((f, class));
                            n += 1;
                        }
                        Err(e) => skipped.push((f, e.to_string())),
                    },
                    Err(e) => skipped.push((f, e.to_string())),
                }
            }
            if n == 0 {
                return Err(FinetuneError::EmptyClass { path: dir });
            }
            classes.push(name);
        }
        Ok(ImageFolder {
            root,
            classes,
            items,
            skipped,
        })
    }

    /// Seeded, stratified split: in each class, `round(n * fraction)` images (at most n - 1)
    /// go to validation. Returns `(train, validation)` indices into `items`, both shuffled.
    pub fn split(&self, validation_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
        let mut rng = SplitMix64(seed);
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for c in 0..self.classes.len() {
            let mut idx: Vec<usize> = (0..self.items.len())
                .filter(|&i| self.items[i].1 == c)
                .collect();
            rng.shuffle(&mut idx);
            let n_val = ((idx.len() as f64 * validation_fraction).round() as usize)
                .min(idx.len().saturating_sub(1));
            val.extend_from_slice(&idx[..n_val]);
            train.extend_from_slice(&idx[n_val..]);
        }
        rng.shuffle(&mut train);
        rng.shuffle(&mut val);
        (train, val)
    }
}

/// Decodes an image file, resizes it (bilinear) to `size x size` and returns HWC RGB
/// values in `[0, 1]`.
pub fn load_image(path: &Path, size: usize) -> Result<Vec<f32>, FinetuneError> {
    let img = imageops::decode_rgb8(path).map_err(|e| match e {
        ImageError::Read { path, source } => FinetuneError::Io { path, source },
        ImageError::Decode { path, msg } => FinetuneError::Image { path, msg },
    })?;
    Ok(image_to_tensor_data(&img, size))
}

/// `u8 * (1/255)` (TF `convert_image_dtype`), then resized to `size x size` like
/// `tf.image.resize(..., "bilinear", antialias=False)` (half-pixel centres): HWC RGB in
/// `[0, 1]`. The same preprocessing as `classify` (without central crop); see [`imageops`].
pub fn image_to_tensor_data(img: &image::RgbImage, size: usize) -> Vec<f32> {
    Image::from_rgb8(img).resize_bilinear(size, size).data
}

/// Small deterministic generator for seeded shuffles (kept here for existing users).
pub use models::rng::SplitMix64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_stratified_and_disjoint() {
        let mut items = Vec::new();
        for c in 0..3 {
            for i in 0..10 {
                items.push((PathBuf::from(format!("{c}/{i}.png")), c));
            }
        }
        let data = ImageFolder {
            root: "x".into(),
            classes: vec!["a".into(), "b".into(), "c".into()],
            items,
            skipped: vec![],
        };
        let (t1, v1) = data.split(0.2, 7);
        let (t2, v2) = data.split(0.2, 7);
        assert_eq!((t1.clone(), v1.clone()), (t2, v2));
        assert_eq!(v1.len(), 6);
        assert_eq!(t1.len(), 24);
        for c in 0..3 {
            assert_eq!(v1.iter().filter(|&&i| data.items[i].1 == c).count(), 2);
        }
        let mut all: Vec<usize> = t1.iter().chain(v1.iter()).copied().collect();
        all.sort();
        assert_eq!(all, (0..30).collect::<Vec<_>>());
        let (_, v3) = data.split(0.2, 8);
        assert_ne!(v1, v3);
    }

    #[test]
    fn resize_matches_tf_half_pixel_bilinear() {
        // tf.image.resize([[0,1],[2,3]] / 255 as [1,2,2,1], [4,4], "bilinear") (TF 2.21):
        // rows [0, .25, .75, 1], [.5, .75, 1.25, 1.5], ..., [2, 2.25, 2.75, 3] (times 1/255).
        let img = image::RgbImage::from_fn(2, 2, |x, y| {
            let v = (y * 2 + x) as u8;
            image::Rgb([v, v, v])
        });
        let out = image_to_tensor_data(&img, 4);
        let ch0: Vec<f32> = out.iter().step_by(3).map(|v| v * 255.0).collect();
        let want = [0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5];
        for (g, w) in ch0[..8].iter().zip(want) {
            assert!((g - w).abs() < 1e-4, "{ch0:?}");
        }
        assert!((ch0[15] - 3.0).abs() < 1e-4);
    }
}
