//! The whole speed suite, one JSON of figures (see the `benches` crate docs).
//!
//! `cargo bench -p benches --bench suite [-- --quick] [--out FILE] [--only AREA,...]`
//! Areas: `inception`, `stylization`, `conversion`, `train_imdb`, `finetune`. `--quick`: few
//! iterations (a smoke run, not figures to report). Default output: `target/speed.json`.
//! `train_imdb` runs the `train-imdb` program built beside this benchmark: build the
//! programs of the same profile first (`cargo build --workspace --release`).

use benches::report::Report;
use benches::timing::arg;
use benches::{conversion, inception, programs, shared_data, stylization, tools_out};
use models::cpu::InceptionV3Cpu;
use models::inception_v3::InceptionV3Config;
use models::Backend;

/// Freed activation buffers are reused, as in the programs.
#[global_allocator]
static ALLOC: cpu_kernels::CachingAllocator = cpu_kernels::CachingAllocator::new();

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = arg(&args, "--only");
    let wants = |area: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|a| a == area))
    };
    let out = arg(&args, "--out")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| benches::repo().join("target/speed.json"));
    let iters: usize = if quick { 2 } else { 10 };
    let mut r = Report::new();
    println!(
        "{} ({} logical CPUs), {} build",
        r.machine.cpu, r.machine.logical_cpus, r.machine.profile
    );

    if wants("inception") {
        let dev = Backend::Flex.device();
        let model = InceptionV3Config::classification()
            .init(&dev)
            .expect("init");
        let cpu = InceptionV3Cpu::new(&model);
        for (batch, n) in [(1, iters), (16, iters.div_ceil(4))] {
            let (_, median) = inception::cpu_rate(&cpu, batch, n);
            r.add(
                &format!("inception_v3.cpu.batch_{batch}"),
                median,
                "img/s",
                format!(
                    "299x299, 1001 classes, CPU engine (what classify runs), median of {n} passes"
                ),
            );
        }
    }

    if wants("stylization") {
        match stylization::demo(iters) {
            Ok(t) => {
                let d = "examples/stylize TF Lite networks, 384 content + 256 style, CPU engine";
                r.add("stylization.tflite.predictor", t.predictor_ms, "ms", d);
                r.add("stylization.tflite.transfer", t.transformer_ms, "ms", d);
                r.add("stylization.tflite.total", t.total_ms, "ms", d);
            }
            Err(e) => r.skip(format!("stylization (TF Lite demo): {e}")),
        }
        match tools_out("stylization_full") {
            Some(dir) => {
                let case = stylization::saved_model_case(&dir).expect("cases");
                let t = stylization::saved_model(&case, true, Backend::Flex, iters)
                    .expect("stylization");
                let d = "full-width Magenta SavedModel, 384 content + 256 style, CPU engine";
                r.add("stylization.saved_model.predictor", t.predictor_ms, "ms", d);
                r.add("stylization.saved_model.transfer", t.transformer_ms, "ms", d);
                r.add("stylization.saved_model.total", t.total_ms, "ms", d);
            }
            None => r.skip(
                "stylization (SavedModel): tools/out/stylization_full is absent (tools/make_magenta_fixture.py --full)",
            ),
        }
    }

    if wants("conversion") {
        let ex = benches::repo().join("examples/stylize");
        for (name, file) in [
            ("predictor", "style_predict_quantized_256.tflite"),
            ("transfer", "style_transfer_f16_384.tflite"),
        ] {
            match conversion::tflite(&ex.join(file), iters) {
                Ok(ms) => r.add(
                    &format!("convert.tflite.{name}"),
                    ms,
                    "ms",
                    format!("examples/stylize/{file}: read, recognise, map"),
                ),
                Err(e) => r.skip(format!("convert {file}: {e}")),
            }
        }
        let small = benches::repo().join("tests/fixtures/inception_v3/small/saved_model");
        match conversion::saved_model(&small, iters) {
            Ok(ms) => r.add(
                "convert.saved_model.inception_small",
                ms,
                "ms",
                "tests/fixtures/inception_v3/small: read (CRC-checked), recognise, map, write",
            ),
            Err(e) => r.skip(format!("convert the small Inception SavedModel: {e}")),
        }
        match tools_out("inception_full/saved_model") {
            Some(dir) => match conversion::saved_model(&dir, iters.min(3)) {
                Ok(ms) => r.add(
                    "convert.saved_model.inception_full",
                    ms,
                    "ms",
                    "full-width Inception-v3 SavedModel (93 MB): read, recognise, map, write",
                ),
                Err(e) => r.skip(format!("convert the full Inception SavedModel: {e}")),
            },
            None => r.skip(
                "convert (full Inception-v3): tools/out/inception_full is absent (tools/make_inception_fixture.py --full)",
            ),
        }
    }

    if wants("train_imdb") {
        match shared_data("aclImdb_v1_labeled.tar.gz") {
            Some(data) => match programs::train_imdb(&data, if quick { 1 } else { 3 }) {
                Ok((secs, acc)) => r.add(
                    "train_imdb.epoch",
                    secs,
                    "s/epoch",
                    format!("from scratch, full IMDB, batch 512, training pass only (test accuracy {acc:.4})"),
                ),
                Err(e) => r.skip(format!("train_imdb: {e}")),
            },
            None => r.skip("train_imdb: ../shared/data/aclImdb_v1_labeled.tar.gz is absent"),
        }
    }

    if wants("finetune") {
        let tmp = tempfile::tempdir().expect("temp dir");
        let (classes, per_class) = if quick { (2, 6) } else { (10, 6) };
        let data = programs::image_folder(tmp.path(), classes, per_class).expect("images");
        let n = data.items.len();
        let steps = if quick { 1 } else { 3 };
        match programs::finetune(&data, 12, true, steps) {
            Ok(s) => r.add(
                "finetune.whole_network.batch_12",
                s,
                "s/img",
                format!("full-width Inception-v3, 299x299, BN frozen, Adam, {steps} steps"),
            ),
            Err(e) => r.skip(format!("finetune (whole network): {e}")),
        }
        let epochs = if quick { 1 } else { 5 };
        match programs::finetune(&data, 12, false, epochs) {
            Ok(s) => r.add(
                "finetune.head_only.batch_12",
                s,
                "s/img",
                format!(
                    "{n} images, {epochs} epochs incl. the feature pass, full-width Inception-v3"
                ),
            ),
            Err(e) => r.skip(format!("finetune (head only): {e}")),
        }
    }

    match r.write(&out) {
        Ok(()) => println!("wrote {}", out.display()),
        Err(e) => {
            eprintln!("error: {}: {e}", out.display());
            std::process::exit(1);
        }
    }
}
