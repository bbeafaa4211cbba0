//! Tensors kept on the host: constants, shape arithmetic, integer/bool/string values.

use crate::Error;
use savedmodel::proto::TensorProto;
use savedmodel::DType;

/// The elements of a host tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum HostData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    Bool(Vec<bool>),
    Str(Vec<Vec<u8>>),
}

/// A tensor on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: HostData,
}

/// Largest element count a constant may expand to from a splat (one value repeated).
const MAX_SPLAT: usize = 1 << 26;

pub(crate) fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

impl HostTensor {
    pub fn f32(shape: Vec<usize>, v: Vec<f32>) -> HostTensor {
        HostTensor {
            dtype: DType::F32,
            shape,
            data: HostData::F32(v),
        }
    }
    pub fn i32(shape: Vec<usize>, v: Vec<i32>) -> HostTensor {
        HostTensor {
            dtype: DType::I32,
            shape,
            data: HostData::I32(v),
        }
    }
    pub fn i64(shape: Vec<usize>, v: Vec<i64>) -> HostTensor {
        HostTensor {
            dtype: DType::I64,
            shape,
            data: HostData::I64(v),
        }
    }
    pub fn bool(shape: Vec<usize>, v: Vec<bool>) -> HostTensor {
        HostTensor {
            dtype: DType::Bool,
            shape,
            data: HostData::Bool(v),
        }
    }

    pub fn len(&self) -> usize {
        match &self.data {
            HostData::F32(v) => v.len(),
            HostData::F64(v) => v.len(),
            HostData::I32(v) => v.len(),
            HostData::I64(v) => v.len(),
            HostData::U8(v) => v.len(),
            HostData::Bool(v) => v.len(),
            HostData::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as i64 (floats truncated toward zero, as TF's Cast does).
    pub fn to_i64(&self) -> Result<Vec<i64>, String> {
        Ok(match &self.data {
            HostData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            HostData::F64(v) => v.iter().map(|&x| x as i64).collect(),
            HostData::I32(v) => v.iter().map(|&x| x as i64).collect(),
            HostData::I64(v) => v.clone(),
            HostData::U8(v) => v.iter().map(|&x| x as i64).collect(),
            HostData::Bool(v) => v.iter().map(|&x| x as i64).collect(),
            HostData::Str(_) => return Err("expected a number, got strings".into()),
        })
    }

    /// The values as f64.
    pub fn to_f64(&self) -> Result<Vec<f64>, String> {
        Ok(match &self.data {
            HostData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            HostData::F64(v) => v.clone(),
            HostData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            HostData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            HostData::U8(v) => v.iter().map(|&x| x as f64).collect(),
            HostData::Bool(v) => v.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect(),
            HostData::Str(_) => return Err("expected a number, got strings".into()),
        })
    }

    /// The values as f32.
    pub fn to_f32(&self) -> Result<Vec<f32>, String> {
        Ok(match &self.data {
            HostData::F32(v) => v.clone(),
            _ => self.to_f64()?.into_iter().map(|x| x as f32).collect(),
        })
    }

    /// The values as bools (non-zero = true).
    pub fn to_bool(&self) -> Result<Vec<bool>, String> {
        Ok(match &self.data {
            HostData::Bool(v) => v.clone(),
            _ => self.to_f64()?.into_iter().map(|x| x != 0.0).collect(),
        })
    }

    /// Builds a tensor of `dtype` from f64 values (rounded / truncated as TF casts do).
    pub fn from_f64(dtype: DType, shape: Vec<usize>, v: Vec<f64>) -> Result<HostTensor, String> {
        let data = match dtype {
            DType::F32 | DType::F16 | DType::BF16 => {
                HostData::F32(v.into_iter().map(|x| x as f32).collect())
            }
            DType::F64 => HostData::F64(v),
            DType::I32 | DType::I8 | DType::I16 | DType::U16 | DType::U32 => {
                HostData::I32(v.into_iter().map(|x| x as i32).collect())
            }
            DType::I64 | DType::U64 => HostData::I64(v.into_iter().map(|x| x as i64).collect()),
            DType::U8 => HostData::U8(v.into_iter().map(|x| x as u8).collect()),
            DType::Bool => HostData::Bool(v.into_iter().map(|x| x != 0.0).collect()),
            d => return Err(format!("dtype {d} is not supported on the host")),
        };
        let dtype = match dtype {
            DType::F16 | DType::BF16 => DType::F32,
            DType::I8 | DType::I16 | DType::U16 | DType::U32 => DType::I32,
            DType::U64 => DType::I64,
            d => d,
        };
        Ok(HostTensor { dtype, shape, data })
    }

    /// Builds an integer tensor of `dtype` (int32 or int64) from i64 values.
    pub fn from_i64(dtype: DType, shape: Vec<usize>, v: Vec<i64>) -> Result<HostTensor, String> {
        Ok(match dtype {
            DType::I64 | DType::U64 => HostTensor::i64(shape, v),
            DType::I32 | DType::I8 | DType::I16 | DType::U16 | DType::U32 => {
                HostTensor::i32(shape, v.into_iter().map(|x| x as i32).collect())
            }
            DType::U8 => HostTensor {
                dtype: DType::U8,
                shape,
                data: HostData::U8(v.into_iter().map(|x| x as u8).collect()),
            },
            DType::Bool => HostTensor::bool(shape, v.into_iter().map(|x| x != 0).collect()),
            _ => HostTensor::from_f64(dtype, shape, v.into_iter().map(|x| x as f64).collect())?,
        })
    }

    /// A tensor with the same dtype holding the elements at `idx` (a gather on the flat data).
    pub fn take(&self, shape: Vec<usize>, idx: &[usize]) -> HostTensor {
        fn pick<T: Clone>(v: &[T], idx: &[usize]) -> Vec<T> {
            idx.iter().map(|&i| v[i].clone()).collect()
        }
        let data = match &self.data {
            HostData::F32(v) => HostData::F32(pick(v, idx)),
            HostData::F64(v) => HostData::F64(pick(v, idx)),
            HostData::I32(v) => HostData::I32(pick(v, idx)),
            HostData::I64(v) => HostData::I64(pick(v, idx)),
            HostData::U8(v) => HostData::U8(pick(v, idx)),
            HostData::Bool(v) => HostData::Bool(pick(v, idx)),
            HostData::Str(v) => HostData::Str(pick(v, idx)),
        };
        HostTensor {
            dtype: self.dtype,
            shape,
            data,
        }
    }

    /// Concatenation of the flat data of several tensors of one dtype.
    pub fn concat_flat(
        dtype: DType,
        shape: Vec<usize>,
        parts: &[&HostTensor],
    ) -> Result<HostTensor, String> {
        macro_rules! cat {
            ($var:ident) => {{
                let mut out = Vec::new();
                for p in parts {
                    match &p.data {
                        HostData::$var(v) => out.extend_from_slice(v),
                        _ => return Err("inputs of different dtypes".into()),
                    }
                }
                HostData::$var(out)
            }};
        }
        let data = match parts.first().map(|p| &p.data) {
            Some(HostData::F32(_)) => cat!(F32),
            Some(HostData::F64(_)) => cat!(F64),
            Some(HostData::I32(_)) => cat!(I32),
            Some(HostData::I64(_)) => cat!(I64),
            Some(HostData::U8(_)) => cat!(U8),
            Some(HostData::Bool(_)) => cat!(Bool),
            Some(HostData::Str(_)) => cat!(Str),
            None => return HostTensor::from_f64(dtype, shape, Vec::new()),
        };
        Ok(HostTensor { dtype, shape, data })
    }

    /// From a checkpoint tensor.
    pub fn from_checkpoint(t: savedmodel::Tensor) -> Result<HostTensor, String> {
        use savedmodel::TensorData as T;
        let shape = t.shape.clone();
        let data = match t.data {
            T::F32(v) => HostData::F32(v),
            T::F64(v) => HostData::F64(v),
            T::I32(v) => HostData::I32(v),
            T::I64(v) => HostData::I64(v),
            T::U8(v) => HostData::U8(v),
            T::Bool(v) => HostData::Bool(v),
            T::String(v) => HostData::Str(v),
            T::F16(_) | T::BF16(_) => {
                let v = savedmodel::Tensor {
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                    data: t.data.clone(),
                };
                return Ok(HostTensor::f32(
                    shape,
                    v.to_f32().map_err(|e| e.to_string())?,
                ));
            }
            other => {
                let v = savedmodel::Tensor {
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                    data: other,
                };
                let f = v.to_f64().map_err(|e| e.to_string())?;
                return HostTensor::from_f64(t.dtype, shape, f);
            }
        };
        let dtype = match &data {
            HostData::F32(_) => DType::F32,
            _ => t.dtype,
        };
        Ok(HostTensor { dtype, shape, data })
    }

    /// Decodes a `TensorProto` (graph constants), checking sizes against the bytes present.
    pub fn from_proto(p: &TensorProto) -> Result<HostTensor, Error> {
        let err = |m: String| Error::Graph(format!("constant: {m}"));
        let dtype = DType::from_proto(p.dtype);
        let mut shape = Vec::new();
        if let Some(s) = &p.tensor_shape {
            for d in &s.dim {
                if d.size < 0 {
                    return Err(err(format!("negative dimension {}", d.size)));
                }
                shape.push(d.size as usize);
            }
        }
        let n = numel(&shape).ok_or_else(|| err("shape overflows".into()))?;
        if dtype == DType::String {
            if p.string_val.len() != n && !(n > 0 && p.string_val.len() == 1 && n <= MAX_SPLAT) {
                if !(n == 0 && p.string_val.is_empty()) {
                    return Err(err(format!(
                        "{} strings for {n} elements",
                        p.string_val.len()
                    )));
                }
            }
            let v = if p.string_val.len() == n {
                p.string_val.clone()
            } else {
                vec![p.string_val[0].clone(); n]
            };
            return Ok(HostTensor {
                dtype,
                shape,
                data: HostData::Str(v),
            });
        }
        if !p.tensor_content.is_empty() {
            let es = dtype
                .element_size()
                .ok_or_else(|| err(format!("dtype {dtype} is not supported")))?;
            if Some(p.tensor_content.len()) != n.checked_mul(es) {
                return Err(err(format!(
                    "{} content bytes for {n} elements of {dtype}",
                    p.tensor_content.len()
                )));
            }
            let b = &p.tensor_content;
            let data = match dtype {
                DType::F32 => HostData::F32(
                    b.chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                ),
                DType::F64 => HostData::F64(
                    b.chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                        .collect(),
                ),
                DType::I32 => HostData::I32(
                    b.chunks_exact(4)
                        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                ),
                DType::I64 => HostData::I64(
                    b.chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                        .collect(),
                ),
                DType::U8 => HostData::U8(b.clone()),
                DType::Bool => HostData::Bool(b.iter().map(|&x| x != 0).collect()),
                DType::F16 => HostData::F32(
                    b.chunks_exact(2)
                        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                        .collect(),
                ),
                DType::BF16 => HostData::F32(
                    b.chunks_exact(2)
                        .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                        .collect(),
                ),
                DType::I8 => HostData::I32(b.iter().map(|&x| x as i8 as i32).collect()),
                DType::I16 => HostData::I32(
                    b.chunks_exact(2)
                        .map(|c| i16::from_le_bytes([c[0], c[1]]) as i32)
                        .collect(),
                ),
                DType::U16 => HostData::I32(
                    b.chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]) as i32)
                        .collect(),
                ),
                DType::U32 => HostData::I64(
                    b.chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                        .collect(),
                ),
                DType::U64 => HostData::I64(
                    b.chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as i64)
                        .collect(),
                ),
                d => return Err(err(format!("dtype {d} is not supported"))),
            };
            return Ok(HostTensor::normalize(dtype, shape, data));
        }
        // Repeated fields: TF repeats the last value to fill the shape.
        fn fill<T: Clone>(v: &[T], n: usize) -> Result<Vec<T>, String> {
            if v.len() == n {
                return Ok(v.to_vec());
            }
            if n == 0 {
                return Ok(Vec::new());
            }
            if v.len() > n {
                return Err(format!("{} values for {n} elements", v.len()));
            }
            if n > MAX_SPLAT {
                return Err(format!("{n} elements from {} values is too many", v.len()));
            }
            match v.last() {
                None => Err(format!("no values for {n} elements")),
                Some(last) => {
                    let mut out = v.to_vec();
                    out.resize(n, last.clone());
                    Ok(out)
                }
            }
        }
        let data = match dtype {
            DType::F32 => HostData::F32(fill(&p.float_val, n).map_err(err)?),
            DType::F64 => HostData::F64(fill(&p.double_val, n).map_err(err)?),
            DType::I32 | DType::I16 | DType::I8 | DType::U16 => {
                HostData::I32(fill(&p.int_val, n).map_err(err)?)
            }
            DType::U8 => HostData::U8(
                fill(&p.int_val, n)
                    .map_err(err)?
                    .into_iter()
                    .map(|x| x as u8)
                    .collect(),
            ),
            DType::I64 => HostData::I64(fill(&p.int64_val, n).map_err(err)?),
            DType::U32 => HostData::I64(
                fill(&p.uint32_val, n)
                    .map_err(err)?
                    .into_iter()
                    .map(|x| x as i64)
                    .collect(),
            ),
            DType::U64 => HostData::I64(
                fill(&p.uint64_val, n)
                    .map_err(err)?
                    .into_iter()
                    .map(|x| x as i64)
                    .collect(),
            ),
            DType::Bool => HostData::Bool(fill(&p.bool_val, n).map_err(err)?),
            DType::F16 => HostData::F32(
                fill(&p.half_val, n)
                    .map_err(err)?
                    .into_iter()
                    .map(|x| half::f16::from_bits(x as u16).to_f32())
                    .collect(),
            ),
            DType::BF16 => HostData::F32(
                fill(&p.half_val, n)
                    .map_err(err)?
                    .into_iter()
                    .map(|x| half::bf16::from_bits(x as u16).to_f32())
                    .collect(),
            ),
            d => return Err(err(format!("dtype {d} is not supported"))),
        };
        Ok(HostTensor::normalize(dtype, shape, data))
    }

    fn normalize(dtype: DType, shape: Vec<usize>, data: HostData) -> HostTensor {
        let dtype = match (&data, dtype) {
            (HostData::F32(_), _) => DType::F32,
            (HostData::I32(_), DType::I32) => DType::I32,
            (HostData::I32(_), _) => DType::I32,
            (HostData::I64(_), _) => DType::I64,
            (_, d) => d,
        };
        HostTensor { dtype, shape, data }
    }
}
