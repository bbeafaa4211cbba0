//! The model-format-independent view the model kinds work from.

use std::collections::{BTreeMap, BTreeSet};

/// A float tensor in TensorFlow layout (row-major over `shape`).
#[derive(Debug, Clone, PartialEq)]
pub struct F32Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Everything the model kinds may look at, read from a SavedModel (or built
/// by hand in tests): float variables by their TensorFlow variable name
/// (`InceptionV3/Conv2d_1a_3x3/weights`, float64/float16/bfloat16 cast to
/// f32), other variables' dtypes and shapes, op types used in the graph and
/// its function library, and asset files by file name.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The handle or path the model came from (for `config.json`).
    pub handle: String,
    pub tensors: BTreeMap<String, F32Tensor>,
    /// Non-float variables: name -> (dtype name, shape). String tables etc.
    pub other_variables: BTreeMap<String, (String, Vec<usize>)>,
    pub op_types: BTreeSet<String>,
    /// Asset file name (e.g. `tokens.txt`) -> contents.
    pub assets: BTreeMap<String, Vec<u8>>,
}

impl Source {
    /// The tensor named `name`, or the one whose name ends with `/name`
    /// when exactly one does (hub exports may add a prefix such as `module/`).
    pub fn get(&self, name: &str) -> Option<&F32Tensor> {
        if let Some(t) = self.tensors.get(name) {
            return Some(t);
        }
        let suffix = format!("/{name}");
        let mut hits = self.tensors.iter().filter(|(k, _)| k.ends_with(&suffix));
        match (hits.next(), hits.next()) {
            (Some((_, t)), None) => Some(t),
            _ => None,
        }
    }

    /// Like [`Source::get`] but a missing variable is an error naming it.
    pub fn require(&self, name: &str) -> Result<&F32Tensor, crate::ConvertError> {
        self.get(name)
            .ok_or_else(|| crate::ConvertError::Missing(name.to_string()))
    }
}
