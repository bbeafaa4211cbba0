//! Library part of the `stylize` program: image preprocessing as in the
//! TF-Hub / TF Lite Magenta examples, and loading either half of a
//! stylization model from a converted folder or straight from a `.tflite`
//! file (converted in memory).

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Tensor, TensorData};
use models::stylization::{
    MobileNetPredictorConfig, MobileNetStylePredictor, StylePredictor, Stylization, Transformer,
    TransformerConfig, KIND_STYLE_PREDICTOR, KIND_STYLE_TRANSFER,
};
use std::path::Path;

/// An RGB image as floats in [0, 1], row-major `[h, w, 3]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub height: usize,
    pub width: usize,
    pub data: Vec<f32>,
}

/// Errors of this crate (each names the file).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}: cannot decode image: {msg}")]
    Decode { file: String, msg: String },
    #[error("{file}: {msg}")]
    Model { file: String, msg: String },
}

impl Image {
    /// Decodes a PNG/JPEG file to RGB floats in [0, 1].
    pub fn open(path: &Path) -> Result<Self, Error> {
        let img = image::open(path).map_err(|e| Error::Decode {
            file: path.display().to_string(),
            msg: e.to_string(),
        })?;
        let rgb = img.to_rgb8();
        let (w, h) = rgb.dimensions();
        Ok(Self {
            height: h as usize,
            width: w as usize,
            data: rgb
                .into_raw()
                .into_iter()
                .map(|v| v as f32 / 255.0)
                .collect(),
        })
    }

    /// The central square (side `min(h, w)`, offset `(h - s) / 2`, `(w - s) / 2`, like `crop_to_bounding_box`).
    pub fn central_crop(&self) -> Self {
        let s = self.height.min(self.width);
        let (y0, x0) = ((self.height - s) / 2, (self.width - s) / 2);
        let mut data = Vec::with_capacity(s * s * 3);
        for y in 0..s {
            let row = ((y0 + y) * self.width + x0) * 3;
            data.extend_from_slice(&self.data[row..row + s * 3]);
        }
        Self {
            height: s,
            width: s,
            data,
        }
    }

    /// `tf.image.resize(img, (h, w), 'bilinear', antialias=False)` (TF2: half-pixel centers).
    pub fn resize(&self, out_h: usize, out_w: usize) -> Self {
        let weights = |out: usize, inp: usize| -> Vec<(usize, usize, f32)> {
            let scale = inp as f32 / out as f32;
            (0..out)
                .map(|i| {
                    let x = (i as f32 + 0.5) * scale - 0.5;
                    let f = x.floor();
                    let lo = (f as i64).max(0) as usize;
                    let hi = (x.ceil() as i64).min(inp as i64 - 1).max(0) as usize;
                    (lo, hi, x - f)
                })
                .collect()
        };
        let ys = weights(out_h, self.height);
        let xs = weights(out_w, self.width);
        let mut data = vec![0f32; out_h * out_w * 3];
        let px = |y: usize, x: usize, c: usize| self.data[(y * self.width + x) * 3 + c];
        for (oy, &(y0, y1, ly)) in ys.iter().enumerate() {
            for (ox, &(x0, x1, lx)) in xs.iter().enumerate() {
                for c in 0..3 {
                    let top = px(y0, x0, c) + (px(y0, x1, c) - px(y0, x0, c)) * lx;
                    let bottom = px(y1, x0, c) + (px(y1, x1, c) - px(y1, x0, c)) * lx;
                    data[(oy * out_w + ox) * 3 + c] = top + (bottom - top) * ly;
                }
            }
        }
        Self {
            height: out_h,
            width: out_w,
            data,
        }
    }

    /// `tf.nn.avg_pool(img, ksize=3, strides=1, padding='SAME')` (padding excluded from the mean).
    pub fn box_blur3(&self) -> Self {
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
        Self {
            height: h,
            width: w,
            data,
        }
    }

    /// Preprocessing of the Magenta examples: optional central crop, resize to
    /// fit inside `size` x `size` keeping the aspect ratio (0 keeps the size), optional 3x3 blur.
    pub fn prepare(&self, crop: bool, size: usize, blur: bool) -> Self {
        let mut img = if crop {
            self.central_crop()
        } else {
            self.clone()
        };
        if size > 0 {
            // `tf.image.resize(img, (size, size), preserve_aspect_ratio=True)`: fit inside size x size.
            let scale = (size as f64 / img.height as f64).min(size as f64 / img.width as f64);
            let h = ((img.height as f64 * scale).round() as usize).max(1);
            let w = ((img.width as f64 * scale).round() as usize).max(1);
            img = img.resize(h, w);
        }
        if blur {
            img = img.box_blur3();
        }
        img
    }

    /// `[1, h, w, 3]` tensor.
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(self.data.clone(), [1, self.height, self.width, 3]),
            device,
        )
    }
}

/// Serializes converted tensors to safetensors bytes.
fn safetensors_bytes(tensors: &[convert::OutTensor]) -> Result<Vec<u8>, String> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, t.shape.clone(), b)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    safetensors::serialize(views, None).map_err(|e| e.to_string())
}

fn load_bytes<M: burn::module::Module + ModuleSnapshot>(
    module: M,
    bytes: Vec<u8>,
) -> Result<M, String> {
    let mut module = module;
    let mut store = SafetensorsStore::from_bytes(Some(bytes)).allow_partial(false);
    let r = module.load_from(&mut store).map_err(|e| e.to_string())?;
    if !r.errors.is_empty() || !r.missing.is_empty() || !r.unused.is_empty() {
        return Err(format!("{r}"));
    }
    Ok(module)
}

/// One half (or both) of a stylization model.
pub enum Half {
    Predictor(StylePredictor),
    Transfer(Transformer),
}

/// Converts a `.tflite` file in memory and builds the matching module.
pub fn load_tflite(path: &Path, device: &Device) -> Result<Half, Error> {
    let err = |msg: String| Error::Model {
        file: path.display().to_string(),
        msg,
    };
    let c = convert::kinds::magenta_tflite::convert_tflite(path, &path.display().to_string())
        .map_err(|e| err(e.to_string()))?;
    let bytes = safetensors_bytes(&c.tensors).map_err(&err)?;
    match c.kind.as_str() {
        KIND_STYLE_PREDICTOR => {
            let cfg: MobileNetPredictorConfig =
                serde_json::from_value(c.config).map_err(|e| err(e.to_string()))?;
            let p: MobileNetStylePredictor = load_bytes(cfg.init(device), bytes).map_err(&err)?;
            Ok(Half::Predictor(StylePredictor::MobileNet(p)))
        }
        KIND_STYLE_TRANSFER => {
            let cfg: TransformerConfig =
                serde_json::from_value(c.config).map_err(|e| err(e.to_string()))?;
            Ok(Half::Transfer(
                load_bytes(cfg.init(device), bytes).map_err(&err)?,
            ))
        }
        k => Err(err(format!("unexpected kind {k}"))),
    }
}

/// Loads a half from a `.tflite` file or a converted folder (`style_predictor` / `style_transfer`).
pub fn load_half(path: &Path, device: &Device) -> Result<Half, Error> {
    if path.is_file() {
        return load_tflite(path, device);
    }
    let err = |msg: String| Error::Model {
        file: path.display().to_string(),
        msg,
    };
    let kind = models::stylization::folder_kind(path).map_err(|e| err(e.to_string()))?;
    match kind.as_str() {
        KIND_STYLE_PREDICTOR => Ok(Half::Predictor(
            StylePredictor::load(path, device).map_err(|e| err(e.to_string()))?,
        )),
        KIND_STYLE_TRANSFER => Ok(Half::Transfer(
            Transformer::load(path, device).map_err(|e| err(e.to_string()))?,
        )),
        k => Err(err(format!(
            "holds a `{k}` model, expected a style predictor or style transfer network"
        ))),
    }
}

/// Loads a predictor from a `.tflite` file or a converted folder
/// (`style_predictor`, or the Inception predictor of a `stylization` folder).
pub fn load_predictor(path: &Path, device: &Device) -> Result<StylePredictor, Error> {
    if path.is_file() {
        return match load_tflite(path, device)? {
            Half::Predictor(p) => Ok(p),
            Half::Transfer(_) => Err(Error::Model {
                file: path.display().to_string(),
                msg: "is a style transfer network, expected a style predictor".into(),
            }),
        };
    }
    if !path.join("config.json").is_file() {
        return Ok(load_model(&path.display().to_string(), device)?.predictor);
    }
    StylePredictor::load(path, device).map_err(|e| Error::Model {
        file: path.display().to_string(),
        msg: e.to_string(),
    })
}

/// Loads a transformer from a `.tflite` file or a converted folder
/// (`style_transfer`, or the transformer of a `stylization` folder).
pub fn load_transfer(path: &Path, device: &Device) -> Result<Transformer, Error> {
    let err = |msg: String| Error::Model {
        file: path.display().to_string(),
        msg,
    };
    if path.is_file() {
        return match load_tflite(path, device)? {
            Half::Transfer(t) => Ok(t),
            Half::Predictor(_) => Err(err(
                "is a style predictor, expected a style transfer network".into(),
            )),
        };
    }
    if !path.join("config.json").is_file() {
        return Ok(load_model(&path.display().to_string(), device)?.transformer);
    }
    let kind = models::stylization::folder_kind(path).map_err(|e| err(e.to_string()))?;
    if kind == models::stylization::KIND_STYLIZATION {
        return Ok(Stylization::load(path, device)
            .map_err(|e| err(e.to_string()))?
            .transformer);
    }
    Transformer::load(path, device).map_err(|e| err(e.to_string()))
}

/// A whole model from a converted `stylization` folder, or from a SavedModel
/// handle (TF-Hub / Kaggle URL, archive, local SavedModel folder) converted in
/// memory (through a temporary folder).
pub fn load_model(spec: &str, device: &Device) -> Result<Stylization, Error> {
    let err = |msg: String| Error::Model {
        file: spec.to_string(),
        msg,
    };
    let local = Path::new(spec);
    if local.join("config.json").is_file() {
        return Stylization::load(local, device).map_err(|e| err(e.to_string()));
    }
    let resolved = hub::resolve(spec, &hub::Options::from_env()).map_err(|e| err(e.to_string()))?;
    if !resolved.path.join("saved_model.pb").is_file() {
        return Err(err(format!(
            "{} is not a SavedModel folder or a converted model folder",
            resolved.path.display()
        )));
    }
    let sm = savedmodel::read(&resolved.path).map_err(|e| err(e.to_string()))?;
    let src = convert::from_savedmodel::source_from_savedmodel(&sm, spec)
        .map_err(|e| err(e.to_string()))?;
    let converted = convert::kinds::convert_any(&src)
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err("not recognised as a stylization model".into()))?;
    let tmp = tempfile::tempdir().map_err(|e| err(e.to_string()))?;
    let dir = tmp.path().join("model");
    convert::write::write_model(&dir, &converted, spec, &[]).map_err(|e| err(e.to_string()))?;
    Stylization::load(&dir, device).map_err(|e| err(e.to_string()))
}

/// `[N]` floats of a tensor.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(h: usize, w: usize) -> Image {
        Image {
            height: h,
            width: w,
            data: (0..h * w * 3).map(|i| (i % 251) as f32 / 250.0).collect(),
        }
    }

    #[test]
    fn crop_and_fit_keep_tf_shapes() {
        let img = ramp(6, 10);
        let c = img.central_crop();
        assert_eq!((c.height, c.width), (6, 6));
        assert_eq!(&c.data[..3], &img.data[2 * 3..2 * 3 + 3]); // x offset (10 - 6) / 2 = 2
        let p = img.prepare(false, 5, false);
        assert_eq!((p.height, p.width), (3, 5));
        let same = img.resize(6, 10);
        assert_eq!(same.data, img.data); // identity resize
    }

    #[test]
    fn blur_excludes_padding() {
        // 2x2 single-channel-like pattern: every 3x3 SAME window covers the whole image.
        let img = Image {
            height: 2,
            width: 2,
            data: vec![0., 0., 0., 1., 1., 1., 2., 2., 2., 3., 3., 3.],
        };
        let b = img.box_blur3();
        assert!(b.data.iter().all(|v| (v - 1.5).abs() < 1e-6));
    }
}
