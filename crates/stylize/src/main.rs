//! `stylize`: Magenta arbitrary image stylization (contract: `docs/cli.md` "stylize").
//!
//! ```text
//! stylize --predictor style_predict_quantized_256.tflite --transfer style_transfer_f16_384.tflite \
//!         --content tuebingen.jpg --style starry_night.jpg -o out.png
//! ```

use anyhow::{anyhow, bail, Context, Result};
use burn::tensor::Device;
use clap::Parser;
use models::stylization::{StylePredictor, Transformer};
use models::Backend;
use program::Engine;
use std::path::{Path, PathBuf};
use stylize::{
    blend, load_model, load_predictor, load_transfer, open_image, Predictor, Prepare, Transfer,
};

/// Stylize content images with the style of another image (Magenta arbitrary
/// image stylization: a style predictor gives a 100-d style vector, a transfer
/// network renders the content with it).
#[derive(Parser, Debug)]
#[command(name = "stylize", version)]
struct Args {
    /// A model holding both halves: a converted `stylization` folder, a SavedModel
    /// handle (TF-Hub/Kaggle URL, archive, folder; converted in memory),
    /// "PREDICTOR,TRANSFER" (two .tflite files or converted folders), or a folder
    /// holding a style_predict*.tflite and a style_transfer*.tflite file.
    #[arg(long)]
    model: Option<String>,
    /// Style predictor: a .tflite file, a converted `style_predictor` or `stylization` folder, or a SavedModel folder.
    #[arg(long)]
    predictor: Option<PathBuf>,
    /// Style transfer network: a .tflite file, a converted `style_transfer` or `stylization` folder, or a SavedModel folder.
    #[arg(long)]
    transfer: Option<PathBuf>,
    /// Content image(s) (PNG or JPEG). Without --content (and without any model, style or
    /// output option) stylize runs its demo: the bundled Magenta TF Lite networks on the
    /// bundled pictures (examples/stylize), written to stylized.png.
    #[arg(long, num_args = 1..)]
    content: Vec<PathBuf>,
    /// Style image (PNG or JPEG). Not needed with --style-vector.
    #[arg(long)]
    style: Option<PathBuf>,
    /// Output: a file (.png, .jpg or .npy) for one content image, a folder for several.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Content size: the image is fitted inside SIZE x SIZE (after the central crop: SIZE x SIZE); 0 keeps its own size.
    #[arg(long, default_value_t = 384)]
    content_size: usize,
    /// Style size, as --content-size.
    #[arg(long, default_value_t = 256)]
    style_size: usize,
    /// Do not crop images to their central square.
    #[arg(long)]
    no_crop: bool,
    /// Do not blur the style image (3x3 average pool, as the TF-Hub tutorial does).
    #[arg(long)]
    no_blur: bool,
    /// Style strength in [0, 1]: blends the style vector with the content's own.
    #[arg(long, default_value_t = 1.0)]
    strength: f32,
    /// Write the style bottleneck [1, 100] as float32 .npy.
    #[arg(long)]
    save_style: Option<PathBuf>,
    /// Use this style bottleneck (.npy [1, 100] or [100]) instead of predicting one.
    #[arg(long)]
    style_vector: Option<PathBuf>,
    /// Compute backend: flex, ndarray or wgpu.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    /// On flex: `cpu` runs the networks through the fused CPU kernels (models::cpu;
    /// the TF Lite MobileNet predictor stays in Burn), `burn` runs the Burn modules.
    #[arg(long, value_enum, default_value_t = Engine::Cpu)]
    engine: Engine,
}

/// The bundled example: Magenta's TF Lite networks (Apache-2.0) and two public-domain pictures,
/// committed under `examples/stylize` (sources and licences in its README).
fn examples_dir() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/stylize");
    p.canonicalize().unwrap_or(p)
}

/// Fills in the demo when no content image is given: the bundled networks, Grace Hopper's
/// portrait in the style of Hokusai's Great Wave, written to `stylized.png`.
fn with_demo_defaults(mut a: Args) -> Result<Args> {
    if !a.content.is_empty() {
        if a.output.is_none() {
            bail!("give the output file with -o/--output (.png, .jpg or .npy)");
        }
        return Ok(a);
    }
    let given = a.model.is_some()
        || a.predictor.is_some()
        || a.transfer.is_some()
        || a.style.is_some()
        || a.style_vector.is_some();
    if given {
        bail!("give the content image(s) with --content");
    }
    let ex = examples_dir();
    if !ex.join("style_predict_quantized_256.tflite").is_file() {
        bail!(
            "{}: the bundled example is missing; give --model, --content, --style and -o",
            ex.display()
        );
    }
    eprintln!(
        "stylize: no --content given: running the demo on the bundled example ({}): \
         Magenta's TF Lite networks, grace_hopper.jpg in the style of great_wave.jpg, \
         written to {}",
        ex.display(),
        a.output
            .as_deref()
            .unwrap_or(Path::new("stylized.png"))
            .display()
    );
    a.model = Some(ex.display().to_string());
    a.content = vec![ex.join("grace_hopper.jpg")];
    a.style = Some(ex.join("great_wave.jpg"));
    a.output = a.output.or_else(|| Some(PathBuf::from("stylized.png")));
    Ok(a)
}

/// Freed activation buffers are reused (see `program::CachingAllocator`).
#[global_allocator]
static ALLOC: program::CachingAllocator = program::CachingAllocator::new();

fn main() -> std::process::ExitCode {
    program::main(|| with_demo_defaults(Args::parse()).and_then(run))
}

fn split_model(spec: &str) -> Result<(PathBuf, PathBuf)> {
    if let Some((a, b)) = spec.split_once(',') {
        return Ok((PathBuf::from(a), PathBuf::from(b)));
    }
    let dir = PathBuf::from(spec);
    if dir.is_dir() && !dir.join("config.json").is_file() {
        let mut pred = None;
        let mut tran = None;
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("{}", dir.display()))?
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            if name.ends_with(".tflite") && name.contains("predict") && pred.is_none() {
                pred = Some(p);
            } else if name.ends_with(".tflite") && name.contains("transfer") && tran.is_none() {
                tran = Some(p);
            }
        }
        if let (Some(a), Some(b)) = (pred, tran) {
            return Ok((a, b));
        }
    }
    bail!(
        "{spec}: --model must be \"PREDICTOR,TRANSFER\" or a folder with style_predict*.tflite and style_transfer*.tflite \
         (for separate halves use --predictor/--transfer)"
    )
}

/// Writes `bytes` to `path` through a temporary file in the same folder.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    model_folder::write_file_atomic(path, bytes)
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// The output type of `path` from its extension: `npy`, `png`, `jpg` or `jpeg`.
fn output_type(path: &Path) -> Result<String> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if !["npy", "png", "jpg", "jpeg"].contains(&ext.as_str()) {
        bail!(
            "{}: unknown output type (use .png, .jpg or .npy)",
            path.display()
        );
    }
    Ok(ext)
}

fn save_image(path: &Path, h: usize, w: usize, data: &[f32]) -> Result<()> {
    let ext = output_type(path)?;
    let bytes = match ext.as_str() {
        "npy" => model_folder::npy::to_bytes(&[h, w, 3], data),
        "png" | "jpg" | "jpeg" => {
            let px: Vec<u8> = data
                .iter()
                .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect();
            let img = image::RgbImage::from_raw(w as u32, h as u32, px)
                .ok_or_else(|| anyhow!("internal: image size"))?;
            let mut buf = std::io::Cursor::new(Vec::new());
            let fmt = if ext == "png" {
                image::ImageFormat::Png
            } else {
                image::ImageFormat::Jpeg
            };
            img.write_to(&mut buf, fmt)
                .with_context(|| format!("{}: cannot encode", path.display()))?;
            buf.into_inner()
        }
        _ => bail!(
            "{}: unknown output type (use .png, .jpg or .npy)",
            path.display()
        ),
    };
    write_atomic(path, &bytes)
}

/// Everything that can be checked before a network is loaded (so that nothing is computed or
/// written for a command line that cannot succeed); returns the `--style-vector` values.
fn check_options(a: &Args) -> Result<Option<Vec<f32>>> {
    if !(0.0..=1.0).contains(&a.strength) {
        bail!("--strength must be in [0, 1], got {}", a.strength);
    }
    match (&a.model, &a.predictor, &a.transfer) {
        (Some(_), None, None) | (None, Some(_), Some(_)) => {}
        (Some(_), _, _) => bail!(
            "--model and --predictor/--transfer exclude each other: give --model, or both --predictor and --transfer"
        ),
        (None, Some(_), None) => bail!("--predictor needs --transfer (or give --model instead)"),
        (None, None, Some(_)) if a.style_vector.is_none() => bail!(
            "--transfer alone needs --style-vector IN.npy (to predict the style of --style, give --predictor too, or --model)"
        ),
        (None, None, Some(_)) if a.strength < 1.0 => bail!(
            "--strength {} blends in the content's own style, which needs a style predictor: give --predictor too, or --model",
            a.strength
        ),
        (None, None, Some(_)) => {}
        (None, None, None) => bail!(
            "give --model, or both --predictor and --transfer (--transfer alone with --style-vector)"
        ),
    }
    if a.style.is_none() && a.style_vector.is_none() {
        bail!("give --style IMAGE or --style-vector IN.npy");
    }
    if let Some(out) = &a.save_style {
        program::check_output_file(out, "--save-style")?;
    }
    let output = a.output.as_ref().context("internal: no output")?;
    if a.content.len() == 1 {
        program::check_output_file(output, "-o")?;
        output_type(output)?;
    } else if output.exists() && !output.is_dir() {
        bail!(
            "-o {}: is a file; with several --content images, -o names a folder",
            output.display()
        );
    }
    let Some(path) = &a.style_vector else {
        return Ok(None);
    };
    let v = model_folder::npy::read(path)?;
    if v.data.len() != 100 || !(v.shape == [100] || v.shape == [1, 100]) {
        bail!(
            "{}: --style-vector has shape {:?} ({} values); expected [1, 100] or [100]",
            path.display(),
            v.shape,
            v.data.len()
        );
    }
    Ok(Some(v.data))
}

fn run(a: Args) -> Result<()> {
    let style_vector = check_options(&a)?;
    let backend = a.backend;
    let device: Device = backend.device();
    let (predictor, transformer): (Option<StylePredictor>, Transformer) = match (&a.model, &a.predictor, &a.transfer) {
        (Some(m), None, None) => match split_model(m) {
            Ok((p, t)) => (Some(load_predictor(&p, &device)?), load_transfer(&t, &device)?),
            // A converted `stylization` folder or a SavedModel handle.
            Err(_) => {
                let s = load_model(m, &device)?;
                (Some(s.predictor), s.transformer)
            }
        },
        (None, Some(p), Some(t)) => (Some(load_predictor(p, &device)?), load_transfer(t, &device)?),
        (None, None, Some(t)) if a.style_vector.is_some() && a.strength >= 1.0 => (None, load_transfer(t, &device)?),
        _ => bail!("give --model, or both --predictor and --transfer (--transfer alone with --style-vector)"),
    };
    let cpu = backend == Backend::Flex && a.engine == Engine::Cpu;
    let predictor = predictor.map(|p| Predictor::new(p, &device, cpu));
    let transformer = Transfer::new(transformer, &device, cpu);
    let crop = !a.no_crop;
    // Style bottleneck [1, 100].
    let bottleneck: Vec<f32> = if let Some(v) = style_vector {
        v
    } else {
        let style_path = a
            .style
            .as_ref()
            .ok_or_else(|| anyhow!("give --style IMAGE or --style-vector IN.npy"))?;
        let style = open_image(style_path)?.prepare(crop, a.style_size, !a.no_blur);
        if style.height < 1 || style.width < 1 {
            bail!("{}: image is empty", style_path.display());
        }
        let p = predictor
            .as_ref()
            .ok_or_else(|| anyhow!("a style predictor is needed for --style"))?;
        p.predict(&style, style_path)?
    };
    if let Some(out) = &a.save_style {
        model_folder::npy::write(out, &[1, 100], &bottleneck)?;
    }
    let output = a.output.clone().context("internal: no output")?;
    let several = a.content.len() > 1;
    if several {
        std::fs::create_dir_all(&output)
            .with_context(|| format!("{}: cannot create output folder", output.display()))?;
    }
    for (i, c) in a.content.iter().enumerate() {
        if several {
            eprintln!("[{}/{}] {}", i + 1, a.content.len(), c.display());
        }
        let img = open_image(c)?;
        let content = img.prepare(crop, a.content_size, false);
        if content.height < 5 || content.width < 5 {
            bail!(
                "{}: image is {}x{} after preprocessing; the transfer network needs at least 5x5",
                c.display(),
                content.width,
                content.height
            );
        }
        let b = if a.strength < 1.0 {
            let p = predictor
                .as_ref()
                .ok_or_else(|| anyhow!("--strength below 1 needs a style predictor"))?;
            let own = p.predict(&img.prepare(crop, a.style_size, false), c)?;
            blend(&bottleneck, &own, a.strength)
        } else {
            bottleneck.clone()
        };
        let (h, w, data) = transformer.transfer(&content, &b);
        let out = if several {
            let stem = c
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| format!("{i}"));
            output.join(format!("{stem}_stylized.png"))
        } else {
            output.clone()
        };
        save_image(&out, h, w, &data)?;
        println!("{}", out.display());
    }
    Ok(())
}
