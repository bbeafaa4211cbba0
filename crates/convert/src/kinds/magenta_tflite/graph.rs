//! Reading the graph of a `.tflite` file as the Magenta mappings need it: operators by index,
//! their producers, and constant tensors (looking through DEQUANTIZE ops) as float32.

use super::TfliteSource;
use crate::{ConvertError, F32Tensor, OutTensor};
use std::collections::BTreeMap;
use tflite::{Activation, Model, Options, Padding};

/// A constant, dequantized input of an operator (following a DEQUANTIZE op).
pub(super) struct Constant {
    /// The name of the tensor holding the data (the DEQUANTIZE op's input, if any).
    pub name: String,
    /// Shape (the DEQUANTIZE op's output shape, if any) and values.
    pub value: F32Tensor,
}

impl Constant {
    /// The values as a vector parameter named `name`.
    pub fn vector(self, name: String) -> OutTensor {
        OutTensor {
            name,
            shape: vec![self.value.data.len()],
            data: self.value.data,
        }
    }
}

/// The main subgraph of a `.tflite` file with the producer of every tensor.
pub(super) struct Graph<'a> {
    src: &'a TfliteSource,
    /// tensor index -> index of the operator producing it.
    producer: BTreeMap<usize, usize>,
}

impl<'a> Graph<'a> {
    pub fn new(src: &'a TfliteSource) -> Self {
        let mut producer = BTreeMap::new();
        for (i, op) in src.model.main().operators.iter().enumerate() {
            for &o in &op.outputs {
                if o >= 0 {
                    producer.insert(o as usize, i);
                }
            }
        }
        Self { src, producer }
    }

    pub fn model(&self) -> &'a Model {
        &self.src.model
    }

    pub fn operators(&self) -> &'a [tflite::Operator] {
        &self.src.model.main().operators
    }

    pub fn op_name(&self, i: usize) -> String {
        self.src.model.op_name(&self.operators()[i])
    }

    /// The constant value of input `k` of operator `i`.
    pub fn input(&self, i: usize, k: usize) -> Result<Constant, ConvertError> {
        match self.operators()[i].inputs.get(k) {
            Some(&t) if t >= 0 => self.constant(t),
            _ => Err(ConvertError::UnexpectedGraph {
                what: format!("operator #{i} ({})", self.op_name(i)),
                found: format!("no input {k}"),
                expected: "a constant tensor".into(),
            }),
        }
    }

    /// The constant value of tensor `t`, looking through DEQUANTIZE ops.
    pub fn constant(&self, t: i32) -> Result<Constant, ConvertError> {
        self.constant_at_depth(t, 0)
    }

    fn constant_at_depth(&self, t: i32, depth: usize) -> Result<Constant, ConvertError> {
        /// Real files have one DEQUANTIZE before a weight; a longer chain is a cycle or junk.
        const MAX_CHAIN: usize = 8;
        let model = self.model();
        let sg = model.main();
        let idx = usize::try_from(t).map_err(|_| ConvertError::UnexpectedGraph {
            what: "an operator input".into(),
            found: "none".into(),
            expected: "a constant tensor".into(),
        })?;
        let info = sg
            .tensors
            .get(idx)
            .ok_or_else(|| ConvertError::UnexpectedGraph {
                what: "an operator input".into(),
                found: format!("tensor index {idx}"),
                expected: format!("one of the {} tensors", sg.tensors.len()),
            })?;
        if depth > MAX_CHAIN {
            return Err(ConvertError::UnexpectedGraph {
                what: format!("tensor `{}`", info.name),
                found: format!("more than {MAX_CHAIN} DEQUANTIZE ops in a row (a cycle?)"),
                expected: "one DEQUANTIZE op before a weight".into(),
            });
        }
        if model.tensor_data(0, idx).is_some() {
            let data = model.tensor_f32(0, idx)?;
            return Ok(Constant {
                name: info.name.clone(),
                value: F32Tensor {
                    shape: info.dims(),
                    data,
                },
            });
        }
        if let Some(&p) = self.producer.get(&idx) {
            if self.op_name(p) == "DEQUANTIZE" {
                let src = sg.operators[p].inputs.first().copied().unwrap_or(-1);
                let mut c = self.constant_at_depth(src, depth + 1)?;
                let shape = info.dims();
                let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                if info.shape.iter().any(|&d| d < 0) || n != Some(c.value.data.len()) {
                    return Err(ConvertError::ValueCount {
                        what: format!("DEQUANTIZE of `{}`: output", c.name),
                        name: info.name.clone(),
                        shape: info.shape.iter().map(|&d| i64::from(d)).collect(),
                        values: c.value.data.len(),
                    });
                }
                c.value.shape = shape;
                return Ok(c);
            }
        }
        Err(ConvertError::UnexpectedGraph {
            what: format!("tensor `{}`", info.name),
            found: "not a constant".into(),
            expected: "a constant or a DEQUANTIZE of one".into(),
        })
    }

    /// Every operator is one of `allowed`; otherwise a [`tflite::Error::Unsupported`] naming
    /// the first that is not.
    pub fn check_ops(&self, allowed: &[&str]) -> Result<(), ConvertError> {
        for (i, op) in self.operators().iter().enumerate() {
            let name = self.model().op_name(op);
            if !allowed.contains(&name.as_str()) {
                return Err(tflite::Error::Unsupported {
                    file: self.src.path.display().to_string(),
                    index: i,
                    op: name,
                    what: "not part of Magenta's stylization networks".into(),
                }
                .into());
            }
        }
        Ok(())
    }

    /// Padding, stride and fused activation of conv operator `i` (SAME, 1, none for others).
    pub fn conv_options(&self, i: usize) -> (Padding, (usize, usize), Activation) {
        match self.operators()[i].options {
            Options::Conv2d {
                padding,
                stride,
                activation,
                ..
            } => (padding, stride, activation),
            Options::DepthwiseConv2d {
                padding,
                stride,
                activation,
                ..
            } => (padding, stride, activation),
            _ => (Padding::Same, (1, 1), Activation::None),
        }
    }
}
