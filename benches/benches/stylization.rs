//! Speed of Magenta stylization.
//!
//! `cargo bench -p benches --bench stylization [-- --iters N --engine cpu|burn --backend B]`
//! (release), or without a release build of every dependency:
//! `cargo test -p benches --bench stylization -- --iters N` (the workspace builds dependencies
//! at opt-level 3 in the dev profile too, and all the work happens inside them).
//!
//! The full-width Magenta SavedModel (`tools/out/stylization_full`, made by
//! `tools/make_magenta_fixture.py --full`), 384x384 content and 256x256 style, read,
//! converted and loaded exactly as `stylize` does; after 2 warm-up runs, the median of N runs
//! (default 10) of the style predictor, the transformer and both. `--engine cpu` (default):
//! the CPU inference graphs of `models::cpu`, what `stylize` runs on flex; `--engine burn`:
//! the Burn modules on `--backend`. `--demo`: README's first command instead (the bundled
//! TF Lite networks, no `tools/out` needed). Compare with `tools/bench_stylization_tf.py`,
//! or run both alternating: `tools/.venv/bin/python tools/bench_side_by_side.py stylization`.

use benches::stylization::{demo, saved_model, saved_model_case, StyleTimes};
use benches::timing::arg;
use models::Backend;

fn print(t: StyleTimes) {
    println!("predictor: {:.1} ms", t.predictor_ms);
    println!("transformer: {:.1} ms", t.transformer_ms);
    println!("total: {:.1} ms", t.total_ms);
}

/// Freed activation buffers are reused, as in the programs.
#[global_allocator]
static ALLOC: cpu_kernels::CachingAllocator = cpu_kernels::CachingAllocator::new();

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let iters: usize = arg(&args, "--iters")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    if args.iter().any(|a| a == "--demo") {
        println!("README's first command: examples/stylize TF Lite networks, CPU engine");
        print(demo(iters).expect("demo"));
        return;
    }
    let backend: Backend = arg(&args, "--backend")
        .map(|s| s.parse().expect("backend"))
        .unwrap_or(Backend::Flex);
    let engine = arg(&args, "--engine").unwrap_or_else(|| "cpu".into());
    let Some(dir) = benches::tools_out("stylization_full") else {
        eprintln!(
            "SKIPPED: tools/out/stylization_full is absent: run tools/.venv/bin/python tools/make_magenta_fixture.py --full"
        );
        return;
    };
    let case = saved_model_case(&dir).expect("cases");
    println!(
        "engine {engine}, backend {backend}, content {:?}, style {:?}, {iters} iterations (median)",
        case.content.0, case.style.0
    );
    print(saved_model(&case, engine == "cpu", backend, iters).expect("stylization"));
}
