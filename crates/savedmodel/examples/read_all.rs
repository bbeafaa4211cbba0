//! Times reading a SavedModel and decoding (CRC-checking) every variable.
//! Usage: cargo run -p savedmodel --release --example read_all -- <saved_model_dir>
//! (tools/bench_read.py compares with `tf.saved_model.load`.)

use std::time::Instant;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: read_all <saved_model_dir>");
        std::process::exit(2);
    };
    let t0 = Instant::now();
    let sm = match savedmodel::read(std::path::Path::new(&dir)) {
        Ok(sm) => sm,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let t_open = t0.elapsed();
    let mut bytes = 0usize;
    for v in sm.variables() {
        match sm
            .tensor(&v.name)
            .and_then(|t| t.to_f32().or_else(|_| Ok(vec![])))
        {
            Ok(d) => bytes += d.len() * 4,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
    }
    let total = t0.elapsed();
    println!(
        "{{\"variables\": {}, \"f32_bytes\": {bytes}, \"open_s\": {:.4}, \"total_s\": {:.4}}}",
        sm.variables().len(),
        t_open.as_secs_f64(),
        total.as_secs_f64()
    );
}
