//! Inception-v3 inference: full width, 299x299, what `classify` runs (the CPU engine,
//! `models::cpu::InceptionV3Cpu`) and the Burn module's forward.

use crate::timing::{rate, uniform};
use burn::tensor::{Device, Tensor, TensorData};
use models::cpu::{InceptionV3Cpu, Nhwc};
use models::inception_v3::InceptionV3;

/// `batch` synthetic 299x299 RGB images in `[0, 1]`, NHWC.
pub fn images(batch: usize) -> Nhwc {
    Nhwc::from_vec(
        batch,
        299,
        299,
        3,
        uniform(batch * 299 * 299 * 3, 0x2545_f491_4f6c_dd1d),
    )
    .expect("shape")
}

/// Images per second of the CPU engine at `batch`: (mean, median pass).
pub fn cpu_rate(cpu: &InceptionV3Cpu, batch: usize, iters: usize) -> (f64, f64) {
    let x = images(batch);
    rate(batch, iters, || {
        std::hint::black_box(cpu.forward(&x).expect("forward"));
    })
}

/// Images per second of the Burn module on `dev` at `batch` (read back to the host).
pub fn burn_rate(model: &InceptionV3, batch: usize, iters: usize, dev: &Device) -> (f64, f64) {
    let x = images(batch);
    let x = Tensor::<4>::from_data(TensorData::new(x.data, [batch, 299, 299, 3]), dev);
    rate(batch, iters, || {
        let y = model.forward(x.clone()).expect("forward");
        std::hint::black_box(y.into_data().try_to_vec::<f32>().expect("read"));
    })
}
