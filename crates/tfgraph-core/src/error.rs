//! Errors; each names the model file, function, node or op concerned.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    SavedModel(#[from] savedmodel::Error),
    #[error("{path}: {msg}")]
    Model { path: PathBuf, msg: String },
    /// A malformed function library (bad reference, cycle, missing function, ...).
    #[error("malformed graph: {0}")]
    Graph(String),
    /// Ops the executor does not implement, every one of them: `(op, node, function)`.
    #[error("{} unsupported op type(s): {}", count_ops(.0), list_unsupported(.0))]
    Unsupported(Vec<(String, String, String)>),
    /// An op failed on its inputs (wrong shapes or dtypes, bad attributes).
    #[error("op {op} (node `{node}` in function `{function}`): {msg}")]
    Op {
        op: String,
        node: String,
        function: String,
        msg: String,
    },
    /// The caller's inputs do not match the entry point.
    #[error("input: {0}")]
    Input(String),
}

fn count_ops(v: &[(String, String, String)]) -> usize {
    let mut ops: Vec<&str> = v.iter().map(|(o, _, _)| o.as_str()).collect();
    ops.sort();
    ops.dedup();
    ops.len()
}

fn list_unsupported(v: &[(String, String, String)]) -> String {
    let mut by_op: std::collections::BTreeMap<&str, Vec<&(String, String, String)>> =
        Default::default();
    for e in v {
        by_op.entry(e.0.as_str()).or_default().push(e);
    }
    by_op
        .iter()
        .map(|(op, uses)| {
            let first = uses[0];
            let more = if uses.len() > 1 {
                format!(" and {} more", uses.len() - 1)
            } else {
                String::new()
            };
            format!("{op} (node `{}` in function `{}`{more})", first.1, first.2)
        })
        .collect::<Vec<_>>()
        .join("; ")
}
