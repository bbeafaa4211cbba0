//! Transcendental elementwise ops and softmax on the flex CPU device, in parallel.
//!
//! Burn's flex backend evaluates `tanh`, `erf`, `exp` one scalar call at a time on one
//! thread (30-40 ns per element): a ViT's GELUs and softmaxes spent more time there than in
//! its matrix products. Here the values are read back from the device (no copy when the op
//! holds the only reference), computed in parallel chunks with the same formulas, and put
//! back. Used only without autodiff (nothing to differentiate through).

use crate::dev::{self, FT};
use crate::ops::Value;
use burn::tensor::Device;
use rayon::prelude::*;

/// Elements per parallel work item.
const CHUNK: usize = 16 * 1024;
/// Below this many elements the device op is as fast.
const MIN_ELEMENTS: usize = 32 * 1024;

/// Runs `f` on the values of `t` read back to the host and puts the result on `device`, when
/// the ops here apply (flex without autodiff, at least [`MIN_ELEMENTS`] values); `None`
/// otherwise.
fn on_host(t: &FT, device: &Device, f: impl FnOnce(&mut [f32])) -> Option<Result<FT, String>> {
    let shape = dev::shape(t);
    if !crate::fast::applies_to(device) || shape.iter().product::<usize>() < MIN_ELEMENTS {
        return None;
    }
    Some(dev::download(t.clone()).map(|mut v| {
        f(&mut v);
        dev::upload(v, &shape, device)
    }))
}

/// `op` of every element of `t`, or `None` when `op` is not one of these (or `t` is small).
pub(crate) fn unary(op: &str, t: &FT, device: &Device) -> Option<Result<FT, String>> {
    let f: fn(&mut [f32]) = match op {
        "Tanh" => |v| map(v, tanh_f32),
        "Exp" => |v| map(v, f32::exp),
        "Sigmoid" => |v| map(v, |x| 1.0 / (1.0 + (-x).exp())),
        "Erf" => |v| map(v, erf_f32),
        "Erfc" => |v| map(v, |x| 1.0 - erf_f32(x)),
        "Log" => |v| map(v, f32::ln),
        "Log1p" => |v| map(v, f32::ln_1p),
        _ => return None,
    };
    on_host(t, device, f)
}

/// `x^c` for every element of `t` (TensorFlow's `Pow` with a scalar exponent, as in the tanh
/// form of GELU), or `None` when the device op should run.
pub(crate) fn pow_scalar(t: &FT, c: f32, device: &Device) -> Option<Result<FT, String>> {
    on_host(t, device, |v| {
        if c == 2.0 {
            map(v, |x| x * x);
        } else if c == 3.0 {
            // powf rounds once; so does this, up to an ulp (x*x is exact in the f64 product).
            map(v, |x| ((x as f64) * (x as f64) * (x as f64)) as f32);
        } else {
            map(v, |x| x.powf(c));
        }
    })
}

/// Whether `a * b` is `a` scaled by a per-channel gate `b` broadcast over its inner axes,
/// as in a squeeze-and-excitation block (`a` `[N, .., C]`, `b` `[N or 1, 1, .., 1, C]` of the
/// same rank), large enough for [`channel_mul`] on this device.
pub(crate) fn is_channel_gate(a: &FT, b: &FT, device: &Device) -> bool {
    let (sa, sb) = (dev::shape(a), dev::shape(b));
    let r = sa.len();
    if r < 3 || sb.len() != r || !crate::fast::applies_to(device) {
        return false;
    }
    let c = sa[r - 1];
    c > 0
        && sb[r - 1] == c
        && sb[1..r - 1].iter().all(|&d| d == 1)
        && (sb[0] == sa[0] || sb[0] == 1)
        && sa.iter().product::<usize>() >= MIN_ELEMENTS
}

/// `a * b` for a gate `b` ([`is_channel_gate`]), in parallel on the host (Burn's broadcasting
/// multiply runs on one thread). Takes `a` by value: read back without a copy when the op
/// holds its only reference.
pub(crate) fn channel_mul(a: FT, b: FT, device: &Device) -> Result<FT, String> {
    let (sa, sb) = (dev::shape(&a), dev::shape(&b));
    let c = *sa.last().ok_or("a scalar")?;
    let per_image = sb.first() == sa.first();
    let image: usize = sa[1..].iter().product();
    let gate = dev::download(b)?;
    let mut v = dev::download(a)?;
    // Whole pixels per work item.
    let chunk = CHUNK.div_ceil(c) * c;
    v.par_chunks_mut(chunk).enumerate().for_each(|(i, part)| {
        let start = i * chunk;
        for (j, px) in part.chunks_exact_mut(c).enumerate() {
            let n = if per_image {
                (start + j * c) / image
            } else {
                0
            };
            for (x, g) in px.iter_mut().zip(&gate[n * c..(n + 1) * c]) {
                *x *= g;
            }
        }
    });
    Ok(dev::upload(v, &sa, device))
}

/// `f` of every element, in parallel chunks (generic, so that `f` is inlined and the loop
/// vectorised).
fn map(v: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    v.par_chunks_mut(CHUNK).for_each(|c| {
        for x in c {
            *x = f(*x);
        }
    });
}

/// `a op b` (`Add`, `AddV2`, `Sub`, `Mul`, `RealDiv`, `Div`) of float32 operands, at least
/// one on the flex device, where one broadcasts along the other's leading axes only (a
/// per-channel vector, a row of positions: a network's input normalisation), in parallel
/// with the operands read in place (Burn broadcasts one element at a time). `None`
/// otherwise (equal sizes, other broadcasts, small): the device op runs.
pub(crate) fn binary(
    op: &str,
    a: &Value,
    b: &Value,
    device: &Device,
) -> Option<Result<FT, String>> {
    if !matches!(op, "Add" | "AddV2" | "Sub" | "Mul" | "RealDiv" | "Div")
        || !crate::fast::applies_to(device)
        || (a.is_host() && b.is_host())
    {
        return None;
    }
    let (sa, va) = f32_operand(a)?;
    let (sb, vb) = f32_operand(b)?;
    // Whether `small` repeats along `big`'s leading axes.
    let trails = |small: &[usize], big: &[usize]| {
        let lead = small.iter().take_while(|&&d| d == 1).count();
        small.len() <= big.len() && big.ends_with(&small[lead..])
    };
    // Equal shapes run on the device: Burn reuses an operand nothing else holds, which a
    // memory-bound sum needs more than threads.
    let shape = if va.len() == vb.len() {
        return None;
    } else if trails(&sb, &sa) {
        sa.clone()
    } else if trails(&sa, &sb) {
        sb.clone()
    } else {
        return None;
    };
    let n: usize = shape.iter().product();
    // The small operand repeated to at least 1024 values, so that the inner loops are long
    // (a scalar is one value).
    let small = if va.len() == n { &vb } else { &va };
    if n < MIN_ELEMENTS || small.is_empty() {
        return None;
    }
    let pattern: Vec<f32> = small.repeat((1024 / small.len()).max(1));
    let period = pattern.len();
    let per_item = CHUNK.div_ceil(period) * period;
    let mut out: Vec<f32> = Vec::with_capacity(n);
    out.spare_capacity_mut()
        .par_chunks_mut(per_item)
        .enumerate()
        .for_each(|(i, o)| {
            // Each item starts at a multiple of the pattern's length.
            for (k, oc) in o.chunks_mut(period).enumerate() {
                let s0 = i * per_item + k * period;
                let (x, z) = if va.len() == n {
                    (&va[s0..s0 + oc.len()], &pattern[..oc.len()])
                } else {
                    (&pattern[..oc.len()], &vb[s0..s0 + oc.len()])
                };
                // One loop per op, each inlined and vectorised.
                match op {
                    "Add" | "AddV2" => zip_write(oc, x, z, |x, y| x + y),
                    "Sub" => zip_write(oc, x, z, |x, y| x - y),
                    "Mul" => zip_write(oc, x, z, |x, y| x * y),
                    _ => zip_write(oc, x, z, |x, y| x / y),
                }
            }
        });
    // SAFETY: the chunks above cover all n values, each written once.
    unsafe { out.set_len(n) };
    Some(Ok(dev::upload(out, &shape, device)))
}

#[inline(always)]
fn zip_write(
    o: &mut [std::mem::MaybeUninit<f32>],
    x: &[f32],
    z: &[f32],
    f: impl Fn(f32, f32) -> f32,
) {
    for ((y, &x), &z) in o.iter_mut().zip(x).zip(z) {
        y.write(f(x, z));
    }
}

/// A float32 value's shape and elements: a flex tensor's borrowed in place, a host tensor's
/// converted.
pub(crate) fn f32_operand(v: &Value) -> Option<(Vec<usize>, std::borrow::Cow<'_, [f32]>)> {
    match v {
        Value::Dev(t) => {
            let s = dev::shape(t);
            let d = dev::flex_f32(t)?;
            (d.len() == s.iter().product::<usize>()).then_some((s, std::borrow::Cow::Borrowed(d)))
        }
        Value::Host(h) if h.dtype == savedmodel::DType::F32 => {
            Some((h.shape.clone(), std::borrow::Cow::Owned(h.to_f32().ok()?)))
        }
        _ => None,
    }
}

/// A float32 tensor's shape and values for a host kernel: [`f32_operand`]'s, or a device
/// tensor that cannot be borrowed (not contiguous) read back.
pub(crate) fn f32_input(v: &Value) -> Result<(Vec<usize>, std::borrow::Cow<'_, [f32]>), String> {
    if let Some(r) = f32_operand(v) {
        return Ok(r);
    }
    match v {
        Value::Dev(t) => Ok((dev::shape(t), dev::download(t.clone())?.into())),
        _ => Err("the input is not a float32 tensor".into()),
    }
}

/// Softmax (or log-softmax) over the last axis, as TensorFlow computes it
/// ([`cpu_kernels::rowwise::softmax_rows`]), of a tensor the op owns: read back without a
/// copy when nothing else holds it (attention's scores), computed in place. `Err(t)` when
/// the device op should run (other devices, small or rank-0 tensors).
pub(crate) fn softmax_owned(t: FT, log: bool, device: &Device) -> Result<Result<FT, String>, FT> {
    let shape = dev::shape(&t);
    let d = match shape.last() {
        Some(&d) if d > 0 => d,
        _ => return Err(t),
    };
    if !crate::fast::applies_to(device) || shape.iter().product::<usize>() < MIN_ELEMENTS {
        return Err(t);
    }
    Ok(dev::download(t).map(|mut v| {
        cpu_kernels::rowwise::softmax_rows(&mut v, d, log);
        dev::upload(v, &shape, device)
    }))
}

/// tanh in f32 as Eigen (and so TensorFlow's CPU kernels) computes it: an odd [13/6]
/// rational function on `x` clamped to about ±7.9, `x` itself below 4e-4.
pub(crate) fn tanh_f32(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    const A: [f32; 7] = [
        4.893_524_6e-3,
        6.372_619_3e-4,
        1.485_722_4e-5,
        5.122_297e-8,
        -8.604_671_5e-11,
        2.000_187_9e-13,
        -2.760_768_5e-16,
    ];
    const B: [f32; 4] = [4.893_525e-3, 2.268_434_6e-3, 1.185_347e-4, 1.198_258_4e-6];
    if x.abs() < 4e-4 {
        return x;
    }
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let mut p = A[6];
    for &a in A[..6].iter().rev() {
        p = p * x2 + a;
    }
    let p = p * x;
    let mut q = B[3];
    for &b in B[..3].iter().rev() {
        q = q * x2 + b;
    }
    p / q
}

/// erf in f32 as Eigen computes it: `x * P(x^2) / Q(x^2)` on `x` clamped to ±4.
pub(crate) fn erf_f32(x: f32) -> f32 {
    const A: [f32; 7] = [
        -2.726_142_3e-10,
        2.770_681_4e-8,
        -2.101_024e-6,
        -5.692_506_4e-5,
        -7.349_906_3e-4,
        -2.954_6e-3,
        -1.609_603_3e-2,
    ];
    const B: [f32; 5] = [
        -1.456_607_2e-5,
        -2.133_740_6e-4,
        -1.682_827e-3,
        -7.373_329_2e-3,
        -1.426_474e-2,
    ];
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = A[0];
    for &a in &A[1..] {
        p = p * x2 + a;
    }
    let p = p * x;
    let mut q = B[0];
    for &b in &B[1..] {
        q = q * x2 + b;
    }
    p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rational approximations against f64 references over their whole range.
    #[test]
    fn tanh_and_erf_are_accurate_to_a_few_ulps() {
        let mut worst = (0f64, 0f64);
        for i in -200_000..=200_000 {
            let x = i as f32 * 5e-5;
            let t = (tanh_f32(x) as f64 - (x as f64).tanh()).abs();
            let e = (erf_f32(x) as f64 - super::super::ops::erf64(x as f64)).abs();
            worst = (worst.0.max(t), worst.1.max(e));
        }
        for x in [20.0f32, -20.0, 9.0, 1e-6, -3e-4] {
            assert!(
                (tanh_f32(x) as f64 - (x as f64).tanh()).abs() < 1e-6,
                "tanh({x})"
            );
        }
        assert!(worst.0 < 5e-7, "tanh: largest error {:e}", worst.0);
        assert!(worst.1 < 5e-7, "erf: largest error {:e}", worst.1);
    }
}

#[cfg(test)]
mod ops_tests {
    use super::*;

    /// The parallel host ops on a flex tensor large enough to take them, against f64 math.
    #[test]
    fn host_ops_match_f64_math_on_large_tensors() {
        let device = Device::flex();
        let (rows, d) = (400, 197);
        let x: Vec<f32> = (0..rows * d)
            .map(|i| ((i as u64 * 2_654_435_761) % 2001) as f32 / 250.0 - 4.0)
            .collect();
        let t = dev::upload(x.clone(), &[rows, d], &device);
        let check = |got: Vec<f32>, f: &dyn Fn(f64) -> f64, tol: f64, what: &str| {
            for (g, &v) in got.iter().zip(&x) {
                let want = f(v as f64);
                assert!(
                    (*g as f64 - want).abs() <= tol * want.abs().max(1.0),
                    "{what}({v}) = {g}, want {want}"
                );
            }
        };
        let run = |op: &str| dev::download(unary(op, &t, &device).unwrap().unwrap()).unwrap();
        check(run("Tanh"), &f64::tanh, 1e-6, "tanh");
        check(run("Exp"), &f64::exp, 1e-6, "exp");
        check(
            run("Sigmoid"),
            &|v| 1.0 / (1.0 + (-v).exp()),
            1e-6,
            "sigmoid",
        );
        check(run("Erf"), &crate::ops::erf64, 1e-6, "erf");
        check(run("Erfc"), &|v| 1.0 - crate::ops::erf64(v), 1e-6, "erfc");
        let p = dev::download(pow_scalar(&t, 3.0, &device).unwrap().unwrap()).unwrap();
        check(p, &|v| v * v * v, 1e-6, "pow3");
        // Softmax rows sum to one and match exp(x - max) / sum in f64.
        let s = softmax_owned(t.clone(), false, &device)
            .ok()
            .expect("taken on flex");
        let s = dev::download(s.unwrap()).unwrap();
        for (r, row) in s.chunks(d).enumerate() {
            let xs = &x[r * d..(r + 1) * d];
            let m = xs.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
            let sum: f64 = xs.iter().map(|&v| (v as f64 - m).exp()).sum();
            for (g, &v) in row.iter().zip(xs) {
                let want = (v as f64 - m).exp() / sum;
                assert!(
                    (*g as f64 - want).abs() < 1e-7 + 1e-5 * want,
                    "softmax row {r}"
                );
            }
        }
        let ls = softmax_owned(t.clone(), true, &device)
            .ok()
            .expect("taken on flex");
        let ls = dev::download(ls.unwrap()).unwrap();
        for (g, p) in ls.iter().zip(&s) {
            assert!((*g as f64 - (*p as f64).ln()).abs() < 1e-4, "log-softmax");
        }
        // Small tensors and other devices are left to Burn.
        let small = dev::upload(vec![0.5; 10], &[10], &device);
        assert!(unary("Tanh", &small, &device).is_none());
        assert!(unary("Relu", &t, &device).is_none());
    }
}

/// `x` with `[top, bottom, left, right]` rows and columns of zeros around each image (the
/// rows in parallel).
pub(crate) fn zero_pad(x: &cpu_kernels::Nhwc, [t, b, l, r]: [usize; 4]) -> cpu_kernels::Nhwc {
    let (h, w, c) = (x.h + t + b, x.w + l + r, x.c);
    let mut y = cpu_kernels::Nhwc::zeros(x.n, h, w, c);
    if c == 0 || w == 0 {
        return y;
    }
    y.data
        .par_chunks_mut(w * c)
        .enumerate()
        .for_each(|(row, out)| {
            let (img, oy) = (row / h, row % h);
            if oy < t || oy >= t + x.h {
                return;
            }
            let src = &x.data[((img * x.h + oy - t) * x.w) * c..][..x.w * c];
            out[l * c..(l + x.w) * c].copy_from_slice(src);
        });
    y
}
