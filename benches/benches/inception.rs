//! Inception-v3 inference speed (not a test): full width, 299x299, batch 1 and 16.
//!
//! Run: `cargo bench -p benches --bench inception [-- --engine cpu|burn] [--backend B]
//! [--iters N] [--model DIR] [--profile]` (release build). `cpu` (default) is the CPU
//! inference graph `models::cpu::InceptionV3Cpu`, what `classify` runs on flex; `burn` is
//! the Burn module's forward on `--backend` (BN folded). The TensorFlow side:
//! `tools/.venv/bin/python tools/bench_inception_tf.py`; both in one run, alternating:
//! `tools/.venv/bin/python tools/bench_side_by_side.py inception`.
//! Prints `batch B: X img/s` lines (parsed by that script) and, with `--profile`, where
//! the time goes per end point.

use benches::inception::{burn_rate, cpu_rate, images};
use benches::timing::arg;
use models::cpu::InceptionV3Cpu;
use models::inception_v3::{InceptionV3, InceptionV3Config};
use models::Backend;

/// Freed activation buffers are reused, as in the programs.
#[global_allocator]
static ALLOC: cpu_kernels::CachingAllocator = cpu_kernels::CachingAllocator::new();

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str| arg(&args, k);
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
                let (mean, median) = cpu_rate(&cpu, batch, n);
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
