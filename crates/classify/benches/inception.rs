//! Inception-v3 inference speed (not a test): full width, 299x299, batch 1 and 16.
//!
//! Run: `cargo bench -p classify --bench inception [-- --backend flex|ndarray|wgpu] [--iters N]`
//! (release build). Compare with `tools/.venv/bin/python tools/bench_inception_tf.py`.
//! Prints images/s for the plain (BN unfolded) and the BN-folded model, and a per-block profile.

use burn::tensor::{Device, Tensor};
use models::inception_v3::{InceptionV3, InceptionV3Config};
use models::Backend;
use std::time::Instant;

fn sync(t: Tensor<2>) -> f32 {
    t.into_data().try_to_vec::<f32>().unwrap()[0]
}

fn time_forward(model: &InceptionV3, batch: usize, iters: usize, dev: &Device) -> f64 {
    let x = Tensor::<4>::random(
        [batch, 299, 299, 3],
        burn::tensor::Distribution::Uniform(0.0, 1.0),
        dev,
    );
    sync(model.forward(x.clone()).unwrap()); // warm-up
    let t0 = Instant::now();
    for _ in 0..iters {
        sync(model.forward(x.clone()).unwrap());
    }
    (batch * iters) as f64 / t0.elapsed().as_secs_f64()
}

fn profile(model: &InceptionV3, batch: usize, dev: &Device) {
    let x = Tensor::<4>::random(
        [batch, 299, 299, 3],
        burn::tensor::Distribution::Uniform(0.0, 1.0),
        dev,
    );
    let mut x = InceptionV3::preprocess(x);
    let force = |t: &Tensor<4>| {
        let _ = t.clone().slice([0..1, 0..1, 0..1, 0..1]).into_data();
    };
    let mut rows = Vec::new();
    let mut time = |name: &str, f: &dyn Fn(Tensor<4>) -> Tensor<4>, x: Tensor<4>| -> Tensor<4> {
        let t0 = Instant::now();
        let y = f(x);
        force(&y);
        rows.push((name.to_string(), t0.elapsed().as_secs_f64() * 1e3));
        y
    };
    let pool = |x: Tensor<4>| {
        burn::tensor::module::max_pool2d(
            x,
            burn::tensor::ops::MaxPoolOptions {
                kernel_size: [3, 3],
                stride: [2, 2],
                padding: [(0, 0), (0, 0)],
                dilation: [1, 1],
                ceil_mode: false,
            },
        )
    };
    force(&x);
    x = time("Conv2d_1a_3x3", &|x| model.conv2d_1a_3x3.forward(x), x);
    x = time(
        "Conv2d_2a_3x3",
        &|x| model.conv2d_2a_3x3.as_ref().unwrap().forward(x),
        x,
    );
    x = time(
        "Conv2d_2b_3x3",
        &|x| model.conv2d_2b_3x3.as_ref().unwrap().forward(x),
        x,
    );
    x = time("MaxPool_3a_3x3", &pool, x);
    x = time(
        "Conv2d_3b_1x1",
        &|x| model.conv2d_3b_1x1.as_ref().unwrap().forward(x),
        x,
    );
    x = time(
        "Conv2d_4a_3x3",
        &|x| model.conv2d_4a_3x3.as_ref().unwrap().forward(x),
        x,
    );
    x = time("MaxPool_5a_3x3", &pool, x);
    let blocks = [
        ("Mixed_5b", &model.mixed_5b),
        ("Mixed_5c", &model.mixed_5c),
        ("Mixed_5d", &model.mixed_5d),
        ("Mixed_6a", &model.mixed_6a),
        ("Mixed_6b", &model.mixed_6b),
        ("Mixed_6c", &model.mixed_6c),
        ("Mixed_6d", &model.mixed_6d),
        ("Mixed_6e", &model.mixed_6e),
        ("Mixed_7a", &model.mixed_7a),
        ("Mixed_7b", &model.mixed_7b),
        ("Mixed_7c", &model.mixed_7c),
    ];
    for (name, b) in blocks {
        let b = b.as_ref().unwrap();
        x = time(name, &|x| b.forward(x), x);
    }
    let t0 = Instant::now();
    sync(model.head(x));
    rows.push(("Logits".into(), t0.elapsed().as_secs_f64() * 1e3));
    let total: f64 = rows.iter().map(|r| r.1).sum();
    println!("per-block profile, batch {batch} ({total:.1} ms total):");
    for (name, ms) in rows {
        println!("  {name:<15} {ms:8.2} ms  {:5.1}%", 100.0 * ms / total);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let backend: Backend = arg("--backend")
        .map(|b| b.parse().unwrap())
        .unwrap_or(Backend::Flex);
    let iters: usize = arg("--iters").map(|v| v.parse().unwrap()).unwrap_or(5);
    let dev = backend.device();
    let model = match arg("--model") {
        Some(dir) => InceptionV3::load(&dir, &dev).expect("load"),
        None => InceptionV3Config::classification().init(&dev).unwrap(),
    };
    println!(
        "backend {backend}, threads {:?}",
        std::thread::available_parallelism().map(|n| n.get()).ok()
    );
    let plain_1 = time_forward(&model, 1, iters, &dev);
    println!("plain  batch 1 : {plain_1:6.2} img/s");
    let fused = model.fuse_for_inference();
    let fused_1 = time_forward(&fused, 1, iters, &dev);
    println!("folded batch 1 : {fused_1:6.2} img/s");
    let fused_16 = time_forward(&fused, 16, iters.div_ceil(4).max(1), &dev);
    println!("folded batch 16: {fused_16:6.2} img/s");
    profile(&fused, 1, &dev);
    profile(&fused, 16, &dev);
}
