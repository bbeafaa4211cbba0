//! Data types and decoded tensors.

use crate::Error;

/// TensorFlow `DataType` (tensorflow/core/framework/types.proto).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    Invalid,
    F32,
    F64,
    I32,
    U8,
    I16,
    I8,
    String,
    Complex64,
    I64,
    Bool,
    BF16,
    U16,
    Complex128,
    F16,
    Resource,
    Variant,
    U32,
    U64,
    /// Any other `DataType` number (including `_REF` types).
    Other(i32),
}

impl DType {
    /// From the `DataType` enum number.
    pub fn from_proto(v: i32) -> DType {
        match v {
            0 => DType::Invalid,
            1 => DType::F32,
            2 => DType::F64,
            3 => DType::I32,
            4 => DType::U8,
            5 => DType::I16,
            6 => DType::I8,
            7 => DType::String,
            8 => DType::Complex64,
            9 => DType::I64,
            10 => DType::Bool,
            14 => DType::BF16,
            17 => DType::U16,
            18 => DType::Complex128,
            19 => DType::F16,
            20 => DType::Resource,
            21 => DType::Variant,
            22 => DType::U32,
            23 => DType::U64,
            v => DType::Other(v),
        }
    }

    /// TensorFlow's name (`tf.dtypes.DType.name`), e.g. `float32`, `bfloat16`, `string`.
    pub fn name(&self) -> String {
        match self {
            DType::Invalid => "invalid".into(),
            DType::F32 => "float32".into(),
            DType::F64 => "float64".into(),
            DType::I32 => "int32".into(),
            DType::U8 => "uint8".into(),
            DType::I16 => "int16".into(),
            DType::I8 => "int8".into(),
            DType::String => "string".into(),
            DType::Complex64 => "complex64".into(),
            DType::I64 => "int64".into(),
            DType::Bool => "bool".into(),
            DType::BF16 => "bfloat16".into(),
            DType::U16 => "uint16".into(),
            DType::Complex128 => "complex128".into(),
            DType::F16 => "float16".into(),
            DType::Resource => "resource".into(),
            DType::Variant => "variant".into(),
            DType::U32 => "uint32".into(),
            DType::U64 => "uint64".into(),
            DType::Other(v) => format!("DataType({v})"),
        }
    }

    /// Bytes per element for the fixed-size dtypes this crate decodes; `None` otherwise.
    pub fn element_size(&self) -> Option<usize> {
        Some(match self {
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::U8 | DType::I8 | DType::Bool => 1,
            _ => return None,
        })
    }

    /// True for float32/float64/float16/bfloat16.
    pub fn is_float(&self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Decoded tensor values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    /// IEEE half precision, as raw bits.
    F16(Vec<u16>),
    /// bfloat16, as raw bits (the upper half of an f32).
    BF16(Vec<u16>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
    String(Vec<Vec<u8>>),
}

/// A variable's value.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match &self.data {
            TensorData::F32(v) => v.len(),
            TensorData::F64(v) => v.len(),
            TensorData::F16(v) | TensorData::BF16(v) | TensorData::U16(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::I16(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::U32(v) => v.len(),
            TensorData::U64(v) => v.len(),
            TensorData::Bool(v) => v.len(),
            TensorData::String(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as f32 (floats rounded to nearest, integers converted, bools as 0/1).
    /// Strings are an error.
    pub fn to_f32(&self) -> Result<Vec<f32>, Error> {
        Ok(match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::F16(v) => v
                .iter()
                .map(|&x| half::f16::from_bits(x).to_f32())
                .collect(),
            TensorData::BF16(v) => v
                .iter()
                .map(|&x| half::bf16::from_bits(x).to_f32())
                .collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I16(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::U16(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::U32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::U64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| if x { 1.0 } else { 0.0 }).collect(),
            TensorData::String(_) => return Err(Error::NotNumeric(self.dtype)),
        })
    }

    /// The values as f64 (exact for every numeric dtype but large 64-bit integers).
    pub fn to_f64(&self) -> Result<Vec<f64>, Error> {
        Ok(match &self.data {
            TensorData::F64(v) => v.clone(),
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            TensorData::U64(v) => v.iter().map(|&x| x as f64).collect(),
            _ => self.to_f32()?.into_iter().map(f64::from).collect(),
        })
    }

    /// The byte strings of a string tensor.
    pub fn strings(&self) -> Option<&[Vec<u8>]> {
        match &self.data {
            TensorData::String(v) => Some(v),
            _ => None,
        }
    }
}

/// Plain numeric types for which every bit pattern is a valid value.
trait Pod: Copy + Default {
    fn from_le(b: &[u8]) -> Self;
}
macro_rules! pod {
    ($($t:ty),*) => {$(
        impl Pod for $t {
            fn from_le(b: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(b);
                <$t>::from_le_bytes(a)
            }
        }
    )*};
}
pod!(f32, f64, i16, i32, i64, u16, u32, u64);

/// Little-endian bytes to a vector of `T` (a plain copy on little-endian machines, so it is
/// fast even without optimisation). `bytes.len()` must be a multiple of the size of `T`.
fn le_vec<T: Pod>(bytes: &[u8]) -> Vec<T> {
    let size = std::mem::size_of::<T>();
    let n = bytes.len() / size;
    if cfg!(target_endian = "little") {
        let mut v = vec![T::default(); n];
        // SAFETY: `v` owns `n * size` initialised bytes; `T` is a plain numeric type for which
        // any bit pattern is valid; the regions do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr() as *mut u8, n * size)
        };
        v
    } else {
        bytes.chunks_exact(size).map(T::from_le).collect()
    }
}

/// Decodes little-endian fixed-size elements. `bytes.len()` must equal `n * element_size`.
pub(crate) fn decode_fixed(dtype: DType, bytes: &[u8]) -> Option<TensorData> {
    Some(match dtype {
        DType::F32 => TensorData::F32(le_vec(bytes)),
        DType::F64 => TensorData::F64(le_vec(bytes)),
        DType::F16 => TensorData::F16(le_vec(bytes)),
        DType::BF16 => TensorData::BF16(le_vec(bytes)),
        DType::I8 => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
        DType::I16 => TensorData::I16(le_vec(bytes)),
        DType::I32 => TensorData::I32(le_vec(bytes)),
        DType::I64 => TensorData::I64(le_vec(bytes)),
        DType::U8 => TensorData::U8(bytes.to_vec()),
        DType::U16 => TensorData::U16(le_vec(bytes)),
        DType::U32 => TensorData::U32(le_vec(bytes)),
        DType::U64 => TensorData::U64(le_vec(bytes)),
        DType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        _ => return None,
    })
}
