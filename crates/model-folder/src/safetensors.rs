//! Writing `model.safetensors` for every dtype a TensorFlow variable can be stored as here.

/// A tensor's element type in the file (safetensors' names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U64,
    U32,
    U16,
    U8,
    Bool,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 | Dtype::U64 => 8,
            Dtype::F32 | Dtype::I32 | Dtype::U32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 | Dtype::U16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    fn to_st(self) -> safetensors::Dtype {
        use safetensors::Dtype as D;
        match self {
            Dtype::F64 => D::F64,
            Dtype::F32 => D::F32,
            Dtype::F16 => D::F16,
            Dtype::BF16 => D::BF16,
            Dtype::I64 => D::I64,
            Dtype::I32 => D::I32,
            Dtype::I16 => D::I16,
            Dtype::I8 => D::I8,
            Dtype::U64 => D::U64,
            Dtype::U32 => D::U32,
            Dtype::U16 => D::U16,
            Dtype::U8 => D::U8,
            Dtype::Bool => D::BOOL,
        }
    }
}

/// One tensor to write: little-endian element bytes, row-major over `shape`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl Tensor {
    /// A float32 tensor.
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Tensor {
        Tensor {
            name: name.into(),
            dtype: Dtype::F32,
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// The safetensors bytes of `tensors`. Errors (naming the tensor): a name used twice, or
/// bytes that do not match the shape and dtype.
pub fn to_bytes(tensors: &[Tensor]) -> Result<Vec<u8>, String> {
    let mut seen = std::collections::HashSet::new();
    let mut views = Vec::with_capacity(tensors.len());
    for t in tensors {
        if !seen.insert(t.name.as_str()) {
            return Err(format!("tensor `{}` appears twice", t.name));
        }
        let need = t
            .shape
            .iter()
            .try_fold(t.dtype.size(), |a, &d| a.checked_mul(d));
        if need != Some(t.bytes.len()) {
            return Err(format!(
                "tensor `{}` has shape {:?} of {:?} but {} bytes",
                t.name,
                t.shape,
                t.dtype,
                t.bytes.len()
            ));
        }
        let view = safetensors::tensor::TensorView::new(t.dtype.to_st(), t.shape.clone(), &t.bytes)
            .map_err(|e| format!("tensor `{}`: {e}", t.name))?;
        views.push((t.name.clone(), view));
    }
    safetensors::tensor::serialize(views, None).map_err(|e| format!("safetensors: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dtype_round_trips_through_the_safetensors_reader() {
        let ts = vec![
            Tensor::f32("a/f32", vec![2], &[1.5, -2.0]),
            Tensor {
                name: "b/f64".into(),
                dtype: Dtype::F64,
                shape: vec![1],
                bytes: 0.1f64.to_le_bytes().to_vec(),
            },
            Tensor {
                name: "c/i64".into(),
                dtype: Dtype::I64,
                shape: vec![2, 1],
                bytes: [-3i64, 1 << 40]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect(),
            },
            Tensor {
                name: "d/bool".into(),
                dtype: Dtype::Bool,
                shape: vec![3],
                bytes: vec![1, 0, 1],
            },
            Tensor {
                name: "e/scalar_i32".into(),
                dtype: Dtype::I32,
                shape: vec![],
                bytes: 7i32.to_le_bytes().to_vec(),
            },
        ];
        let bytes = to_bytes(&ts).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for t in &ts {
            let v = st.tensor(&t.name).unwrap();
            assert_eq!(v.dtype(), t.dtype.to_st(), "{}", t.name);
            assert_eq!(v.shape(), &t.shape[..]);
            assert_eq!(v.data(), &t.bytes[..]);
        }
        let mut bad = ts.clone();
        bad[1].bytes.pop();
        assert!(to_bytes(&bad).unwrap_err().contains("b/f64"));
        let mut twice = ts;
        twice[2].name = "a/f32".into();
        assert!(to_bytes(&twice).unwrap_err().contains("twice"));
    }
}
