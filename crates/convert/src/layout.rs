//! Tensor layout changes between TensorFlow and Burn (e.g. conv kernels HWIO -> OIHW), each
//! checked: a shape that does not fit the layout or the tensor's values is an error naming the
//! tensor, never a panic.

use crate::{ConvertError, F32Tensor};

/// `shape` as 4 dims whose product is `values`; otherwise an error naming `name` (`expected`
/// describes the wanted layout, e.g. `[kh, kw, c_in, c_out]`).
pub fn dims4(
    name: &str,
    shape: &[usize],
    values: usize,
    expected: &str,
) -> Result<[usize; 4], ConvertError> {
    let d: [usize; 4] = shape.try_into().map_err(|_| ConvertError::Shape {
        name: name.to_string(),
        found: shape.to_vec(),
        expected: expected.to_string(),
    })?;
    check_values(name, shape, values)?;
    Ok(d)
}

/// The product of `shape` is `values`; otherwise a [`ConvertError::ValueCount`] naming `name`.
pub fn check_values(name: &str, shape: &[usize], values: usize) -> Result<(), ConvertError> {
    if shape.iter().try_fold(1usize, |a, &x| a.checked_mul(x)) != Some(values) {
        return Err(ConvertError::ValueCount {
            what: "tensor".into(),
            name: name.to_string(),
            shape: shape
                .iter()
                .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
                .collect(),
            values,
        });
    }
    Ok(())
}

/// Permutes the axes of a row-major 4-d tensor: output axis `k` is input axis `perm[k]`.
/// Returns the new shape and data; a `shape` whose product is not `data.len()` is an error
/// naming the tensor `name`.
pub fn permute4(
    name: &str,
    shape: [usize; 4],
    data: &[f32],
    perm: [usize; 4],
) -> Result<(Vec<usize>, Vec<f32>), ConvertError> {
    check_values(name, &shape, data.len())?;
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
    Ok((out_shape.to_vec(), out))
}

/// TensorFlow conv kernel `[kh, kw, c_in, c_out]` -> Burn `[c_out, c_in, kh, kw]`.
pub const HWIO_TO_OIHW: [usize; 4] = [3, 2, 0, 1];
/// TF Lite conv kernel `[c_out, kh, kw, c_in]` -> Burn `[c_out, c_in, kh, kw]`.
pub const OHWI_TO_OIHW: [usize; 4] = [0, 3, 1, 2];
/// TF Lite depthwise kernel `[1, kh, kw, c]` -> Burn grouped conv `[c, 1, kh, kw]`.
pub const DEPTHWISE_TO_OIHW: [usize; 4] = [3, 0, 1, 2];

/// The TensorFlow conv kernel `name` (`[kh, kw, c_in, c_out]`) in Burn's `[c_out, c_in, kh, kw]`.
pub fn hwio_to_oihw(name: &str, t: &F32Tensor) -> Result<(Vec<usize>, Vec<f32>), ConvertError> {
    let d = dims4(name, &t.shape, t.data.len(), "[kh, kw, c_in, c_out]")?;
    permute4(name, d, &t.data, HWIO_TO_OIHW)
}

/// The TF Lite conv kernel `name` (`[c_out, kh, kw, c_in]`) in Burn's `[c_out, c_in, kh, kw]`.
pub fn ohwi_to_oihw(name: &str, t: &F32Tensor) -> Result<(Vec<usize>, Vec<f32>), ConvertError> {
    let d = dims4(
        name,
        &t.shape,
        t.data.len(),
        "a 4-d kernel [c_out, kh, kw, c_in]",
    )?;
    permute4(name, d, &t.data, OHWI_TO_OIHW)
}

/// The TF Lite depthwise kernel `name` (`[1, kh, kw, c]`) as Burn's grouped conv `[c, 1, kh, kw]`.
pub fn depthwise_to_oihw(
    name: &str,
    t: &F32Tensor,
) -> Result<(Vec<usize>, Vec<f32>), ConvertError> {
    let d = dims4(name, &t.shape, t.data.len(), "a 4-d kernel [1, kh, kw, c]")?;
    if d[0] != 1 {
        return Err(ConvertError::Shape {
            name: name.to_string(),
            found: t.shape.clone(),
            expected: "[1, kh, kw, c]".into(),
        });
    }
    permute4(name, d, &t.data, DEPTHWISE_TO_OIHW)
}

/// A TF Lite 1x1 conv `name` (`[c_out, 1, 1, c_in]`) as a Burn `Linear` weight `[c_in, c_out]`.
pub fn conv1x1_to_linear(
    name: &str,
    t: &F32Tensor,
) -> Result<(Vec<usize>, Vec<f32>), ConvertError> {
    let [o, h, w, i] = dims4(
        name,
        &t.shape,
        t.data.len(),
        "a 4-d kernel [c_out, 1, 1, c_in]",
    )?;
    if (h, w) != (1, 1) {
        return Err(ConvertError::Shape {
            name: name.to_string(),
            found: t.shape.clone(),
            expected: "[c_out, 1, 1, c_in]".into(),
        });
    }
    let mut out = vec![0f32; t.data.len()];
    for a in 0..o {
        for b in 0..i {
            out[b * o + a] = t.data[a * i + b];
        }
    }
    Ok((vec![i, o], out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize]) -> F32Tensor {
        let n = shape.iter().product::<usize>();
        F32Tensor {
            shape: shape.to_vec(),
            data: (0..n).map(|v| v as f32).collect(),
        }
    }

    #[test]
    fn hwio_to_oihw_moves_every_element() {
        // [kh=2, kw=3, ci=4, co=5], value = its own HWIO index.
        let (shape, out) = hwio_to_oihw("w", &t(&[2, 3, 4, 5])).unwrap();
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

    #[test]
    fn tflite_layouts() {
        // OHWI [2,1,2,3] -> OIHW [2,3,1,2]; out[a=0,b=1,y=0,x=1] (flat (1 * 2) + 1 = 3)
        // = in[a=0,y=0,x=1,b=1] = 4
        let (shape, data) = ohwi_to_oihw("w", &t(&[2, 1, 2, 3])).unwrap();
        assert_eq!(shape, vec![2, 3, 1, 2]);
        assert_eq!(data[3], 4.0);
        let (shape, data) = depthwise_to_oihw("d", &t(&[1, 1, 2, 3])).unwrap();
        assert_eq!(shape, vec![3, 1, 1, 2]);
        assert_eq!(data, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let (shape, data) = conv1x1_to_linear("l", &t(&[2, 1, 1, 3])).unwrap();
        assert_eq!(shape, vec![3, 2]);
        assert_eq!(data, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    }

    #[test]
    fn shapes_that_do_not_fit_are_errors_naming_the_tensor() {
        // A shape whose product is not the number of values (was a debug_assert only).
        let e = permute4("w", [2, 2, 2, 2], &[0.0; 15], HWIO_TO_OIHW)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "tensor `w` has shape [2, 2, 2, 2], which does not match the 15 values"
        );
        let bad = F32Tensor {
            shape: vec![1, 1, 2, 2],
            data: vec![0.0; 3],
        };
        for f in [
            hwio_to_oihw,
            ohwi_to_oihw,
            depthwise_to_oihw,
            conv1x1_to_linear,
        ] {
            let e = f("k", &bad).unwrap_err();
            assert!(
                matches!(e, ConvertError::ValueCount { ref name, values: 3, .. } if name == "k"),
                "{e}"
            );
        }
        let e = hwio_to_oihw("k", &t(&[3, 3])).unwrap_err().to_string();
        assert_eq!(
            e,
            "variable `k` has shape [3, 3], expected [kh, kw, c_in, c_out]"
        );
        let e = ohwi_to_oihw("k", &t(&[])).unwrap_err().to_string();
        assert!(e.contains("has shape [], expected a 4-d kernel"), "{e}");
        let e = depthwise_to_oihw("k", &t(&[2, 1, 1, 3]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected [1, kh, kw, c]"), "{e}");
        let e = conv1x1_to_linear("k", &t(&[2, 3, 3, 3]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected [c_out, 1, 1, c_in]"), "{e}");
    }
}
