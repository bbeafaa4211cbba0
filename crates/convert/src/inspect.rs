//! `convert inspect`: what a model file holds, as text or JSON. A SavedModel: signatures,
//! variables (name, dtype, shape, bytes), assets, op types and the graph executor's entry points
//! with their unsupported ops ([`savedmodel`]); a `.tflite` file: inputs, outputs, operators,
//! constant tensors and the TF Lite kind that recognises it ([`tflite`]).

use crate::kinds::magenta_tflite::{self, TfliteSource};
use crate::ConvertError;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

fn shape_str(s: &Option<Vec<i64>>) -> String {
    match s {
        None => "<unknown rank>".into(),
        Some(d) => format!(
            "[{}]",
            d.iter()
                .map(|x| if *x < 0 { "?".into() } else { x.to_string() })
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Description of the SavedModel `sm` read from `path` for `convert inspect`: pretty JSON, or
/// text ending with a newline.
pub fn savedmodel(sm: &savedmodel::SavedModel, path: &Path, json: bool) -> String {
    let asset_size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
    if json {
        let doc = serde_json::json!({
            "path": path.display().to_string(),
            "tags": sm.tags(),
            "tensorflow_version": sm.tensorflow_version(),
            "signatures": sm.signatures().iter().map(|s| serde_json::json!({
                "key": s.key,
                "method_name": s.method_name,
                "inputs": s.inputs.iter().map(|t| serde_json::json!({"name": t.name, "tensor_name": t.tensor_name, "dtype": t.dtype.name(), "shape": t.shape})).collect::<Vec<_>>(),
                "outputs": s.outputs.iter().map(|t| serde_json::json!({"name": t.name, "tensor_name": t.tensor_name, "dtype": t.dtype.name(), "shape": t.shape})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "variables": sm.variables().iter().map(|v| serde_json::json!({
                "name": v.name, "key": v.key, "dtype": v.dtype.name(), "shape": v.shape, "bytes": v.stored_bytes, "slices": v.slices,
            })).collect::<Vec<_>>(),
            "assets": sm.assets().iter().map(|a| serde_json::json!({"filename": a.filename, "bytes": asset_size(&a.path)})).collect::<Vec<_>>(),
            "op_types": sm.op_types(),
            "graph": graph_summary_json(sm),
        });
        return format!("{doc:#}");
    }
    let mut o = String::new();
    // Writing to a String cannot fail.
    let _ = savedmodel_text(&mut o, sm, path);
    o
}

fn savedmodel_text(o: &mut String, sm: &savedmodel::SavedModel, path: &Path) -> std::fmt::Result {
    let asset_size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).ok();
    writeln!(o, "SavedModel: {}", path.display())?;
    writeln!(o, "tags: {}", sm.tags().join(", "))?;
    if !sm.tensorflow_version().is_empty() {
        writeln!(o, "written by TensorFlow {}", sm.tensorflow_version())?;
    }
    writeln!(o, "\nsignatures ({}):", sm.signatures().len())?;
    for s in sm.signatures() {
        writeln!(o, "  {} (method {})", s.key, s.method_name)?;
        for (what, list) in [("inputs", &s.inputs), ("outputs", &s.outputs)] {
            writeln!(o, "    {what}:")?;
            for t in list {
                writeln!(
                    o,
                    "      {}: {} {} ({})",
                    t.name,
                    t.dtype,
                    shape_str(&t.shape),
                    t.tensor_name
                )?;
            }
        }
    }
    let total: u64 = sm.variables().iter().map(|v| v.stored_bytes).sum();
    writeln!(
        o,
        "\nvariables ({}, {} bytes):",
        sm.variables().len(),
        total
    )?;
    for v in sm.variables() {
        let slices = if v.slices > 0 {
            format!(" in {} slices", v.slices)
        } else {
            String::new()
        };
        writeln!(
            o,
            "  {}  {} {:?}  {} bytes{}",
            v.name, v.dtype, v.shape, v.stored_bytes, slices
        )?;
    }
    writeln!(o, "\nassets ({}):", sm.assets().len())?;
    for a in sm.assets() {
        match asset_size(&a.path) {
            Some(n) => writeln!(o, "  {} ({n} bytes)", a.filename)?,
            None => writeln!(o, "  {} (missing)", a.filename)?,
        }
    }
    writeln!(o, "\nop types ({}):", sm.op_types().len())?;
    writeln!(
        o,
        "  {}",
        sm.op_types().iter().cloned().collect::<Vec<_>>().join(", ")
    )?;
    write_graph_summary(o, sm)
}

/// Entry points, op histogram and unsupported ops of the graph executor, as JSON.
fn graph_summary_json(sm: &savedmodel::SavedModel) -> serde_json::Value {
    let entries = match tfgraph_core::entry_points(sm) {
        Ok(e) => e,
        Err(e) => return serde_json::json!({"error": e.to_string()}),
    };
    let spec = |a: &tfgraph_core::ArgSpec| serde_json::json!({"name": a.name, "dtype": a.dtype.name(), "shape": a.shape});
    let list: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            let (ops, unsupported) = match tfgraph_core::build_graph(sm, e) {
                Ok(g) => (
                    serde_json::json!(tfgraph_core::op_histogram(&g)),
                    serde_json::json!(tfgraph_core::unsupported_ops(&g, true)
                        .iter()
                        .map(|(op, node, f)| serde_json::json!({"op": op, "node": node, "function": f}))
                        .collect::<Vec<_>>()),
                ),
                Err(err) => (serde_json::Value::Null, serde_json::json!([{"error": err.to_string()}])),
            };
            serde_json::json!({
                "entry": e.label(),
                "function": e.function,
                "inputs": e.inputs.iter().map(spec).collect::<Vec<_>>(),
                "outputs": e.outputs,
                "ops": ops,
                "unsupported": unsupported,
            })
        })
        .collect();
    let default = tfgraph_core::default_entry(&entries).map(|e| e.label());
    serde_json::json!({"entry_points": list, "default": default})
}

/// The text form of [`graph_summary_json`].
fn write_graph_summary(o: &mut String, sm: &savedmodel::SavedModel) -> std::fmt::Result {
    let entries = match tfgraph_core::entry_points(sm) {
        Ok(e) => e,
        Err(e) => {
            writeln!(o, "\ngraph executor: {e}")?;
            return Ok(());
        }
    };
    let default = tfgraph_core::default_entry(&entries).map(|e| e.label());
    writeln!(o, "\nentry points ({}):", entries.len())?;
    for e in &entries {
        let mark = if Some(e.label()) == default {
            " (default)"
        } else {
            ""
        };
        writeln!(o, "  {}{mark}  [{}]", e.label(), e.function)?;
        for a in &e.inputs {
            writeln!(
                o,
                "    input {}: {} {}",
                a.name,
                a.dtype,
                shape_str(&a.shape)
            )?;
        }
        writeln!(o, "    outputs: {}", e.outputs.join(", "))?;
        match tfgraph_core::build_graph(sm, e) {
            Ok(g) => {
                let hist = tfgraph_core::op_histogram(&g);
                let n: usize = hist.values().sum();
                let ops: Vec<String> = hist.iter().map(|(k, v)| format!("{k} {v}")).collect();
                writeln!(o, "    ops ({n} nodes): {}", ops.join(", "))?;
                let bad = tfgraph_core::unsupported_ops(&g, true);
                if bad.is_empty() {
                    writeln!(o, "    unsupported ops: none (runs on the graph executor)")?;
                } else {
                    let mut seen = std::collections::BTreeMap::new();
                    for (op, node, f) in &bad {
                        seen.entry(op.clone())
                            .or_insert((node.clone(), f.clone(), 0usize))
                            .2 += 1;
                    }
                    writeln!(o, "    unsupported ops ({}):", seen.len())?;
                    for (op, (node, f, n)) in seen {
                        writeln!(o, "      {op} x{n} (e.g. node `{node}` in `{f}`)")?;
                    }
                }
            }
            Err(err) => writeln!(o, "    cannot build the graph: {err}")?,
        }
    }
    Ok(())
}

/// Human-readable (or JSON) description of a `.tflite` file for `convert inspect`.
pub fn tflite(path: &Path, json: bool) -> Result<String, ConvertError> {
    let src = TfliteSource::open(path)?;
    let model = &src.model;
    let sg = model.main();
    // Subgraph inputs/outputs may be -1 (absent): shown, never indexed.
    let tensor_at = |i: i32| usize::try_from(i).ok().and_then(|i| sg.tensors.get(i));
    let tensor_json = |i: i32| match tensor_at(i) {
        Some(t) => {
            serde_json::json!({"name": t.name, "dtype": t.dtype.to_string(), "shape": t.shape})
        }
        None => serde_json::json!({"index": i, "absent": true}),
    };
    let mut op_counts: BTreeMap<String, usize> = BTreeMap::new();
    for op in &sg.operators {
        *op_counts.entry(model.op_name(op)).or_default() += 1;
    }
    let constants: Vec<serde_json::Value> = sg
        .tensors
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let data = model.tensor_data(0, i)?;
            let q = t.quantization.as_ref();
            Some(serde_json::json!({
                "name": t.name, "dtype": t.dtype.to_string(), "shape": t.shape, "bytes": data.len(),
                "quantization": q.map(|q| serde_json::json!({
                    "scales": q.scale.len(), "quantized_dimension": q.quantized_dimension,
                    "scale": q.scale.first(), "zero_point": q.zero_point.first(),
                })),
            }))
        })
        .collect();
    let kind = magenta_tflite::recognise(&src).map_or("unknown", |k| k.name());
    let doc = serde_json::json!({
        "file": path.display().to_string(),
        "format": "tflite",
        "schema_version": model.version,
        "description": model.description,
        "recognised_kind": kind,
        "signatures": model.signature_keys,
        "inputs": sg.inputs.iter().map(|&i| tensor_json(i)).collect::<Vec<_>>(),
        "outputs": sg.outputs.iter().map(|&i| tensor_json(i)).collect::<Vec<_>>(),
        "op_types": op_counts,
        "operators": sg.operators.len(),
        "tensors": sg.tensors.len(),
        "metadata": model.metadata.iter().map(|m| serde_json::json!({"name": m.name, "bytes": model.buffer(m.buffer).len()})).collect::<Vec<_>>(),
        "constants": constants,
    });
    if json {
        return Ok(format!("{doc:#}"));
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} (TF Lite, schema version {}, {} subgraph(s))",
        path.display(),
        model.version,
        model.subgraphs.len()
    );
    if let Some(d) = &model.description {
        let _ = writeln!(s, "description: {d}");
    }
    let _ = writeln!(s, "recognised as: {kind}");
    let _ = writeln!(s, "inputs:");
    for &i in &sg.inputs {
        match tensor_at(i) {
            Some(t) => writeln!(s, "  {} {} {:?}", t.name, t.dtype, t.shape),
            None => writeln!(s, "  (tensor index {i}: absent)"),
        }
        .ok();
    }
    let _ = writeln!(s, "outputs:");
    for &i in &sg.outputs {
        match tensor_at(i) {
            Some(t) => writeln!(s, "  {} {} {:?}", t.name, t.dtype, t.shape),
            None => writeln!(s, "  (tensor index {i}: absent)"),
        }
        .ok();
    }
    let _ = writeln!(s, "op types ({} operators):", sg.operators.len());
    for (k, v) in &op_counts {
        let _ = writeln!(s, "  {k} x{v}");
    }
    let _ = writeln!(s, "metadata:");
    for m in &model.metadata {
        let _ = writeln!(s, "  {} ({} bytes)", m.name, model.buffer(m.buffer).len());
    }
    let _ = writeln!(s, "constant tensors ({}):", constants.len());
    for (i, t) in sg.tensors.iter().enumerate() {
        if let Some(d) = model.tensor_data(0, i) {
            let q = match &t.quantization {
                Some(q) if q.scale.len() > 1 => format!(
                    " per-channel x{} (axis {})",
                    q.scale.len(),
                    q.quantized_dimension
                ),
                Some(q) if !q.scale.is_empty() => format!(
                    " scale {} zero {}",
                    q.scale[0],
                    q.zero_point.first().unwrap_or(&0)
                ),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "  {} {} {:?} {} bytes{q}",
                t.name,
                t.dtype,
                t.shape,
                d.len()
            );
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use tflite::build::{TensorSpec, Tflite};

    #[test]
    fn tflite_shows_absent_tensor_indices() {
        let mut m = Tflite {
            opcodes: vec![0, 3, 6],
            ..Default::default()
        };
        for (name, shape) in [
            ("mobilenet_conv/Conv/input", vec![1, 1, 1, 4]),
            ("x", vec![1, 2]),
        ] {
            m.tensor(TensorSpec {
                name: name.into(),
                shape,
                ..Default::default()
            });
        }
        m.inputs = vec![-1, 1];
        m.outputs = vec![-1];
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("m.tflite");
        std::fs::write(&p, m.bytes()).unwrap();
        let text = super::tflite(&p, false).unwrap();
        assert!(text.contains("(tensor index -1: absent)"), "{text}");
        assert!(text.contains("  x float32 [1, 2]"), "{text}");
        assert!(text.contains("recognised as: unknown"), "{text}");
        let json: serde_json::Value =
            serde_json::from_str(&super::tflite(&p, true).unwrap()).unwrap();
        assert_eq!(json["inputs"][0]["absent"], true);
        assert_eq!(json["inputs"][1]["name"], "x");
    }

    #[test]
    fn a_file_that_is_not_tflite_is_a_tflite_error() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("junk.tflite");
        std::fs::write(&p, b"not a flatbuffer").unwrap();
        let e = super::tflite(&p, false).unwrap_err();
        assert!(matches!(e, crate::ConvertError::Tflite(_)), "{e:?}");
        assert!(e.to_string().contains("junk.tflite"), "{e}");
    }
}
