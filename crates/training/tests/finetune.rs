//! Fine-tuning on a small synthetic image set made here (3 classes told apart by colour
//! and texture), with a narrow randomly initialised Inception-v3.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use models::inception_v3::{InceptionV3, InceptionV3Config};
use std::path::{Path, PathBuf};
use training::{
    load_image, BatchNormPolicy, FinetuneOptions, ImageClassifier, ImageFolder, SplitMix64, Trainer,
};

const SIZE: usize = 80;

/// Burn's random initialisation and dropout draw from a generator that may be global to the
/// process: the training tests seed it and run one at a time, so each run is reproducible.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn seeded_device(seed: u64) -> (std::sync::MutexGuard<'static, ()>, Device) {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    device.seed(seed);
    Device::flex().seed(seed);
    (guard, device)
}

fn tiny_config() -> InceptionV3Config {
    InceptionV3Config {
        num_classes: None,
        depth_multiplier: 0.1,
        min_depth: 4,
        ..InceptionV3Config::default()
    }
}

/// `root/{red_stripes,green_dots,blue_plain}/NN.png`, `per_class` pictures each at 80x80,
/// plus a text file (ignored) and, if `bad`, a broken `.png` (skipped).
fn make_images(root: &Path, per_class: usize, bad: bool) {
    let mut rng = SplitMix64(1234);
    let mut noise = move || (rng.next_u64() % 60) as i32 - 30;
    for (c, name) in ["a_red_stripes", "b_green_dots", "c_blue_plain"]
        .iter()
        .enumerate()
    {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let phase = i as u32 % 7;
            let img = image::RgbImage::from_fn(SIZE as u32, SIZE as u32, |x, y| {
                let base: [i32; 3] = match c {
                    0 => {
                        if (y + phase) / 6 % 2 == 0 {
                            [200, 60, 50]
                        } else {
                            [120, 40, 40]
                        }
                    }
                    1 => {
                        if (x + phase) % 10 < 4 && (y + phase) % 10 < 4 {
                            [40, 220, 60]
                        } else {
                            [60, 130, 60]
                        }
                    }
                    _ => [50, 70, 190],
                };
                let n = noise();
                image::Rgb(base.map(|v| (v + n).clamp(0, 255) as u8))
            });
            img.save(dir.join(format!("{i:02}.png"))).unwrap();
        }
        std::fs::write(dir.join("README.txt"), "not an image").unwrap();
    }
    if bad {
        std::fs::write(
            root.join("a_red_stripes").join("broken.png"),
            b"this is not a png",
        )
        .unwrap();
    }
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("finetune-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn options() -> FinetuneOptions {
    FinetuneOptions {
        batch_size: 8,
        learning_rate: 1e-2,
        image_size: SIZE,
        validation_fraction: 0.25,
        seed: 7,
        ..Default::default()
    }
}

fn images(data: &ImageFolder, idx: &[usize], device: &Device) -> Tensor<4> {
    let mut v = Vec::new();
    for &i in idx {
        v.extend(load_image(&data.items[i].0, SIZE).unwrap());
    }
    Tensor::from_data(TensorData::new(v, [idx.len(), SIZE, SIZE, 3]), device)
}

fn to_vec(t: Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

#[test]
fn head_training_learns_and_export_matches() {
    let root = tmp("learn");
    make_images(&root.join("data"), 16, true);
    let data = ImageFolder::scan(root.join("data")).unwrap();
    assert_eq!(
        data.classes,
        ["a_red_stripes", "b_green_dots", "c_blue_plain"]
    );
    assert_eq!(data.items.len(), 48);
    assert_eq!(data.skipped.len(), 1, "{:?}", data.skipped);
    assert!(data.skipped[0].0.ends_with("broken.png"));

    let (_serial, device) = seeded_device(11);
    let model = ImageClassifier::new(&tiny_config(), 3, 0.2, &device).unwrap();
    let opts = FinetuneOptions {
        learning_rate: 0.05,
        ..options()
    };
    let mut trainer = Trainer::new(model, data.classes.clone(), opts, &device).unwrap();
    let (train, val) = data.split(0.25, 7);
    assert_eq!((train.len(), val.len()), (36, 12));
    let f = trainer
        .model
        .valid()
        .backbone
        .features(images(&data, &train[..6], &Device::flex()))
        .unwrap()
        .0;
    eprintln!(
        "feature mean {} std {}",
        f.clone().mean().into_scalar::<f32>(),
        f.clone().var(0).mean().sqrt().into_scalar::<f32>()
    );
    let mut records = Vec::new();
    for _ in 0..25 {
        records.push(
            trainer
                .train_epoch(&data, &train, &val, &mut |_| {})
                .unwrap(),
        );
    }
    for r in &records {
        eprintln!("{r:?}");
    }
    let first = &records[0];
    let last = records.last().unwrap();
    assert_eq!(last.epoch, 25);
    assert!(
        last.loss < first.loss * 0.8,
        "loss {} -> {}",
        first.loss,
        last.loss
    );
    let val_acc = last.val_accuracy.unwrap();
    assert!(
        val_acc >= 0.75,
        "validation accuracy {val_acc} (chance 0.33)"
    );
    assert!(last.accuracy >= 0.75, "train accuracy {}", last.accuracy);

    // Export: an inception_v3 folder with labels that loads and predicts as the model does.
    let out = root.join("export");
    trainer.export(&out).unwrap();
    let labels = std::fs::read_to_string(out.join("labels.txt")).unwrap();
    assert_eq!(labels, "a_red_stripes\nb_green_dots\nc_blue_plain\n");
    let plain = Device::flex();
    let loaded = InceptionV3::load(&out, &plain).unwrap();
    assert_eq!(loaded.config().num_classes, Some(3));
    let x = images(&data, &val, &plain);
    let want = to_vec(trainer.model.valid().forward(x.clone()).unwrap().0);
    let got = to_vec(loaded.forward(x.clone()).unwrap());
    let fused = to_vec(
        InceptionV3::load(&out, &plain)
            .unwrap()
            .fuse_for_inference()
            .forward(x)
            .unwrap(),
    );
    assert_eq!(want.len(), 12 * 3);
    for ((w, g), f) in want.iter().zip(&got).zip(&fused) {
        assert!(
            (w - g).abs() <= 1e-4 * (1.0 + w.abs()),
            "{want:?} vs {got:?}"
        );
        assert!(
            (w - f).abs() <= 1e-3 * (1.0 + w.abs()),
            "{want:?} vs fused {fused:?}"
        );
    }
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn resume_continues_exactly() {
    let root = tmp("resume");
    make_images(&root.join("data"), 8, false);
    let data = ImageFolder::scan(root.join("data")).unwrap();
    let (train, val) = data.split(0.25, 7);
    let (_serial, device) = seeded_device(11);
    // No dropout so that two runs from the same state are deterministic.
    let opts = FinetuneOptions {
        dropout_rate: 0.0,
        ..options()
    };
    let model = ImageClassifier::new(&tiny_config(), 3, 0.0, &device).unwrap();
    let mut a = Trainer::new(model, data.classes.clone(), opts, &device).unwrap();
    a.train_epoch(&data, &train, &val, &mut |_| {}).unwrap();
    a.train_epoch(&data, &train, &val, &mut |_| {}).unwrap();
    let ckpt = root.join("ckpt");
    a.save_checkpoint(&ckpt).unwrap();
    let a3 = a.train_epoch(&data, &train, &val, &mut |_| {}).unwrap();

    let mut b = Trainer::resume(&ckpt, &device).unwrap();
    assert_eq!(b.epochs_done, 2);
    assert_eq!(b.report.epochs.len(), 2);
    assert_eq!(b.classes, data.classes);
    let b3 = b.train_epoch(&data, &train, &val, &mut |_| {}).unwrap();
    assert_eq!(b3.epoch, 3);
    assert!(
        (a3.loss - b3.loss).abs() < 1e-5,
        "{} vs {}",
        a3.loss,
        b3.loss
    );
    assert!((a3.val_loss.unwrap() - b3.val_loss.unwrap()).abs() < 1e-5);
    // The Adam moments were restored: a fresh optimizer from the same weights gives
    // a different third epoch.
    let restored = Trainer::resume(&ckpt, &device).unwrap();
    let mut c = Trainer::new(
        restored.model,
        data.classes.clone(),
        restored.options.clone(),
        &device,
    )
    .unwrap();
    c.epochs_done = 2;
    let c3 = c.train_epoch(&data, &train, &val, &mut |_| {}).unwrap();
    assert!(
        (a3.loss - c3.loss).abs() > 1e-4,
        "optimizer state made no difference: {} vs {}",
        a3.loss,
        c3.loss
    );

    let err = Trainer::resume(&root.join("nope"), &device)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("checkpoint.json"), "{err}");
    std::fs::remove_dir_all(&root).ok();
}

/// Checkpoints hold `backbone.bpk` and `head.bpk`: a frozen backbone is written by the run's
/// first checkpoint and linked by the later ones; a trained one is written each time; and a
/// checkpoint of an earlier version (`model.bpk`) still resumes.
#[cfg(unix)]
#[test]
fn checkpoints_write_a_frozen_backbone_once_and_old_ones_resume() {
    use std::os::unix::fs::MetadataExt;
    let root = tmp("ckpt_files");
    make_images(&root.join("data"), 4, false);
    let data = ImageFolder::scan(root.join("data")).unwrap();
    let (train, val) = data.split(0.25, 7);
    let (_serial, device) = seeded_device(5);
    let x = images(&data, &val, &Device::flex());
    let logits = |t: &Trainer| to_vec(t.model.valid().forward(x.clone()).unwrap().0);
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    for train_backbone in [false, true] {
        let opts = FinetuneOptions {
            dropout_rate: 0.0,
            train_backbone,
            ..options()
        };
        let model = ImageClassifier::new(&tiny_config(), 3, 0.0, &device).unwrap();
        let mut a = Trainer::new(model, data.classes.clone(), opts, &device).unwrap();
        let ckpt = root.join(format!("ckpt_{train_backbone}"));
        a.train_epoch(&data, &train, &val, &mut |_| {}).unwrap();
        a.save_checkpoint(&ckpt).unwrap();
        let (backbone1, head1) = (
            ino(&ckpt.join("backbone.bpk")),
            std::fs::read(ckpt.join("head.bpk")).unwrap(),
        );
        assert!(!ckpt.join("model.bpk").exists());
        a.train_epoch(&data, &train, &val, &mut |_| {}).unwrap();
        a.save_checkpoint(&ckpt).unwrap();
        let backbone2 = ino(&ckpt.join("backbone.bpk"));
        assert_eq!(
            backbone1 == backbone2,
            !train_backbone,
            "the backbone file is linked exactly when the backbone is frozen"
        );
        assert_ne!(
            std::fs::read(ckpt.join("head.bpk")).unwrap(),
            head1,
            "the head moved"
        );
        let want = logits(&a);
        let b = Trainer::resume(&ckpt, &device).unwrap();
        assert_eq!(logits(&b), want);
        assert_eq!(b.epochs_done, 2);

        // The earlier layout: the whole model in model.bpk.
        let old = root.join(format!("old_{train_backbone}"));
        a.save_checkpoint(&old).unwrap();
        std::fs::remove_file(old.join("backbone.bpk")).unwrap();
        std::fs::remove_file(old.join("head.bpk")).unwrap();
        a.model.valid().save_file(old.join("model.bpk")).unwrap();
        assert_eq!(logits(&Trainer::resume(&old, &device).unwrap()), want);

        // Half of the new layout is an error naming the missing file.
        std::fs::remove_file(ckpt.join("head.bpk")).unwrap();
        let err = Trainer::resume(&ckpt, &device).err().unwrap().to_string();
        assert!(
            err.contains("head.bpk") && err.contains("not found"),
            "{err}"
        );
    }
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn batch_norm_policy_and_backbone_training() {
    let root = tmp("bn");
    make_images(&root.join("data"), 4, false);
    let data = ImageFolder::scan(root.join("data")).unwrap();
    let idx: Vec<usize> = (0..data.items.len()).collect();
    let (_serial, device) = seeded_device(11);
    let stats = |m: &ImageClassifier| {
        let net = m.backbone.inception().unwrap();
        let bn = net.conv2d_1a_3x3.bn.as_ref().unwrap();
        let w = net.conv2d_1a_3x3.conv.weight.val();
        (
            bn.moving_mean
                .value_sync()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap(),
            w.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap(),
        )
    };
    for (policy, train_backbone) in [
        (BatchNormPolicy::Frozen, false),
        (BatchNormPolicy::Frozen, true),
        (BatchNormPolicy::Train { momentum: 0.9 }, true),
    ] {
        let mut cfg = tiny_config();
        policy.apply(&mut cfg);
        let model = ImageClassifier::new(&cfg, 3, 0.2, &device).unwrap();
        let opts = FinetuneOptions {
            batch_norm: policy,
            train_backbone,
            ..options()
        };
        let mut t = Trainer::new(model, data.classes.clone(), opts, &device).unwrap();
        let (mean0, w0) = stats(&t.model);
        let head0 = t
            .model
            .head
            .weight
            .val()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        t.step(&data, &idx[..6]).unwrap();
        let (mean1, w1) = stats(&t.model);
        let head1 = t
            .model
            .head
            .weight
            .val()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        assert_ne!(head0, head1, "head must train");
        assert_eq!(
            w0 != w1,
            train_backbone,
            "backbone weights trained iff --train-backbone ({policy:?})"
        );
        let moved = mean0
            .iter()
            .zip(&mean1)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        match policy {
            BatchNormPolicy::Frozen => {
                assert_eq!(moved, 0.0, "frozen batch norm kept its statistics")
            }
            BatchNormPolicy::Train { .. } => assert!(moved > 1e-4, "moving mean updated ({moved})"),
        }
    }
    std::fs::remove_dir_all(&root).ok();
}

#[test]
fn data_folder_errors_name_the_path() {
    let root = tmp("errors");
    let err = ImageFolder::scan(root.join("missing"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing"), "{err}");
    let err = ImageFolder::scan(&root).unwrap_err().to_string();
    assert!(err.contains("no class sub-folders"), "{err}");
    std::fs::create_dir_all(root.join("cats")).unwrap();
    std::fs::write(root.join("cats").join("x.jpg"), b"garbage").unwrap();
    let err = ImageFolder::scan(&root).unwrap_err().to_string();
    assert!(err.contains("cats") && err.contains("no readable"), "{err}");
    // A folder of another kind is refused as a backbone.
    let other = root.join("other_model");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("config.json"),
        r#"{"kind": "text_embedding", "config": {}}"#,
    )
    .unwrap();
    let err =
        ImageClassifier::from_folder(&other, 3, 0.2, BatchNormPolicy::Frozen, &Device::flex())
            .err()
            .unwrap()
            .to_string();
    assert!(
        err.contains("text_embedding") && err.contains("inception_v3"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).ok();
}

/// The Adam state of a checkpoint (`optimizer.safetensors`) goes back in as it was saved, and
/// a state that does not belong to the model or is not one is refused naming the file.
#[test]
fn optimizer_state_round_trips_and_foreign_state_is_refused() {
    use burn::nn::LinearConfig;
    use training::keras_adam::{param_ids, KerasAdam};
    let root = tmp("adam");
    std::fs::create_dir_all(&root).unwrap();
    let device = Device::flex().autodiff();
    let lin = LinearConfig::new(3, 2).init(&device);
    let x = Tensor::<2>::from_data(TensorData::new(vec![0.5f32, -1.0, 2.0], [1, 3]), &device);
    let grads = lin.forward(x.clone()).sum().backward();
    let mut opt = KerasAdam::new(0.01);
    let lin = opt.step_module(lin, &grads);
    let path = root.join("optimizer.safetensors");
    opt.save(&path).unwrap();
    let ids = param_ids(&lin);
    let bias = lin.bias.as_ref().unwrap().id.to_string();
    let inner = Device::flex();
    let mut loaded = KerasAdam::new(0.01).load(&path, &ids, &inner).unwrap();
    assert_eq!(loaded.iterations, 1);
    // The next step from the loaded state is the next step from the original one.
    let grads = lin.forward(x.clone()).sum().backward();
    let a = opt.step_module(lin.clone(), &grads);
    let b = loaded.step_module(lin, &grads);
    let w = |l: &burn::nn::Linear| {
        l.weight
            .val()
            .inner()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap()
    };
    assert_eq!(w(&a), w(&b));
    // Another model's state, a truncated file, a file without the optimizer metadata.
    let err = KerasAdam::new(0.01)
        .load(&path, &Default::default(), &inner)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("optimizer.safetensors") && err.contains("belongs to no parameter"),
        "{err}"
    );
    // The error of loading `bytes` as the state of `lin`.
    let refused = |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        KerasAdam::new(0.01)
            .load(&path, &ids, &inner)
            .unwrap_err()
            .to_string()
    };
    let bytes = std::fs::read(&path).unwrap();
    let err = refused(&bytes[..bytes.len() / 2]);
    assert!(err.contains("optimizer.safetensors"), "{err}");
    let plain = safetensors::serialize(
        vec![(
            "m/x",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![1], &[0u8; 4][..])
                .unwrap(),
        )],
        None,
    )
    .unwrap();
    let err = refused(&plain);
    assert!(err.contains("not a Keras Adam state"), "{err}");
    // Moments of a parameter of the model, but of another size (the bias has 2 values).
    let five = [0u8; 20];
    let wrong = safetensors::serialize(
        ["m", "v"].map(|p| {
            (
                format!("{p}/{bias}"),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![5], &five[..])
                    .unwrap(),
            )
        }),
        Some(
            [("optimizer", "keras_adam"), ("iterations", "1")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into_iter()
                .collect(),
        ),
    )
    .unwrap();
    let err = refused(&wrong);
    assert!(
        err.contains("optimizer.safetensors") && err.contains("holds 5 values, its parameter 2"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).ok();
}

/// A filter kept as Burn's `[out, in, kh, kw]` and used as TensorFlow's HWIO (a permuted
/// view, as Inception-v3's convolutions read it): Adam updates it in the order its
/// gradient holds its values (the HWIO block) and keeps it there, and the values are
/// Keras' rule element by element in the parameter's own order, step after step, and
/// after the moments went through a checkpoint.
#[test]
fn adam_keeps_a_permuted_filter_in_its_gradient_order() {
    use burn::module::Param;
    use training::keras_adam::{param_ids, KerasAdam};

    #[derive(Module, Debug)]
    struct Filter {
        w: Param<Tensor<4>>,
    }
    let device = Device::flex().autodiff();
    let dims = [4usize, 3, 2, 5]; // [out, in, kh, kw]
    let n: usize = dims.iter().product();
    let wave = |i: usize, k: f32| ((i as f32) * k).sin();
    let w0: Vec<f32> = (0..n).map(|i| wave(i, 0.37)).collect();
    let mut f = Filter {
        w: Param::from_tensor(Tensor::from_data(
            TensorData::new(w0.clone(), dims),
            &device,
        )),
    };
    // d loss / d hwio = c (HWIO, row-major), so the gradient is c under the OIHW view.
    let hwio = [dims[2], dims[3], dims[1], dims[0]];
    let c: Vec<f32> = (0..n).map(|i| wave(i, 1.3) + 0.01).collect();
    let loss = |f: &Filter| {
        let cw = Tensor::<4>::from_data(TensorData::new(c.clone(), hwio), &device);
        (f.w.val().permute([2, 3, 1, 0]) * cw).sum()
    };
    // The gradient in OIHW order: element (o, i, y, x) is c[y, x, i, o].
    let g: Vec<f32> = (0..n)
        .map(|j| {
            let (o, r) = (
                j / (dims[1] * dims[2] * dims[3]),
                j % (dims[1] * dims[2] * dims[3]),
            );
            let (i, r) = (r / (dims[2] * dims[3]), r % (dims[2] * dims[3]));
            let (y, x) = (r / dims[3], r % dims[3]);
            c[((y * dims[3] + x) * dims[1] + i) * dims[0] + o]
        })
        .collect();
    let mut opt = KerasAdam::new(0.01);
    let (mut p, mut m, mut v) = (w0, vec![0f32; n], vec![0f32; n]);
    let path = tmp("adam_order").join("optimizer.safetensors");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    for step in 1..=3 {
        if step == 3 {
            // The moments through a checkpoint (row-major there) and back.
            opt.save(&path).unwrap();
            opt = KerasAdam::new(0.01)
                .load(&path, &param_ids(&f), &Device::flex())
                .unwrap();
        }
        let grads = loss(&f).backward();
        let alpha = 0.01 * (1.0 - 0.999f32.powi(step)).sqrt() / (1.0 - 0.9f32.powi(step));
        f = opt.step_module(f, &grads);
        for j in 0..n {
            m[j] += (g[j] - m[j]) * (1.0 - 0.9);
            v[j] += (g[j] * g[j] - v[j]) * (1.0 - 0.999);
            p[j] -= (m[j] * alpha) / (v[j].sqrt() + 1e-7);
        }
        let inner = f.w.val().inner().into_dispatch();
        let (_, order) = cpu_train::storage_order(&inner).expect("a block of its storage");
        assert_eq!(
            order,
            [2, 3, 1, 0],
            "step {step}: kept as its HWIO gradient"
        );
        let got = f.w.val().inner().into_data().try_into_vec::<f32>().unwrap();
        assert_eq!(got, p, "step {step}");
    }
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}
