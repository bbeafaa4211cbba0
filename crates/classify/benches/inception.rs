//! Inception-v3 inference speed (not a test): full width, 299x299, batch 1 and 16.
//!
//! Run: `cargo bench -p classify --bench inception [-- --engine cpu|burn] [--backend B]
//! [--iters N] [--model DIR] [--profile]` (release build). `cpu` (default) is the CPU
//! inference graph `models::cpu::InceptionV3Cpu`, what `classify` runs on flex; `burn` is
//! the Burn module's forward on `--backend` (BN folded). The TensorFlow side:
//! `tools/.venv/bin/python tools/bench_inception_tf.py`; both in one run, alternating:
//! `tools/.venv/bin/python tools/bench_side_by_side.py inception`.
//! Prints `batch B: X img/s` lines (parsed by that script) and, with `--profile`, where
//! the time goes per end point.

use burn::tensor::{Device, Tensor};
use models::cpu::{InceptionV3Cpu, Nhwc};
use models::inception_v3::{InceptionV3, InceptionV3Config};
use models::Backend;
use std::time::Instant;

fn images(batch: usize) -> Nhwc {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let data = (0..batch * 299 * 299 * 3)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    Nhwc::from_vec(batch, 299, 299, 3, data).unwrap()
}

/// Images per second over `iters` passes after one warm-up: (mean, median pass).
fn rate(batch: usize, iters: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut times = Vec::with_capacity(iters);
    let t0 = Instant::now();
    for _ in 0..iters {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    let mean = (batch * iters) as f64 / t0.elapsed().as_secs_f64();
    times.sort_by(f64::total_cmp);
    (mean, batch as f64 / times[times.len() / 2])
}

fn burn_rate(model: &InceptionV3, batch: usize, iters: usize, dev: &Device) -> (f64, f64) {
    let x = images(batch);
    let x = Tensor::<4>::from_data(
        burn::tensor::TensorData::new(x.data, [batch, 299, 299, 3]),
        dev,
    );
    rate(batch, iters, || {
        let y = model.forward(x.clone()).unwrap();
        std::hint::black_box(y.into_data().try_to_vec::<f32>().unwrap());
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let engine = arg("--engine").unwrap_or_else(|| "cpu".into());
    let backend: Backend = arg("--backend")
        .map(|b| b.parse().unwrap())
        .unwrap_or(Backend::Flex);
    let iters: usize = arg("--iters").map(|v| v.parse().unwrap()).unwrap_or(10);
    let dev = backend.device();
    let model = match arg("--model") {
        Some(dir) => InceptionV3::load(&dir, &dev).expect("load"),
        None => InceptionV3Config::classification().init(&dev).unwrap(),
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    match engine.as_str() {
        "cpu" => {
            let cpu = InceptionV3Cpu::new(&model);
            println!(
                "engine cpu kernels ({:?}), {threads} threads",
                models::cpu::Isa::detect()
            );
            for (batch, n) in [(1, iters), (16, iters.div_ceil(4))] {
                let x = images(batch);
                let (mean, median) = rate(batch, n, || {
                    std::hint::black_box(cpu.forward(&x).unwrap());
                });
                println!("batch {batch:2}: {mean:7.2} img/s (median pass {median:.2} img/s)");
            }
            if args.iter().any(|a| a == "--profile") {
                for batch in [1, 16] {
                    let x = InceptionV3Cpu::preprocess(&images(batch));
                    let _ = cpu.profile(x.clone());
                    let rows = cpu.profile(x);
                    let total: f64 = rows.iter().map(|r| r.1).sum();
                    println!("per end point, batch {batch} ({total:.1} ms total):");
                    for (name, ms) in rows {
                        println!("  {name:<15} {ms:8.2} ms  {:5.1}%", 100.0 * ms / total);
                    }
                }
            }
        }
        "burn" => {
            println!("engine burn on {backend}, {threads} threads");
            let fused = model.fuse_for_inference();
            for (batch, n) in [(1, iters), (16, iters.div_ceil(4))] {
                let (mean, median) = burn_rate(&fused, batch, n, &dev);
                println!("batch {batch:2}: {mean:7.2} img/s (median pass {median:.2} img/s)");
            }
        }
        other => panic!("unknown --engine {other} (cpu or burn)"),
    }
}
