//! Training: `train-imdb` epochs (its program, on the real IMDB archive) and fine-tuning
//! Inception-v3 (the `training` library, as `finetune` runs it).

use crate::timing::uniform;
use models::inception_v3::InceptionV3Config;
use models::Backend;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;
use training::{FinetuneOptions, ImageClassifier, ImageFolder, Trainer};

/// A program of the workspace built beside this benchmark (`target/<profile>/<name>`).
pub fn program(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let p = profile_dir.join(name);
    p.is_file().then_some(p)
}

/// `train-imdb --from-scratch` on `data` for `epochs`: (median seconds of an epoch's training
/// pass, test accuracy).
pub fn train_imdb(data: &Path, epochs: usize) -> Result<(f64, f64), String> {
    let exe = program("train-imdb").ok_or(
        "the train-imdb program is not built beside this benchmark (cargo build --workspace [--release])",
    )?;
    let out = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = out.path().join("run");
    let o = Command::new(&exe)
        .arg("--data")
        .arg(data)
        .args(["--from-scratch", "--epochs", &epochs.to_string(), "--out"])
        .arg(&dir)
        .output()
        .map_err(|e| format!("{}: {e}", exe.display()))?;
    if !o.status.success() {
        return Err(format!(
            "train-imdb failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
    }
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("metrics.json")).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let mut secs: Vec<f64> = m["epochs"]
        .as_array()
        .ok_or("metrics.json: no epochs")?
        .iter()
        .filter_map(|e| e["train_seconds"].as_f64())
        .collect();
    secs.sort_by(f64::total_cmp);
    let median = *secs
        .get(secs.len() / 2)
        .ok_or("metrics.json: no train_seconds")?;
    Ok((median, m["test_accuracy"].as_f64().unwrap_or(f64::NAN)))
}

/// A folder of `classes` x `per_class` synthetic 299x299 PNG images.
pub fn image_folder(root: &Path, classes: usize, per_class: usize) -> Result<ImageFolder, String> {
    for c in 0..classes {
        let dir = root.join(format!("class_{c}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for i in 0..per_class {
            let px = uniform(299 * 299 * 3, (c * 1000 + i) as u64 + 7);
            let bytes: Vec<u8> = px.iter().map(|v| (v * 255.0) as u8).collect();
            let img = image::RgbImage::from_raw(299, 299, bytes).ok_or("image size")?;
            img.save(dir.join(format!("{i}.png")))
                .map_err(|e| e.to_string())?;
        }
    }
    ImageFolder::scan(root).map_err(|e| e.to_string())
}

/// Seconds per training image of fine-tuning a full-width Inception-v3 (random weights,
/// batch norm frozen as TF Hub does) with a new head, Adam, at `batch`:
/// - `whole`: the whole network, timed over `steps` steps after one warm-up step;
/// - otherwise head only, timed over `epochs` epochs of the folder (the first one computes
///   and caches the backbone's features, as `finetune` does).
pub fn finetune(
    data: &ImageFolder,
    batch: usize,
    whole: bool,
    steps_or_epochs: usize,
) -> Result<f64, String> {
    let device = Backend::Flex.device().autodiff();
    let classes = data.classes.clone();
    let model = ImageClassifier::new(
        &InceptionV3Config::feature_vector(),
        classes.len(),
        0.0,
        &Backend::Flex.device(),
    )
    .map_err(|e| e.to_string())?;
    let options = FinetuneOptions {
        batch_size: batch,
        train_backbone: whole,
        validation_fraction: 0.0,
        ..FinetuneOptions::default()
    };
    let mut trainer = Trainer::new(model, classes, options, &device).map_err(|e| e.to_string())?;
    let all: Vec<usize> = (0..data.items.len()).collect();
    if whole {
        let idx = &all[..batch.min(all.len())];
        trainer.step(data, idx).map_err(|e| e.to_string())?;
        let t = Instant::now();
        for _ in 0..steps_or_epochs {
            trainer.step(data, idx).map_err(|e| e.to_string())?;
        }
        Ok(t.elapsed().as_secs_f64() / (steps_or_epochs * idx.len()) as f64)
    } else {
        let t = Instant::now();
        for _ in 0..steps_or_epochs {
            trainer
                .train_epoch(data, &all, &[], &mut |_| {})
                .map_err(|e| e.to_string())?;
        }
        Ok(t.elapsed().as_secs_f64() / (steps_or_epochs * all.len()) as f64)
    }
}
