//! Two-operand `Einsum`s that are a batch of matrix products (attention's
//! `aecd,abcd->acbe` scores and `acbe,aecd->abcd` context) on the flex CPU device, read in
//! place and written in the output's layout by [`cpu_kernels::matmul_batches`] instead of
//! Burn's permute, copy and matmul.
//!
//! Taken when there is one contracted letter, one free letter in each operand, any number
//! of batch letters (in both operands and the output), no broadcasting, the output ends in
//! a free letter and the other operand ends in the contracted letter; otherwise `None` and
//! the generic einsum runs.

use crate::cpu_math::f32_operand;
use crate::dev::{self, FT};
use crate::ops::Value;
use burn::tensor::Device;

/// The einsum `eq` of `inputs` on the host kernels, or `None` when it is not of the form
/// above (or not on flex, or not float32).
pub(crate) fn einsum(eq: &str, inputs: &[Value], device: &Device) -> Option<Result<FT, String>> {
    if !crate::fast::applies_to(device) || inputs.len() != 2 {
        return None;
    }
    let (sx, x) = f32_operand(&inputs[0])?;
    let (sy, y) = f32_operand(&inputs[1])?;
    let (ins, out) = eq.split_once("->")?;
    let (lx, ly) = ins.split_once(',')?;
    let (lx, ly, lo) = (lx.as_bytes(), ly.as_bytes(), out.as_bytes());
    let distinct = |v: &[u8]| {
        let mut s = v.to_vec();
        s.sort_unstable();
        s.windows(2).all(|w| w[0] != w[1]) && v.iter().all(u8::is_ascii_alphabetic)
    };
    if !distinct(lx)
        || !distinct(ly)
        || !distinct(lo)
        || lx.len() != sx.len()
        || ly.len() != sy.len()
    {
        return None;
    }
    let pos = |l: &[u8], c: u8| l.iter().position(|&x| x == c);
    let dim = |c: u8| {
        pos(lx, c)
            .map(|i| sx[i])
            .or_else(|| pos(ly, c).map(|i| sy[i]))
    };
    // Shared letters have one size (no broadcasting).
    if lx
        .iter()
        .any(|&c| pos(ly, c).is_some_and(|j| sy[j] != dim(c).unwrap_or(0)))
    {
        return None;
    }
    let contracted: Vec<u8> = lx
        .iter()
        .copied()
        .filter(|&c| pos(ly, c).is_some() && pos(lo, c).is_none())
        .collect();
    let free = |l: &[u8], other: &[u8]| -> Vec<u8> {
        l.iter()
            .copied()
            .filter(|&c| pos(other, c).is_none())
            .collect()
    };
    let (fx, fy) = (free(lx, ly), free(ly, lx));
    let batch: Vec<u8> = lo
        .iter()
        .copied()
        .filter(|&c| pos(lx, c).is_some() && pos(ly, c).is_some())
        .collect();
    // Every output letter is a batch or free letter; free letters are all in the output.
    if contracted.len() != 1
        || fx.len() != 1
        || fy.len() != 1
        || batch.len() + 2 != lo.len()
        || pos(lo, fx[0]).is_none()
        || pos(lo, fy[0]).is_none()
    {
        return None;
    }
    let kc = contracted[0];
    let last = *lo.last()?;
    // `b` supplies the output's last (contiguous) letter; `a`'s rows end in the contracted one.
    let ((la, sa, a), (lb, sb, b), mc) = if last == fx[0] {
        ((ly, &sy, &y), (lx, &sx, &x), fy[0])
    } else {
        ((lx, &sx, &x), (ly, &sy, &y), fx[0])
    };
    if *la.last()? != kc {
        return None;
    }
    let so: Vec<usize> = lo.iter().map(|&c| dim(c).unwrap_or(0)).collect();
    if so.contains(&0) || dim(kc) == Some(0) {
        return None;
    }
    if let Err(e) = crate::ops::checked_elements(&so) {
        return Some(Err(e));
    }
    let strides = |s: &[usize]| {
        let mut st = vec![1usize; s.len()];
        for i in (0..s.len().saturating_sub(1)).rev() {
            st[i] = st[i + 1] * s[i + 1];
        }
        st
    };
    let (ta, tb, to) = (strides(sa), strides(sb), strides(&so));
    let stride = |l: &[u8], t: &[usize], c: u8| pos(l, c).map_or(0, |i| t[i]);
    let bdims: Vec<usize> = batch.iter().map(|&c| dim(c).unwrap_or(0)).collect();
    let batches: usize = bdims.iter().product();
    let offsets = |l: &[u8], t: &[usize]| -> Vec<usize> {
        let st: Vec<usize> = batch.iter().map(|&c| stride(l, t, c)).collect();
        (0..batches)
            .map(|mut b| {
                let mut off = 0;
                for i in (0..bdims.len()).rev() {
                    off += (b % bdims[i]) * st[i];
                    b /= bdims[i];
                }
                off
            })
            .collect()
    };
    let (oa, ob, oc) = (offsets(la, &ta), offsets(lb, &tb), offsets(lo, &to));
    let (fa, fb, fc) = (|i: usize| oa[i], |i: usize| ob[i], |i: usize| oc[i]);
    let (m, k, n) = (dim(mc)?, dim(kc)?, dim(last)?);
    let mut c = vec![0f32; so.iter().product()];
    cpu_kernels::matmul_batches(
        batches,
        (m, k, n),
        a,
        &cpu_kernels::Layout {
            at: &fa,
            row: stride(la, &ta, mc),
            col: 1,
        },
        b,
        &cpu_kernels::Layout {
            at: &fb,
            row: stride(lb, &tb, kc),
            col: stride(lb, &tb, last),
        },
        &mut c,
        &cpu_kernels::Layout {
            at: &fc,
            row: stride(lo, &to, mc),
            col: 1,
        },
    );
    Some(Ok(dev::upload(c, &so, device)))
}
