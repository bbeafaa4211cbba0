//! Library part of the `stylize` program: image preprocessing as in the
//! TF-Hub / TF Lite Magenta examples, and loading either half of a
//! stylization model from a converted folder or straight from a `.tflite`
//! file (converted in memory).

use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::{Device, Tensor};
use models::imageops;
use models::stylization::{
    MobileNetPredictorConfig, MobileNetStylePredictor, StylePredictor, Stylization, Transformer,
    TransformerConfig, KIND_STYLE_PREDICTOR, KIND_STYLE_TRANSFER,
};
use std::path::Path;

pub use models::imageops::Image;

/// Errors of this crate (each names the file).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}: cannot decode image: {msg}")]
    Decode { file: String, msg: String },
    #[error("{file}: {msg}")]
    Model { file: String, msg: String },
}

/// Decodes a PNG/JPEG file to RGB floats in [0, 1] (`u8 / 255`, as the reference scripts).
pub fn open_image(path: &Path) -> Result<Image, Error> {
    let rgb = imageops::decode_rgb8(path).map_err(|e| Error::Decode {
        file: path.display().to_string(),
        msg: match e {
            imageops::ImageError::Read { source, .. } => source.to_string(),
            imageops::ImageError::Decode { msg, .. } => msg,
        },
    })?;
    Ok(Image::from_rgb8_div255(&rgb))
}

/// Preprocessing of the Magenta examples on an [`Image`].
pub trait Prepare {
    /// Optional central square crop, resize to fit inside `size` x `size` keeping the
    /// aspect ratio (0 keeps the size), optional 3x3 blur.
    fn prepare(&self, crop: bool, size: usize, blur: bool) -> Image;
}

impl Prepare for Image {
    fn prepare(&self, crop: bool, size: usize, blur: bool) -> Image {
        let mut img = if crop {
            self.central_square()
        } else {
            self.clone()
        };
        if size > 0 {
            img = img.resize_to_fit(size);
        }
        if blur {
            img = img.avg_pool3();
        }
        img
    }
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
    let bytes = convert::write::safetensors_bytes(&c).map_err(|e| err(e.to_string()))?;
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
    let kind = model_folder::read_kind(path).map_err(|e| err(e.to_string()))?;
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
    let kind = model_folder::read_kind(path).map_err(|e| err(e.to_string()))?;
    if kind == models::stylization::KIND_STYLIZATION {
        return Ok(Stylization::load(path, device)
            .map_err(|e| err(e.to_string()))?
            .transformer);
    }
    Transformer::load(path, device).map_err(|e| err(e.to_string()))
}

/// A whole model from a converted `stylization` folder, or from a SavedModel handle (TF-Hub /
/// Kaggle URL, archive, local SavedModel folder), converted once into the cache.
pub fn load_model(spec: &str, device: &Device) -> Result<Stylization, Error> {
    let err = |msg: String| Error::Model {
        file: spec.to_string(),
        msg,
    };
    let source =
        tfhub::open_for_program("stylize", spec, false, device).map_err(|e| err(e.to_string()))?;
    let dir = source
        .into_folder_of(models::stylization::KIND_STYLIZATION)
        .map_err(|e| err(e.to_string()))?;
    Stylization::load(&dir, device).map_err(|e| err(e.to_string()))
}

/// A style predictor ready to run: the CPU inference graph
/// ([`models::cpu::InceptionPredictorCpu`]) for the SavedModel's Inception predictor when
/// asked for, else the Burn module on its device.
pub enum Predictor {
    Burn(StylePredictor, Device),
    Cpu(models::cpu::InceptionPredictorCpu),
}

impl Predictor {
    /// `cpu`: compile the Inception predictor for the CPU kernels (the MobileNet
    /// predictor of the TF Lite files always runs in Burn).
    pub fn new(p: StylePredictor, device: &Device, cpu: bool) -> Predictor {
        match p {
            StylePredictor::Inception(i) if cpu => {
                Predictor::Cpu(models::cpu::InceptionPredictorCpu::new(&i))
            }
            p => Predictor::Burn(p, device.clone()),
        }
    }

    /// The style bottleneck `[100]` of one image.
    pub fn predict(&self, img: &Image, file: &Path) -> Result<Vec<f32>, Error> {
        match self {
            Predictor::Burn(p, device) => Ok(to_vec(p.predict_style(img.to_tensor(device)))),
            Predictor::Cpu(p) => p.predict_style(&nhwc(img)).map_err(|e| Error::Model {
                file: file.display().to_string(),
                msg: e.to_string(),
            }),
        }
    }
}

/// A style transfer network ready to run: the CPU inference graph
/// ([`models::cpu::TransformerCpu`]) when asked for, else the Burn module.
pub enum Transfer {
    Burn(Transformer, Device),
    Cpu(models::cpu::TransformerCpu),
}

impl Transfer {
    pub fn new(t: Transformer, device: &Device, cpu: bool) -> Transfer {
        if cpu {
            Transfer::Cpu(models::cpu::TransformerCpu::new(&t))
        } else {
            Transfer::Burn(t, device.clone())
        }
    }

    /// Renders `img` with `bottleneck` `[100]`: `(height, width, RGB floats in (0, 1))`.
    pub fn transfer(&self, img: &Image, bottleneck: &[f32]) -> (usize, usize, Vec<f32>) {
        match self {
            Transfer::Burn(t, device) => {
                let b = Tensor::<2>::from_data(
                    burn::tensor::TensorData::new(bottleneck.to_vec(), [1, bottleneck.len()]),
                    device,
                );
                let y = t.transfer(img.to_tensor(device), b);
                let [_, h, w, _] = y.dims();
                (h, w, to_vec(y))
            }
            Transfer::Cpu(t) => {
                let y = t.transfer(&nhwc(img), bottleneck);
                (y.h, y.w, y.data)
            }
        }
    }
}

/// An image as a `[1, H, W, 3]` CPU tensor.
fn nhwc(img: &Image) -> models::cpu::Nhwc {
    models::cpu::Nhwc::from_vec(1, img.height, img.width, 3, img.data.clone())
        .expect("an Image holds H x W x 3 floats")
}

/// `strength * style + (1 - strength) * own`.
pub fn blend(style: &[f32], own: &[f32], strength: f32) -> Vec<f32> {
    style
        .iter()
        .zip(own)
        .map(|(s, o)| s * strength + o * (1.0 - strength))
        .collect()
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
        let c = img.central_square();
        assert_eq!((c.height, c.width), (6, 6));
        assert_eq!(&c.data[..3], &img.data[2 * 3..2 * 3 + 3]); // x offset (10 - 6) / 2 = 2
        let p = img.prepare(false, 5, false);
        assert_eq!((p.height, p.width), (3, 5));
        let same = img.resize_bilinear(6, 10);
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
        let b = img.avg_pool3();
        assert!(b.data.iter().all(|v| (v - 1.5).abs() < 1e-6));
    }
}
