//! Tensor layout changes between TensorFlow and Burn (e.g. conv kernels HWIO -> OIHW).

/// Permutes the axes of a row-major 4-d tensor: output axis `k` is input axis `perm[k]`.
/// Returns the new shape and data. `shape` must have 4 dims whose product is `data.len()`.
pub fn permute4(shape: [usize; 4], data: &[f32], perm: [usize; 4]) -> (Vec<usize>, Vec<f32>) {
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    let in_strides = [
        shape[1] * shape[2] * shape[3],
        shape[2] * shape[3],
        shape[3],
        1,
    ];
    let out_shape = perm.map(|p| shape[p]);
    let s = perm.map(|p| in_strides[p]);
    let mut out = Vec::with_capacity(data.len());
    for a in 0..out_shape[0] {
        for b in 0..out_shape[1] {
            for c in 0..out_shape[2] {
                let base = a * s[0] + b * s[1] + c * s[2];
                out.extend((0..out_shape[3]).map(|d| data[base + d * s[3]]));
            }
        }
    }
    (out_shape.to_vec(), out)
}

/// TensorFlow conv kernel `[kh, kw, c_in, c_out]` -> Burn `[c_out, c_in, kh, kw]`.
pub const HWIO_TO_OIHW: [usize; 4] = [3, 2, 0, 1];
/// TF Lite conv kernel `[c_out, kh, kw, c_in]` -> Burn `[c_out, c_in, kh, kw]`.
pub const OHWI_TO_OIHW: [usize; 4] = [0, 3, 1, 2];
/// TF Lite depthwise kernel `[1, kh, kw, c]` -> Burn grouped conv `[c, 1, kh, kw]`.
pub const DEPTHWISE_TO_OIHW: [usize; 4] = [3, 0, 1, 2];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwio_to_oihw_moves_every_element() {
        // [kh=2, kw=3, ci=4, co=5], value = its own HWIO index.
        let data: Vec<f32> = (0..120).map(|v| v as f32).collect();
        let (shape, out) = permute4([2, 3, 4, 5], &data, HWIO_TO_OIHW);
        assert_eq!(shape, [5, 4, 2, 3]);
        for o in 0..5 {
            for i in 0..4 {
                for h in 0..2 {
                    for w in 0..3 {
                        let want = (((h * 3 + w) * 4 + i) * 5 + o) as f32;
                        assert_eq!(out[((o * 4 + i) * 2 + h) * 3 + w], want);
                    }
                }
            }
        }
    }
}
