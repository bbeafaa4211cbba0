//! `finetune`: trains a new Dense head (optionally the whole network) on top of an image
//! feature-vector model on a folder of images with one sub-folder per class, as the TF Hub
//! blog does with `hub.KerasLayer(feature_vector, trainable=...)`. Inception-v3 runs through
//! its hand-written model; any other TF2 SavedModel (MobileNet, EfficientNet, ResNet, ...)
//! through the graph executor, trainable through every op of its graph.
//!
//! Contract: `docs/cli.md` "finetune". Library: the `training` crate.
//!
//! Writes into `--out DIR`: the trained model (`classify --model DIR` loads it): an
//! `inception_v3` folder (`config.json`, `model.safetensors`, `labels.txt`), or for a graph
//! model a `graph_classifier` folder (`backbone/`: the SavedModel with its fine-tuned
//! variables, which TensorFlow loads too; `head.safetensors`, `labels.txt`, `config.json`),
//! `checkpoint/` (model + Adam state + epoch counter, rewritten after every epoch;
//! `--resume DIR` continues from it), `metrics.json`, `metrics.csv` and `curves.png`.
//!
//! `--epochs` is the total number of epochs: a resumed run trains the epochs that are
//! left. A resumed run keeps the options saved in its checkpoint (batch size, learning
//! rate, what is trained, split, image size); `--data` must name the same folder.
//!
//! `--out`: a folder that does not exist, an empty one, or a finetune run folder (its
//! `checkpoint/`, or our `config.json` written by `finetune`) is written in place, so an
//! interrupted run can be resumed from it. Any other folder this project wrote (e.g. a
//! `convert` output) is replaced as a whole: the run is written into a hidden sibling folder
//! that replaces it when training ends ([`model_folder::outdir::swap_in`]; the previous folder is
//! restored if that fails, and the sibling is removed if training fails). A folder this project
//! did not write is refused, naming it, unless `--force` (then replaced the same way).
//!
//! Image files (`.jpg`, `.jpeg`, `.png`) whose header cannot be read are skipped with a
//! warning naming the file; an image that fails to decode later is an error.

use anyhow::{bail, Context, Result};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use models::Backend;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use training::{BatchNormPolicy, FinetuneOptions, ImageClassifier, ImageFolder, Progress, Trainer};

#[derive(Parser, Debug)]
#[command(
    name = "finetune",
    about = "Fine-tune an image feature-vector model (TF Hub style) on a folder of images, one sub-folder per class"
)]
struct Args {
    /// Image feature-vector model: a TF2 SavedModel folder, a TF Hub handle, or a converted
    /// Inception-v3 folder (feature vector or classifier). Not needed with --resume.
    #[arg(long)]
    model: Option<String>,
    /// Folder with one sub-folder of .jpg/.png images per class (sub-folder name = label).
    #[arg(long)]
    data: PathBuf,
    /// Total number of epochs (a resumed run trains the remaining ones).
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    /// Images per training step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Adam learning rate (Keras' Adam: β 0.9 / 0.999, ε 1e-7 on √v).
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    /// Train the whole network, not only the new head.
    #[arg(long)]
    train_backbone: bool,
    /// Use batch statistics in the backbone's batch norms and update their moving averages
    /// (default: frozen moving statistics, as TF Hub's fine-tuning).
    #[arg(long)]
    train_batch_norm: bool,
    /// TF-style decay of the batch-norm moving averages with --train-batch-norm
    /// (moving = m * moving + (1 - m) * batch; default 0.99, TF Hub's). Inception-v3 only: a
    /// graph model's training trace has its own.
    #[arg(long)]
    batch_norm_momentum: Option<f64>,
    /// Dropout rate before the head (the TF Hub blog uses 0.2).
    #[arg(long, default_value_t = 0.2)]
    dropout: f64,
    /// Fraction of each class held out for validation (seeded split).
    #[arg(long, default_value_t = 0.2)]
    validation_fraction: f64,
    /// Seed of the train/validation split and of the per-epoch shuffles.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Resume from a checkpoint folder (or an output folder holding `checkpoint/`).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Output folder. An existing folder is used only when this project wrote it (our
    /// `config.json` or a finetune `checkpoint/` in it) or it is empty; anything else is refused
    /// unless --force.
    #[arg(long, default_value = "finetuned")]
    out: PathBuf,
    /// Replace --out even when it is not a folder this project wrote (the new run is written
    /// next to it and replaces it only when training ends).
    #[arg(long)]
    force: bool,
    /// Compute backend: flex, ndarray or wgpu.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    /// Images are resized (bilinear) to this size (default: 299 for Inception-v3, >= 75; for a
    /// graph model the size its signature fixes, else 224).
    #[arg(long)]
    image_size: Option<usize>,
    /// Do not download anything (same as TFHUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
}

/// Freed activation buffers are reused (see `program::CachingAllocator`); a training step
/// makes all of them again.
#[global_allocator]
static ALLOC: program::CachingAllocator =
    program::CachingAllocator::with_cap(program::CachingAllocator::TRAINING_CAP);

fn main() -> std::process::ExitCode {
    program::retain_heap();
    program::main(|| run(Args::parse()))
}

/// What `--model` names.
enum Backbone {
    /// A converted Inception-v3 folder (a SavedModel or handle is converted once into the
    /// cache).
    Inception(PathBuf),
    /// Any other TF2 SavedModel: through the graph executor.
    Graph(PathBuf),
}

fn open_backbone(spec: &str, offline: bool) -> Result<Backbone> {
    let device = tfhub::burn::tensor::Device::flex();
    let source = tfhub::open_for_program("finetune", spec, offline, &device)
        .with_context(|| format!("{spec}: cannot open the model"))?;
    Ok(match source {
        tfhub::Source::Graph { dir, .. } => Backbone::Graph(dir),
        other => Backbone::Inception(other.into_folder_of(models::inception_v3::KIND)?),
    })
}

fn checkpoint_dir(p: &Path) -> PathBuf {
    if p.join("checkpoint.json").is_file() {
        p.to_path_buf()
    } else {
        p.join("checkpoint")
    }
}

/// Where a run writes: into `out` itself, or into a sibling that replaces `out` at the end.
enum OutPlan {
    InPlace,
    Staged(PathBuf),
}

/// A folder this program wrote as a run's output: a regular `checkpoint/checkpoint.json`, or our
/// `config.json` whose `source` is `finetune`.
fn is_finetune_run(dir: &Path) -> bool {
    let ckpt = dir.join("checkpoint");
    let is_dir = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    let is_file = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file());
    if is_dir(&ckpt) && is_file(&ckpt.join("checkpoint.json")) {
        return true;
    }
    model_folder::outdir::written_by_us(dir)
        && std::fs::read(dir.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["source"] == "finetune")
}

/// The `--out` policy (see the module documentation), decided before any work is done.
fn plan_out(out: &Path, force: bool) -> Result<OutPlan> {
    model_folder::outdir::check_replaceable(out, force).map_err(anyhow::Error::msg)?;
    let meta = match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(OutPlan::InPlace),
        Err(e) => bail!("{}: {e}", out.display()),
        Ok(m) => m,
    };
    if meta.is_dir() {
        let empty = std::fs::read_dir(out)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if empty || is_finetune_run(out) {
            return Ok(OutPlan::InPlace);
        }
    }
    let tmp = model_folder::outdir::stage(out)?;
    eprintln!(
        "writing the run into {}; it replaces {} when training ends",
        tmp.display(),
        out.display()
    );
    Ok(OutPlan::Staged(tmp))
}

/// The options, checked (naming them) before anything is read or written. A resumed run keeps
/// the training options of its checkpoint; those given with it are still checked.
fn check_options(args: &Args) -> Result<()> {
    if args.model.is_none() && args.resume.is_none() {
        bail!("--model is required (unless --resume is given)");
    }
    if let (Some(model), Some(resume)) = (&args.model, &args.resume) {
        bail!(
            "--model {model} and --resume {}: a resumed run continues the model of its checkpoint; give one of them",
            resume.display()
        );
    }
    if args.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if !(args.learning_rate > 0.0 && args.learning_rate.is_finite()) {
        bail!("--learning-rate must be > 0, got {}", args.learning_rate);
    }
    if !(0.0..1.0).contains(&args.validation_fraction) {
        bail!(
            "--validation-fraction must be in [0, 1), got {}",
            args.validation_fraction
        );
    }
    if !(0.0..1.0).contains(&args.dropout) {
        bail!("--dropout must be in [0, 1), got {}", args.dropout);
    }
    if let Some(m) = args.batch_norm_momentum {
        if !(0.0..=1.0).contains(&m) {
            bail!("--batch-norm-momentum must be in [0, 1], got {m}");
        }
    }
    if args.image_size == Some(0) {
        bail!("--image-size must be at least 1");
    }
    Ok(())
}

fn run(args: Args) -> Result<()> {
    check_options(&args)?;
    let plan = plan_out(&args.out, args.force)?;
    let work = match &plan {
        OutPlan::InPlace => args.out.clone(),
        OutPlan::Staged(tmp) => tmp.clone(),
    };
    let result = train(&args, &work).and_then(|()| match &plan {
        OutPlan::InPlace => Ok(()),
        OutPlan::Staged(tmp) => {
            model_folder::outdir::swap_in(tmp, &args.out, args.force).map_err(anyhow::Error::msg)
        }
    });
    if let (Err(_), OutPlan::Staged(tmp)) = (&result, &plan) {
        let _ = std::fs::remove_dir_all(tmp);
    }
    result?;
    println!("{}", args.out.display());
    Ok(())
}

/// Trains and writes everything into `work` (the output folder or its staged sibling).
fn train(args: &Args, work: &Path) -> Result<()> {
    let device = args.backend.autodiff_device();
    // Burn's random initialisation (the new head) and dropout draw from the device's generator.
    device.seed(args.seed);
    let data = ImageFolder::scan(&args.data)
        .with_context(|| format!("{}: cannot read the image folder", args.data.display()))?;
    for (file, why) in &data.skipped {
        eprintln!(
            "warning: {}: skipped, not a readable image: {why}",
            file.display()
        );
    }
    let mut trainer = match &args.resume {
        Some(dir) => {
            let ckpt = checkpoint_dir(dir);
            let t = Trainer::resume(&ckpt, &device)
                .with_context(|| format!("{}: cannot resume", ckpt.display()))?;
            if t.classes != data.classes {
                bail!(
                    "{}: the checkpoint's classes {:?} differ from the folders of {}: {:?}",
                    ckpt.display(),
                    t.classes,
                    args.data.display(),
                    data.classes
                );
            }
            eprintln!(
                "resuming after epoch {} from {}",
                t.epochs_done,
                ckpt.display()
            );
            t
        }
        None => {
            let Some(spec) = &args.model else {
                bail!("--model is required (unless --resume is given)")
            };
            let backbone = open_backbone(spec, args.offline)?;
            let batch_norm = if args.train_batch_norm {
                BatchNormPolicy::Train {
                    momentum: args.batch_norm_momentum.unwrap_or(0.99),
                }
            } else {
                BatchNormPolicy::Frozen
            };
            let (model, image_size) = match &backbone {
                Backbone::Inception(dir) => {
                    let min = models::inception_v3::MIN_INPUT_SIZE;
                    let size = args.image_size.unwrap_or(299);
                    if size < min {
                        bail!("--image-size must be at least {min} (Inception-v3's smallest input), got {size}");
                    }
                    let model = ImageClassifier::from_folder(
                        dir,
                        data.classes.len(),
                        args.dropout,
                        batch_norm,
                        &device,
                    )
                    .with_context(|| {
                        format!("{}: cannot load the Inception-v3 backbone", dir.display())
                    })?;
                    (model, size)
                }
                Backbone::Graph(dir) => {
                    if args.batch_norm_momentum.is_some() {
                        bail!(
                            "--batch-norm-momentum: {} runs through its graph, whose training \
                             trace updates the batch-norm statistics with the momentum it was \
                             exported with",
                            dir.display()
                        );
                    }
                    let model = ImageClassifier::from_saved_model(
                        dir,
                        data.classes.len(),
                        args.dropout,
                        batch_norm,
                        args.image_size,
                        &device,
                    )
                    .with_context(|| format!("{}: cannot load the model", dir.display()))?;
                    let Some(size) = model.backbone.image_size() else {
                        bail!("internal: a graph backbone without an image size")
                    };
                    (model, size)
                }
            };
            let options = FinetuneOptions {
                batch_size: args.batch_size,
                learning_rate: args.learning_rate,
                train_backbone: args.train_backbone,
                batch_norm,
                validation_fraction: args.validation_fraction,
                seed: args.seed,
                image_size,
                dropout_rate: args.dropout,
            };
            options.validate()?;
            Trainer::new(model, data.classes.clone(), options, &device)?
        }
    };
    let (train, val) = data.split(trainer.options.validation_fraction, trainer.options.seed);
    trainer.report.set("train_examples", train.len());
    trainer.report.set("validation_examples", val.len());
    trainer.report.set("classes", data.classes.clone());
    trainer.report.set(
        "skipped_files",
        data.skipped
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>(),
    );
    eprintln!(
        "{} classes, {} training and {} validation images, backend {}, {}",
        data.classes.len(),
        train.len(),
        val.len(),
        args.backend,
        if trainer.options.train_backbone {
            "training the whole network"
        } else {
            "training the head"
        }
    );
    std::fs::create_dir_all(work)
        .with_context(|| format!("{}: cannot create the output folder", work.display()))?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} {msg:>10} [{bar:30}] {pos}/{len} {elapsed}/{eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    });
    let mut on_progress = |p: Progress| {
        if let Some(b) = &bar {
            b.set_prefix(p.epoch.to_string());
            b.set_length(p.total as u64);
            b.set_position(p.done as u64);
            if p.phase == "train" {
                b.set_message(format!("loss {:.4}", p.loss));
            } else {
                b.set_message(p.phase);
            }
        }
    };
    while trainer.epochs_done < args.epochs {
        let r = trainer.train_epoch(&data, &train, &val, &mut on_progress)?;
        if let Some(b) = &bar {
            b.finish_and_clear();
            b.reset();
        }
        let val_text = match (r.val_loss, r.val_accuracy) {
            (Some(l), Some(a)) => format!(", val_loss {l:.4}, val_accuracy {a:.4}"),
            _ => String::new(),
        };
        eprintln!(
            "epoch {}/{}: loss {:.4}, accuracy {:.4}{val_text} ({:.1} s)",
            r.epoch, args.epochs, r.loss, r.accuracy, r.seconds
        );
        trainer.save_checkpoint(&work.join("checkpoint"))?;
        trainer.report.write_all(work)?;
    }
    trainer.export(work)?;
    trainer.report.write_all(work)?;
    Ok(())
}
