//! Times a SavedModel's default entry point through the graph executor on flex.
//!
//! `cargo run -p tfgraph --example graph_bench -- <saved_model_dir> <batch> [--profile [--by-node]] [--burn-only]`
//! reads the input shape from the entry's signature (batch and unknown sizes from the
//! arguments: `--size N` for open spatial sizes, default 224), runs a warm-up and then
//! repeats until at least 5 runs and 2 s have passed, and prints one JSON line:
//! `{"img_per_s": .., "median_s": .., "runs": .., "fused_convolutions": ..}`.
//! `--profile` also prints the time per op type of one run (stderr), `--by-node` per node. Freed buffers are
//! reused through `cpu_kernels::CachingAllocator`, as in the programs (`--system-alloc`:
//! the system allocator alone).

use burn::tensor::Device;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tfgraph::{HostTensor, Model, Options, Value};

/// Freed activation buffers are reused, as in the programs; `--system-alloc` (read before
/// any large allocation) times the system allocator instead.
#[global_allocator]
static ALLOC: Alloc = Alloc;

struct Alloc;

static CACHING: cpu_kernels::CachingAllocator = cpu_kernels::CachingAllocator::new();
static SYSTEM_ONLY: AtomicBool = AtomicBool::new(false);

fn system() -> bool {
    SYSTEM_ONLY.load(Ordering::Relaxed)
}

unsafe impl GlobalAlloc for Alloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        unsafe {
            if system() {
                System.alloc(l)
            } else {
                CACHING.alloc(l)
            }
        }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        unsafe {
            if system() {
                System.alloc_zeroed(l)
            } else {
                CACHING.alloc_zeroed(l)
            }
        }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe {
            if system() {
                System.dealloc(p, l)
            } else {
                CACHING.dealloc(p, l)
            }
        }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        unsafe {
            if system() {
                System.realloc(p, l, n)
            } else {
                CACHING.realloc(p, l, n)
            }
        }
    }
}

fn main() {
    if std::env::args_os().any(|a| a == "--system-alloc") {
        SYSTEM_ONLY.store(true, Ordering::Relaxed);
    }
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args.first().ok_or(
        "usage: graph_bench <saved_model_dir> <batch> [--size N] [--profile [--by-node]] [--burn-only]",
    )?;
    let batch: usize = args
        .get(1)
        .and_then(|b| b.parse().ok())
        .ok_or("batch: a number")?;
    let flag = |f: &str| args.iter().any(|a| a == f);
    let size: usize = args
        .iter()
        .position(|a| a == "--size")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(224);
    let device = Device::flex();
    let sm = savedmodel::read(std::path::Path::new(dir)).map_err(|e| e.to_string())?;
    let options = Options {
        cpu_fast_path: !flag("--burn-only"),
        ..Options::default()
    };
    let model = Model::load_with(&sm, None, &device, &options).map_err(|e| e.to_string())?;
    let spec = model
        .entry()
        .inputs
        .first()
        .ok_or("the entry point takes no input")?;
    let dims = spec.shape.clone().ok_or("the input's rank is unknown")?;
    let shape: Vec<usize> = dims
        .iter()
        .enumerate()
        .map(|(i, &d)| match (i, d) {
            (0, _) => batch,
            (_, d) if d > 0 => d as usize,
            _ => size,
        })
        .collect();
    let n: usize = shape.iter().product();
    // A deterministic image-like input in [0, 1].
    let data: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let input = HostTensor::f32(shape, data);
    let call = || {
        model
            .run(vec![Value::Host(input.clone())])
            .map_err(|e| e.to_string())
    };
    call()?;
    if flag("--profile") {
        let (_, times) = model
            .profile(vec![Value::Host(input.clone())], flag("--by-node"))
            .map_err(|e| e.to_string())?;
        let total: f64 = times.iter().map(|t| t.1.as_secs_f64()).sum();
        for (op, t, count) in &times {
            eprintln!(
                "{:>8.2} ms {:5.1}%  {count:4}x  {op}",
                t.as_secs_f64() * 1e3,
                100.0 * t.as_secs_f64() / total
            );
        }
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 5 || start.elapsed().as_secs_f64() < 2.0 {
        let t = Instant::now();
        call()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{{\"img_per_s\": {:.3}, \"median_s\": {:.6}, \"runs\": {}, \"fused_convolutions\": {}}}",
        batch as f64 / median,
        median,
        times.len(),
        model.fused().0
    );
    Ok(())
}
