//! Reading TensorFlow Lite model files (`.tflite`) in pure Rust.
//!
//! A `.tflite` file is a FlatBuffer of the schema in
//! tensorflow/lite/schema/schema.fbs (file identifier `TFL3`, schema version 3).
//! [`Model::open`] / [`Model::from_bytes`] check and decode the parts a
//! converter needs into plain structs: operator codes (with the
//! `deprecated_builtin_code` fallback), subgraphs, tensors (shape, dtype,
//! buffer, quantization), operators with the builtin options of the common
//! ops, buffers (inline or at an offset outside the FlatBuffer, for files over
//! 2 GB), metadata and signature names. [`Model::tensor_f32`] dequantizes
//! constant tensors (float32, float16, bfloat16, int8/uint8/int16/int32 with
//! per-tensor or per-channel scales) to `f32`.
//!
//! All reads are bounds-checked: truncated or corrupted files give an
//! [`Error`] naming the file and the field, never a panic.

#![deny(missing_docs)]

pub mod build;
mod fb;
mod opnames;

use fb::Table;
use std::fmt;
use std::path::Path;

/// Errors reading a TF Lite file. Each names the file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a valid TF Lite FlatBuffer.
    #[error("{file}: not a valid TF Lite file: {what}")]
    Malformed {
        /// The file.
        file: String,
        /// What is wrong.
        what: String,
    },
    /// The schema version is not 3.
    #[error("{file}: unsupported TF Lite schema version {version} (this reader knows version 3)")]
    Version {
        /// The file.
        file: String,
        /// The version found.
        version: u32,
    },
    /// A tensor's data cannot be turned into floats.
    #[error("{file}: tensor `{tensor}`: {what}")]
    Tensor {
        /// The file.
        file: String,
        /// The tensor's name.
        tensor: String,
        /// What is wrong.
        what: String,
    },
    /// An operator that a consumer does not support.
    #[error("{file}: operator #{index} {op} is not supported: {what}")]
    Unsupported {
        /// The file.
        file: String,
        /// Operator index in the subgraph.
        index: usize,
        /// Operator name.
        op: String,
        /// Why.
        what: String,
    },
}

/// Element types of tensors (`TensorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorType {
    /// float32
    Float32,
    /// float16
    Float16,
    /// int32
    Int32,
    /// uint8
    UInt8,
    /// int64
    Int64,
    /// string
    String,
    /// bool
    Bool,
    /// int16
    Int16,
    /// int8
    Int8,
    /// float64
    Float64,
    /// bfloat16
    BFloat16,
    /// Any other type code (complex, resource, variant, int4, ...).
    Other(i8),
}

impl TensorType {
    fn from_code(c: i8) -> Self {
        match c {
            0 => Self::Float32,
            1 => Self::Float16,
            2 => Self::Int32,
            3 => Self::UInt8,
            4 => Self::Int64,
            5 => Self::String,
            6 => Self::Bool,
            7 => Self::Int16,
            9 => Self::Int8,
            10 => Self::Float64,
            18 => Self::BFloat16,
            o => Self::Other(o),
        }
    }

    /// Bytes per element (`None` for strings and unknown types).
    pub fn size(self) -> Option<usize> {
        Some(match self {
            Self::Float32 | Self::Int32 => 4,
            Self::Float16 | Self::Int16 | Self::BFloat16 => 2,
            Self::UInt8 | Self::Int8 | Self::Bool => 1,
            Self::Int64 | Self::Float64 => 8,
            Self::String | Self::Other(_) => return None,
        })
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Other(c) => write!(f, "type#{c}"),
            t => f.write_str(&format!("{t:?}").to_lowercase()),
        }
    }
}

/// Quantization parameters of a tensor: `real = scale * (q - zero_point)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Quantization {
    /// One scale (per-tensor) or one per slice along `quantized_dimension`.
    pub scale: Vec<f32>,
    /// Same length as `scale` (or empty = 0).
    pub zero_point: Vec<i64>,
    /// Axis of per-channel quantization.
    pub quantized_dimension: usize,
    /// Recorded min (calibration), if any.
    pub min: Vec<f32>,
    /// Recorded max (calibration), if any.
    pub max: Vec<f32>,
}

/// A tensor of a subgraph.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Name.
    pub name: String,
    /// Shape (`-1` entries come from `shape_signature` only).
    pub shape: Vec<i32>,
    /// Element type.
    pub dtype: TensorType,
    /// Index into [`Model::buffers`] (0 = no data).
    pub buffer: u32,
    /// Quantization, if the tensor has scales.
    pub quantization: Option<Quantization>,
    /// Shape with `-1` for dynamic dimensions, if recorded.
    pub shape_signature: Vec<i32>,
    /// A variable tensor (state).
    pub is_variable: bool,
}

impl TensorInfo {
    /// Number of elements (0 when a dimension is negative).
    pub fn num_elements(&self) -> usize {
        self.shape
            .iter()
            .fold(1usize, |a, &d| a.saturating_mul(d.max(0) as usize))
    }

    /// Shape as `usize` (negative dims become 0).
    pub fn dims(&self) -> Vec<usize> {
        self.shape.iter().map(|&d| d.max(0) as usize).collect()
    }
}

/// Padding of convolutions and pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// TF SAME.
    Same,
    /// TF VALID.
    Valid,
}

/// Fused activation of an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// none
    None,
    /// relu
    Relu,
    /// relu clamped to [-1, 1]
    ReluN1To1,
    /// relu6
    Relu6,
    /// tanh
    Tanh,
    /// sign bit
    SignBit,
}

impl Activation {
    fn from_code(c: i8) -> Self {
        match c {
            1 => Self::Relu,
            2 => Self::ReluN1To1,
            3 => Self::Relu6,
            4 => Self::Tanh,
            5 => Self::SignBit,
            _ => Self::None,
        }
    }
}

/// Builtin options of the operators this reader decodes.
#[derive(Debug, Clone, PartialEq)]
pub enum Options {
    /// CONV_2D.
    Conv2d {
        /// padding
        padding: Padding,
        /// stride (h, w)
        stride: (usize, usize),
        /// dilation (h, w)
        dilation: (usize, usize),
        /// fused activation
        activation: Activation,
    },
    /// DEPTHWISE_CONV_2D.
    DepthwiseConv2d {
        /// padding
        padding: Padding,
        /// stride (h, w)
        stride: (usize, usize),
        /// dilation (h, w)
        dilation: (usize, usize),
        /// depth multiplier
        depth_multiplier: i32,
        /// fused activation
        activation: Activation,
    },
    /// ADD, SUB, MUL, DIV: the fused activation.
    Elementwise {
        /// fused activation
        activation: Activation,
    },
    /// MEAN, SUM, REDUCE_MAX, ...
    Reducer {
        /// keep reduced dims
        keep_dims: bool,
    },
    /// MIRROR_PAD: `true` = REFLECT, `false` = SYMMETRIC.
    MirrorPad {
        /// REFLECT (edge not repeated) vs SYMMETRIC.
        reflect: bool,
    },
    /// RESIZE_NEAREST_NEIGHBOR / RESIZE_BILINEAR.
    Resize {
        /// align_corners
        align_corners: bool,
        /// half_pixel_centers
        half_pixel_centers: bool,
    },
    /// No options, or options of an operator this reader does not decode.
    None,
}

/// An operator of a subgraph.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    /// Index into [`Model::operator_codes`].
    pub opcode_index: usize,
    /// Input tensor indices (`-1` = optional input absent).
    pub inputs: Vec<i32>,
    /// Output tensor indices.
    pub outputs: Vec<i32>,
    /// Decoded builtin options.
    pub options: Options,
}

/// An operator code: builtin or custom.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorCode {
    /// Builtin operator code (`max(builtin_code, deprecated_builtin_code)`, as TF Lite does).
    pub builtin: i32,
    /// Custom operator name (for `CUSTOM`).
    pub custom_code: Option<String>,
    /// Operator version.
    pub version: i32,
}

impl OperatorCode {
    /// The schema name (`CONV_2D`, ...), the custom name, or `BUILTIN_<code>`.
    pub fn name(&self) -> String {
        if let Some(c) = &self.custom_code {
            if self.builtin == 32 {
                return format!("CUSTOM:{c}");
            }
        }
        builtin_name(self.builtin)
            .map(str::to_string)
            .unwrap_or_else(|| format!("BUILTIN_{}", self.builtin))
    }
}

/// Schema name of a builtin operator code.
pub fn builtin_name(code: i32) -> Option<&'static str> {
    opnames::BUILTIN_OPS
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, n)| *n)
}

/// A subgraph (the main graph is subgraph 0).
#[derive(Debug, Clone, PartialEq)]
pub struct Subgraph {
    /// Name, if any.
    pub name: Option<String>,
    /// Tensors.
    pub tensors: Vec<TensorInfo>,
    /// Input tensor indices.
    pub inputs: Vec<i32>,
    /// Output tensor indices.
    pub outputs: Vec<i32>,
    /// Operators in execution order.
    pub operators: Vec<Operator>,
}

/// Where a buffer's bytes live in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferRange {
    /// Byte offset in the file.
    pub offset: usize,
    /// Length in bytes (0 = empty buffer).
    pub len: usize,
}

/// A metadata entry: name and buffer index.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// Name (e.g. `min_runtime_version`, `TFLITE_METADATA`).
    pub name: String,
    /// Index into [`Model::buffers`].
    pub buffer: u32,
}

/// A decoded TF Lite model (owns the file's bytes).
#[derive(Clone)]
pub struct Model {
    /// The file name (or label) used in error messages.
    pub file: String,
    /// Schema version (3).
    pub version: u32,
    /// Description string.
    pub description: Option<String>,
    /// Operator codes.
    pub operator_codes: Vec<OperatorCode>,
    /// Subgraphs.
    pub subgraphs: Vec<Subgraph>,
    /// Buffers (byte ranges into [`Model::bytes`]).
    pub buffers: Vec<BufferRange>,
    /// Metadata entries.
    pub metadata: Vec<Metadata>,
    /// Signature keys (e.g. `serving_default`), if any.
    pub signature_keys: Vec<String>,
    bytes: Vec<u8>,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("file", &self.file)
            .field("version", &self.version)
            .field("subgraphs", &self.subgraphs.len())
            .field("buffers", &self.buffers.len())
            .finish()
    }
}

fn read_options(op_name: &str, t: Option<Table<'_>>) -> Result<Options, String> {
    let Some(t) = t else { return Ok(Options::None) };
    let w = "builtin_options";
    let pad = |slot| -> Result<Padding, String> {
        Ok(if t.i8(slot, 0, w)? == 1 {
            Padding::Valid
        } else {
            Padding::Same
        })
    };
    let pos = |v: i32| v.max(1) as usize;
    Ok(match op_name {
        "CONV_2D" => Options::Conv2d {
            padding: pad(0)?,
            stride: (pos(t.i32(2, 1, w)?), pos(t.i32(1, 1, w)?)),
            activation: Activation::from_code(t.i8(3, 0, w)?),
            dilation: (pos(t.i32(5, 1, w)?), pos(t.i32(4, 1, w)?)),
        },
        "DEPTHWISE_CONV_2D" => Options::DepthwiseConv2d {
            padding: pad(0)?,
            stride: (pos(t.i32(2, 1, w)?), pos(t.i32(1, 1, w)?)),
            depth_multiplier: t.i32(3, 0, w)?,
            activation: Activation::from_code(t.i8(4, 0, w)?),
            dilation: (pos(t.i32(6, 1, w)?), pos(t.i32(5, 1, w)?)),
        },
        "ADD" | "SUB" | "MUL" | "DIV" => Options::Elementwise {
            activation: Activation::from_code(t.i8(0, 0, w)?),
        },
        "MEAN" | "SUM" | "REDUCE_MAX" | "REDUCE_MIN" | "REDUCE_PROD" => Options::Reducer {
            keep_dims: t.bool(0, w)?,
        },
        "MIRROR_PAD" => Options::MirrorPad {
            reflect: t.i8(0, 0, w)? == 0,
        },
        "RESIZE_NEAREST_NEIGHBOR" => Options::Resize {
            align_corners: t.bool(0, w)?,
            half_pixel_centers: t.bool(1, w)?,
        },
        "RESIZE_BILINEAR" => Options::Resize {
            align_corners: t.bool(2, w)?,
            half_pixel_centers: t.bool(3, w)?,
        },
        _ => Options::None,
    })
}

impl Model {
    /// Reads and decodes a `.tflite` file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            file: file.clone(),
            source,
        })?;
        Self::from_bytes(bytes, &file)
    }

    /// Decodes the bytes of a `.tflite` file; `file` labels error messages.
    pub fn from_bytes(bytes: Vec<u8>, file: &str) -> Result<Self, Error> {
        let malformed = |what: String| Error::Malformed {
            file: file.to_string(),
            what,
        };
        if bytes.len() < 8 {
            return Err(malformed(format!("only {} bytes", bytes.len())));
        }
        if &bytes[4..8] != b"TFL3" {
            return Err(malformed(format!(
                "missing the `TFL3` file identifier (found {:?})",
                String::from_utf8_lossy(&bytes[4..8])
            )));
        }
        let parsed = Self::parse(&bytes).map_err(malformed)?;
        let (version, description, operator_codes, subgraphs, buffers, metadata, signature_keys) =
            parsed;
        if version != 3 {
            return Err(Error::Version {
                file: file.to_string(),
                version,
            });
        }
        let model = Model {
            file: file.to_string(),
            version,
            description,
            operator_codes,
            subgraphs,
            buffers,
            metadata,
            signature_keys,
            bytes,
        };
        model.validate()?;
        Ok(model)
    }

    #[allow(clippy::type_complexity)]
    fn parse(
        buf: &[u8],
    ) -> Result<
        (
            u32,
            Option<String>,
            Vec<OperatorCode>,
            Vec<Subgraph>,
            Vec<BufferRange>,
            Vec<Metadata>,
            Vec<String>,
        ),
        String,
    > {
        let budget = fb::Budget::for_file(buf.len());
        let root = Table::root(buf, &budget)?;
        let version = root.u32(0, 0, "Model.version")?;
        let description = root.string(3, "Model.description")?;
        let mut codes = Vec::new();
        for (i, c) in root
            .tables(1, "Model.operator_codes")?
            .into_iter()
            .enumerate()
        {
            let what = format!("operator_codes[{i}]");
            let deprecated = c.i8(0, 0, &what)? as i32;
            let builtin = c.i32(3, 0, &what)?;
            codes.push(OperatorCode {
                // tflite::GetBuiltinCode: the larger of the two fields.
                builtin: builtin.max(deprecated),
                custom_code: c.string(1, &what)?,
                version: c.i32(2, 1, &what)?,
            });
        }
        let mut buffers = Vec::new();
        for (i, b) in root.tables(4, "Model.buffers")?.into_iter().enumerate() {
            let what = format!("buffers[{i}]");
            let offset = b.u64(1, 0, &what)?;
            let size = b.u64(2, 0, &what)?;
            let range = if offset > 1 {
                // Data outside the FlatBuffer (files over 2 GB): offset from the file start.
                let (o, s) = (offset as usize, size as usize);
                if o.checked_add(s).is_none_or(|end| end > buf.len()) {
                    return Err(format!(
                        "{what}: data at offset {o} + {s} bytes is past the end of the file"
                    ));
                }
                BufferRange { offset: o, len: s }
            } else {
                match b.bytes(0, &what)? {
                    Some((p, n)) => BufferRange { offset: p, len: n },
                    None => BufferRange { offset: 0, len: 0 },
                }
            };
            buffers.push(range);
        }
        let mut subgraphs = Vec::new();
        for (si, s) in root.tables(2, "Model.subgraphs")?.into_iter().enumerate() {
            let what = format!("subgraphs[{si}]");
            let mut tensors = Vec::new();
            for (ti, t) in s
                .tables(0, &format!("{what}.tensors"))?
                .into_iter()
                .enumerate()
            {
                let tw = format!("{what}.tensors[{ti}]");
                let quantization = match t.table(4, &tw)? {
                    Some(q) => {
                        let scale = q.f32s(2, &tw)?;
                        let qd = q.i32(6, 0, &tw)?;
                        let quant = Quantization {
                            zero_point: q.i64s(3, &tw)?,
                            quantized_dimension: qd.max(0) as usize,
                            min: q.f32s(0, &tw)?,
                            max: q.f32s(1, &tw)?,
                            scale,
                        };
                        (!quant.scale.is_empty() || !quant.min.is_empty()).then_some(quant)
                    }
                    None => None,
                };
                tensors.push(TensorInfo {
                    name: t.string(3, &tw)?.unwrap_or_default(),
                    shape: t.i32s(0, &tw)?,
                    dtype: TensorType::from_code(t.i8(1, 0, &tw)?),
                    buffer: t.u32(2, 0, &tw)?,
                    quantization,
                    shape_signature: t.i32s(7, &tw)?,
                    is_variable: t.bool(5, &tw)?,
                });
            }
            let mut operators = Vec::new();
            for (oi, o) in s
                .tables(3, &format!("{what}.operators"))?
                .into_iter()
                .enumerate()
            {
                let ow = format!("{what}.operators[{oi}]");
                let opcode_index = o.u32(0, 0, &ow)? as usize;
                let name = codes.get(opcode_index).map(|c| c.name()).ok_or_else(|| {
                    format!(
                        "{ow}: opcode_index {opcode_index} out of range ({} codes)",
                        codes.len()
                    )
                })?;
                let options = read_options(&name, o.table(4, &ow)?)?;
                operators.push(Operator {
                    opcode_index,
                    inputs: o.i32s(1, &ow)?,
                    outputs: o.i32s(2, &ow)?,
                    options,
                });
            }
            subgraphs.push(Subgraph {
                name: s.string(4, &what)?,
                inputs: s.i32s(1, &what)?,
                outputs: s.i32s(2, &what)?,
                tensors,
                operators,
            });
        }
        let mut metadata = Vec::new();
        for (i, m) in root.tables(6, "Model.metadata")?.into_iter().enumerate() {
            let what = format!("metadata[{i}]");
            metadata.push(Metadata {
                name: m.string(0, &what)?.unwrap_or_default(),
                buffer: m.u32(1, 0, &what)?,
            });
        }
        let mut signature_keys = Vec::new();
        for (i, s) in root
            .tables(7, "Model.signature_defs")?
            .into_iter()
            .enumerate()
        {
            signature_keys.push(
                s.string(2, &format!("signature_defs[{i}]"))?
                    .unwrap_or_default(),
            );
        }
        Ok((
            version,
            description,
            codes,
            subgraphs,
            buffers,
            metadata,
            signature_keys,
        ))
    }

    /// Cross-references: tensor/buffer/operator indices in range, constant
    /// data the size its shape and type say.
    fn validate(&self) -> Result<(), Error> {
        let bad = |what: String| Error::Malformed {
            file: self.file.clone(),
            what,
        };
        if self.subgraphs.is_empty() {
            return Err(bad("no subgraphs".into()));
        }
        for (si, sg) in self.subgraphs.iter().enumerate() {
            let n = sg.tensors.len() as i32;
            let check = |idx: &[i32], what: &str| -> Result<(), Error> {
                for &i in idx {
                    if i < -1 || i >= n {
                        return Err(bad(format!(
                            "subgraphs[{si}].{what}: tensor index {i} out of range ({n} tensors)"
                        )));
                    }
                }
                Ok(())
            };
            check(&sg.inputs, "inputs")?;
            check(&sg.outputs, "outputs")?;
            for (oi, op) in sg.operators.iter().enumerate() {
                check(&op.inputs, &format!("operators[{oi}].inputs"))?;
                check(&op.outputs, &format!("operators[{oi}].outputs"))?;
            }
            for t in &sg.tensors {
                if t.buffer as usize >= self.buffers.len() {
                    return Err(bad(format!(
                        "tensor `{}`: buffer {} out of range ({} buffers)",
                        t.name,
                        t.buffer,
                        self.buffers.len()
                    )));
                }
                if let Some(q) = &t.quantization {
                    if q.scale.len() > 1 && q.quantized_dimension >= t.shape.len().max(1) {
                        return Err(bad(format!(
                            "tensor `{}`: quantized_dimension {} out of range for shape {:?}",
                            t.name, q.quantized_dimension, t.shape
                        )));
                    }
                }
            }
        }
        for m in &self.metadata {
            if m.buffer as usize >= self.buffers.len() {
                return Err(bad(format!(
                    "metadata `{}`: buffer {} out of range",
                    m.name, m.buffer
                )));
            }
        }
        Ok(())
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes of buffer `index` (empty when out of range or empty).
    pub fn buffer(&self, index: u32) -> &[u8] {
        match self.buffers.get(index as usize) {
            Some(r) if r.len > 0 => &self.bytes[r.offset..r.offset + r.len],
            _ => &[],
        }
    }

    /// The main subgraph (0).
    pub fn main(&self) -> &Subgraph {
        &self.subgraphs[0]
    }

    /// The name of an operator's code.
    pub fn op_name(&self, op: &Operator) -> String {
        self.operator_codes
            .get(op.opcode_index)
            .map(|c| c.name())
            .unwrap_or_else(|| "?".into())
    }

    /// The bytes of metadata entry `name`, if present.
    pub fn metadata_bytes(&self, name: &str) -> Option<&[u8]> {
        self.metadata
            .iter()
            .find(|m| m.name == name)
            .map(|m| self.buffer(m.buffer))
    }

    /// The constant data of tensor `tensor` of `subgraph` (`None`: no data, i.e. an activation).
    pub fn tensor_data(&self, subgraph: usize, tensor: usize) -> Option<&[u8]> {
        let t = self.subgraphs.get(subgraph)?.tensors.get(tensor)?;
        let b = self.buffer(t.buffer);
        (!b.is_empty()).then_some(b)
    }

    /// The constant data of a tensor as `f32`, dequantized when the tensor has
    /// quantization parameters (`scale * (q - zero_point)`, per-tensor or per
    /// channel along `quantized_dimension`). float16/bfloat16 are widened.
    pub fn tensor_f32(&self, subgraph: usize, tensor: usize) -> Result<Vec<f32>, Error> {
        let t = self
            .subgraphs
            .get(subgraph)
            .and_then(|s| s.tensors.get(tensor))
            .ok_or_else(|| Error::Malformed {
                file: self.file.clone(),
                what: format!("no tensor {tensor} in subgraph {subgraph}"),
            })?;
        let err = |what: String| Error::Tensor {
            file: self.file.clone(),
            tensor: t.name.clone(),
            what,
        };
        let data = self
            .tensor_data(subgraph, tensor)
            .ok_or_else(|| err("has no constant data".into()))?;
        let n = t.num_elements();
        let size = t
            .dtype
            .size()
            .ok_or_else(|| err(format!("unsupported dtype {}", t.dtype)))?;
        if n.checked_mul(size) != Some(data.len()) {
            return Err(err(format!(
                "buffer holds {} bytes, shape {:?} of {} does not match",
                data.len(),
                t.shape,
                t.dtype
            )));
        }
        let raw: Vec<f64> = match t.dtype {
            TensorType::Float32 => {
                return Ok(data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect());
            }
            TensorType::Float16 => {
                return Ok(data
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect());
            }
            TensorType::BFloat16 => {
                return Ok(data
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                    .collect());
            }
            TensorType::Float64 => {
                return Ok(data
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().expect("8")) as f32)
                    .collect());
            }
            TensorType::Int8 => data.iter().map(|&b| b as i8 as f64).collect(),
            TensorType::UInt8 => data.iter().map(|&b| b as f64).collect(),
            TensorType::Int16 => data
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]) as f64)
                .collect(),
            TensorType::Int32 => data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                .collect(),
            TensorType::Int64 => data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8")) as f64)
                .collect(),
            other => return Err(err(format!("unsupported dtype {other}"))),
        };
        let Some(q) = t.quantization.as_ref().filter(|q| !q.scale.is_empty()) else {
            // Plain integers (e.g. shape or axis constants).
            return Ok(raw.into_iter().map(|v| v as f32).collect());
        };
        let zp = |i: usize| {
            q.zero_point
                .get(i)
                .or(q.zero_point.first())
                .copied()
                .unwrap_or(0) as f64
        };
        if q.scale.len() == 1 {
            let (s, z) = (q.scale[0] as f64, zp(0));
            return Ok(raw.into_iter().map(|v| ((v - z) * s) as f32).collect());
        }
        let dims = t.dims();
        let axis = q.quantized_dimension;
        let channels = dims.get(axis).copied().unwrap_or(0);
        if channels != q.scale.len() {
            return Err(err(format!(
                "{} per-channel scales, but dimension {axis} of shape {:?} has {channels} entries",
                q.scale.len(),
                t.shape
            )));
        }
        let inner: usize = dims[axis + 1..]
            .iter()
            .fold(1usize, |a, &d| a.saturating_mul(d));
        Ok(raw
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let c = (i / inner.max(1)) % channels;
                ((v - zp(c)) * q.scale[c] as f64) as f32
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
