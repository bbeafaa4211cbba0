//! The model-format-independent view the model kinds work from.

use crate::ConvertError;
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
    /// The dtype each float variable has in the source (`float64`, ...; `tensors` holds
    /// them all as f32).
    pub float_dtypes: BTreeMap<String, String>,
    pub op_types: BTreeSet<String>,
    /// Every `StaticRegexReplace` of the graph and its functions: pattern, rewrite and
    /// `replace_global` (what the text preprocessing does to a sentence).
    pub regex_rewrites: Vec<RegexRewrite>,
    /// Asset file name (e.g. `tokens.txt`) -> contents.
    pub assets: BTreeMap<String, Vec<u8>>,
}

/// One `StaticRegexReplace` node's attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct RegexRewrite {
    pub pattern: String,
    pub rewrite: String,
    pub global: bool,
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
    pub fn require(&self, name: &str) -> Result<&F32Tensor, ConvertError> {
        self.get(name)
            .ok_or_else(|| ConvertError::Missing(name.to_string()))
    }

    /// The variable `name`, which must be a vector of `len` values.
    pub fn vector(&self, name: &str, len: usize) -> Result<&F32Tensor, ConvertError> {
        let t = self.require(name)?;
        if t.shape != [len] || t.data.len() != len {
            return Err(ConvertError::Shape {
                name: name.into(),
                found: t.shape.clone(),
                expected: format!("[{len}]"),
            });
        }
        Ok(t)
    }

    /// The conv kernel `name`, `[kh, kw, c_in, c_out]`, checked against the expected sizes
    /// (`None`: any) and against its number of values.
    pub fn kernel(
        &self,
        name: &str,
        expect: [Option<usize>; 4],
    ) -> Result<&F32Tensor, ConvertError> {
        let t = self.require(name)?;
        let ok = t.shape.len() == 4
            && t.shape
                .iter()
                .zip(expect)
                .all(|(&d, e)| e.is_none_or(|e| e == d));
        if !ok {
            let show = expect
                .map(|e| e.map_or("?".to_string(), |v| v.to_string()))
                .join(", ");
            return Err(ConvertError::Shape {
                name: name.into(),
                found: t.shape.clone(),
                expected: format!("[{show}]"),
            });
        }
        crate::layout::check_values(name, &t.shape, t.data.len())?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_and_kernels_are_checked() {
        let mut src = Source::default();
        src.tensors.insert(
            "module/v".into(),
            F32Tensor {
                shape: vec![3],
                data: vec![1.0, 2.0, 3.0],
            },
        );
        src.tensors.insert(
            "k".into(),
            F32Tensor {
                shape: vec![1, 1, 2, 3],
                data: vec![0.0; 6],
            },
        );
        src.tensors.insert(
            "short".into(),
            F32Tensor {
                shape: vec![1, 1, 2, 3],
                data: vec![0.0; 5],
            },
        );
        assert_eq!(src.vector("v", 3).unwrap().data, [1.0, 2.0, 3.0]);
        let e = src.vector("v", 4).unwrap_err().to_string();
        assert_eq!(e, "variable `v` has shape [3], expected [4]");
        assert_eq!(
            src.vector("w", 4).unwrap_err().to_string(),
            "variable `w` is missing"
        );
        assert!(src.kernel("k", [Some(1), Some(1), None, Some(3)]).is_ok());
        let e = src.kernel("k", [Some(3), Some(3), None, None]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "variable `k` has shape [1, 1, 2, 3], expected [3, 3, ?, ?]"
        );
        let e = src.kernel("short", [None; 4]).unwrap_err();
        assert!(
            matches!(e, ConvertError::ValueCount { values: 5, .. }),
            "{e}"
        );
    }
}
