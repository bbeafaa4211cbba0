//! Token-based text embeddings in the TF-Hub format (gnews-swivel, nnlm, Wiki-words):
//! a `tokens.txt` asset plus one `[vocab + oov_buckets, dim]` float table
//! (tensorflow/hub `examples/text_embeddings_v2/export_v2.py` and its TF1 form). Writes kind `text_embedding` for `models::text_embedding::TextEmbedding`.
//!
//! Recognised when the source has a `tokens.txt` asset and one 2-D float variable with
//! at least as many rows as the vocabulary has lines. The preprocessing variant comes
//! from the graph's op types: `StringSplit` (TF1, empty tokens dropped) vs
//! `StringSplitV2` (TF2, kept); `StaticRegexReplace`/`RegexReplace` present means `\pP`
//! removal. The OOV bucket count is `rows - vocab lines` (checked against
//! `StringToHashBucketFast` being present when it is > 0).

use crate::{ConvertError, Converted, OutTensor, Source};
use serde_json::json;

/// The vocabulary asset's file name.
pub const VOCAB_FILE: &str = "tokens.txt";

/// Names the table is looked up by, in order, before falling back to the only 2-D
/// float variable.
const TABLE_NAMES: &[&str] = &["embeddings", "embeddings/.ATTRIBUTES/VARIABLE_VALUE"];

/// Number of vocabulary lines as TensorFlow's `TextFileInitializer` counts them
/// (a trailing newline does not start a new line).
pub fn vocab_lines(bytes: &[u8]) -> usize {
    if bytes.is_empty() {
        return 0;
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.split(|&b| b == b'\n').count()
}

fn table(src: &Source) -> Option<(&str, &crate::F32Tensor)> {
    for name in TABLE_NAMES {
        if let Some(t) = src.get(name) {
            if t.shape.len() == 2 {
                let key = src
                    .tensors
                    .iter()
                    .find(|(_, v)| std::ptr::eq(*v, t))
                    .map(|(k, _)| k.as_str())
                    .unwrap_or(name);
                return Some((key, t));
            }
        }
    }
    let mut two_d = src.tensors.iter().filter(|(_, t)| t.shape.len() == 2);
    match (two_d.next(), two_d.next()) {
        (Some((k, t)), None) => Some((k.as_str(), t)),
        _ => None,
    }
}

pub fn recognise(src: &Source) -> bool {
    let Some(vocab) = src.assets.get(VOCAB_FILE) else {
        return false;
    };
    let Some((_, t)) = table(src) else {
        return false;
    };
    t.shape[0] >= vocab_lines(vocab) && t.shape[1] > 0 && graph_deviation(src).is_none()
}

/// Every op type of the hub's text-embedding exports (TF2 `export_v2.py`, TF1 `export.py`),
/// their checkpoint saving and restoring included. A graph with any other op computes
/// something the hand-written embedding does not (dense layers after the bag, lowercasing,
/// another combiner, ...) and runs through the graph executor instead.
const PATTERN_OPS: &[&str] = &[
    // preprocessing and lookup
    "StaticRegexReplace",
    "StringSplitV2",
    "StringSplit",
    "StringToHashBucketFast",
    "HashTableV2",
    "HashTable",
    "InitializeTableFromTextFileV2",
    "LookupTableFindV2",
    "LookupTableSizeV2",
    "RaggedTensorToSparse",
    "SparseFillEmptyRows",
    "SparseReshape",
    "Unique",
    "ResourceGather",
    "SparseSegmentSqrtN",
    "DenseBincount",
    "Bincount",
    "Cumsum",
    // shapes, indices and the empty-row masking of safe_embedding_lookup_sparse
    "AddV2",
    "Add",
    "Cast",
    "ConcatV2",
    "Const",
    "Fill",
    "GatherV2",
    "Greater",
    "GreaterEqual",
    "Identity",
    "IdentityN",
    "Max",
    "Maximum",
    "Minimum",
    "Mul",
    "NoOp",
    "NotEqual",
    "Pack",
    "Placeholder",
    "PlaceholderWithDefault",
    "Prod",
    "Range",
    "ReadVariableOp",
    "Reshape",
    "Select",
    "SelectV2",
    "Shape",
    "Size",
    "Slice",
    "StridedSlice",
    "Tile",
    "Where",
    "ZerosLike",
    "StatefulPartitionedCall",
    "PartitionedCall",
    // variables, saving and restoring
    "VarHandleOp",
    "VarIsInitializedOp",
    "AssignVariableOp",
    "DisableCopyOnRead",
    "SaveV2",
    "RestoreV2",
    "MergeV2Checkpoints",
    "ShardedFilename",
    "StringJoin",
    "StaticRegexFullMatch",
    "VariableV2",
    "Assign",
];

/// Why `src`'s graph is not the one the hand-written text embedding computes (`None`: it
/// is, as far as its op types and regex attributes show; a source without a graph, built
/// by hand, is taken as it is). `tfhub` also runs both on probe sentences.
pub fn graph_deviation(src: &Source) -> Option<String> {
    let ops = &src.op_types;
    if ops.is_empty() {
        return None;
    }
    let other: Vec<&str> = ops
        .iter()
        .map(String::as_str)
        .filter(|o| !PATTERN_OPS.contains(o))
        .collect();
    if !other.is_empty() {
        return Some(format!(
            "its graph has ops the hand-written text embedding does not compute: {}",
            other.join(", ")
        ));
    }
    if !ops.contains("SparseSegmentSqrtN") {
        return Some("its graph has no sqrtn combiner (SparseSegmentSqrtN)".into());
    }
    if !ops.contains("StringSplitV2") && !ops.contains("StringSplit") {
        return Some("its graph does not split sentences with StringSplit(V2)".into());
    }
    for r in &src.regex_rewrites {
        let punct = matches!(r.pattern.as_str(), "\\pP" | "\\p{P}");
        if !(punct && r.rewrite.is_empty() && r.global) {
            return Some(format!(
                "its graph rewrites sentences with regex {:?} -> {:?}{}; the hand-written \
                 text embedding removes \\pP only",
                r.pattern,
                r.rewrite,
                if r.global { "" } else { " (first match only)" }
            ));
        }
    }
    if src.regex_rewrites.len() > 1 {
        return Some("its graph applies more than one regex rewrite".into());
    }
    None
}

pub fn convert(src: &Source) -> Result<Converted, ConvertError> {
    if let Some(why) = graph_deviation(src) {
        return Err(ConvertError::UnexpectedGraph {
            what: "the text embedding's preprocessing and combiner".into(),
            found: why,
            expected: "`\\pP` removal, a split on ' ', a vocabulary lookup with hash buckets and \
                       a sqrtn bag (TF Hub's export_v2.py / export.py)"
                .into(),
        }
        .within(&src.handle));
    }
    let vocab = src.assets.get(VOCAB_FILE).ok_or_else(|| {
        ConvertError::MissingAsset {
            file: VOCAB_FILE.into(),
            why: "text embeddings need their vocabulary".into(),
        }
        .within(&src.handle)
    })?;
    let (name, t) = table(src).ok_or_else(|| {
        ConvertError::Missing(
            "embeddings (no variable named `embeddings` and not exactly one 2-D float variable)"
                .into(),
        )
    })?;
    let v = vocab_lines(vocab);
    let (rows, dim) = (t.shape[0], t.shape[1]);
    if rows < v || dim == 0 {
        return Err(ConvertError::Shape {
            name: name.to_string(),
            found: t.shape.clone(),
            expected: format!("[>= {v} (lines of {VOCAB_FILE}), > 0]"),
        });
    }
    let oov = rows - v;
    let ops = &src.op_types;
    if !ops.is_empty()
        && oov > 0
        && !ops.contains("StringToHashBucketFast")
        && !ops.contains("StringToHashBucket")
    {
        return Err(ConvertError::UnexpectedGraph {
            what: format!("table `{name}` has {oov} rows beyond the {v} vocabulary lines"),
            found: "no StringToHashBucketFast op in the graph".into(),
            expected: "one to address them".into(),
        }
        .within(&src.handle));
    }
    let split = if ops.contains("StringSplit") && !ops.contains("StringSplitV2") {
        "skip_empty"
    } else {
        "keep_empty"
    };
    let remove_punctuation =
        ops.is_empty() || ops.contains("StaticRegexReplace") || ops.contains("RegexReplace");
    let source_dtype = src
        .float_dtypes
        .get(name)
        .or_else(|| src.other_variables.get(name).map(|(d, _)| d))
        .cloned();
    Ok(Converted {
        typed: Vec::new(),
        kind: "text_embedding".into(),
        config: json!({
            "vocab_size": v,
            "oov_buckets": oov,
            "dim": dim,
            "split": split,
            "remove_punctuation": remove_punctuation,
            "vocab_file": VOCAB_FILE,
            "source_dtype": source_dtype,
        }),
        tensors: vec![OutTensor {
            name: "embeddings".into(),
            shape: vec![rows, dim],
            data: t.data.clone(),
        }],
        assets: vec![(VOCAB_FILE.to_string(), vocab.clone())],
    })
}

/// The kind `text_embedding` in [`super::KINDS`]: [`recognise`] and [`convert`].
pub struct TextEmbedding;

impl super::Kind for TextEmbedding {
    fn name(&self) -> &'static str {
        "text_embedding"
    }
    fn description(&self) -> &'static str {
        "a text embedding"
    }
    fn recognise(&self, src: &Source) -> bool {
        recognise(src)
    }
    fn convert(&self, src: &Source) -> Result<Converted, ConvertError> {
        convert(src)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::F32Tensor;

    fn source(ops: &[&str], name: &str) -> Source {
        let mut s = Source {
            handle: "test".into(),
            ..Default::default()
        };
        s.assets.insert(VOCAB_FILE.into(), b"a\nb\nc\n".to_vec());
        s.tensors.insert(
            name.into(),
            F32Tensor {
                shape: vec![5, 2],
                data: (0..10).map(|x| x as f32).collect(),
            },
        );
        s.tensors.insert(
            "save_counter".into(),
            F32Tensor {
                shape: vec![],
                data: vec![1.0],
            },
        );
        s.op_types = ops.iter().map(|s| s.to_string()).collect();
        s
    }

    #[test]
    fn tf2_export_is_keep_empty_with_punctuation_removal() {
        let s = source(
            &[
                "StaticRegexReplace",
                "StringSplitV2",
                "StringToHashBucketFast",
                "SparseSegmentSqrtN",
            ],
            "Variable",
        );
        assert!(recognise(&s));
        let c = convert(&s).unwrap();
        assert_eq!(c.kind, "text_embedding");
        assert_eq!(c.config["vocab_size"], 3);
        assert_eq!(c.config["oov_buckets"], 2);
        assert_eq!(c.config["dim"], 2);
        assert_eq!(c.config["split"], "keep_empty");
        assert_eq!(c.config["remove_punctuation"], true);
        assert_eq!(c.tensors[0].name, "embeddings");
        assert_eq!(c.tensors[0].data[9], 9.0);
        assert_eq!(c.assets[0].0, "tokens.txt");
    }

    #[test]
    fn tf1_export_skips_empty_tokens() {
        let s = source(
            &[
                "StringSplit",
                "StringToHashBucketFast",
                "SparseSegmentSqrtN",
            ],
            "module/embeddings",
        );
        let c = convert(&s).unwrap();
        assert_eq!(c.config["split"], "skip_empty");
        assert_eq!(c.config["remove_punctuation"], false);
    }

    #[test]
    fn rows_beyond_vocab_without_hashing_is_an_error() {
        let s = source(&["StringSplitV2", "SparseSegmentSqrtN"], "embeddings");
        let e = convert(&s).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("test: table `embeddings` has 2 rows"),
            "{e}"
        );
        assert!(e.to_string().contains("StringToHashBucketFast"), "{e}");
        assert!(
            matches!(e.innermost(), ConvertError::UnexpectedGraph { .. }),
            "{e:?}"
        );
    }

    #[test]
    fn no_vocab_is_a_missing_asset_naming_the_handle() {
        let mut s = source(&[], "embeddings");
        s.assets.clear();
        let e = convert(&s).unwrap_err();
        assert_eq!(
            e.to_string(),
            "test: no `tokens.txt` asset (text embeddings need their vocabulary)"
        );
        assert!(
            matches!(e.innermost(), ConvertError::MissingAsset { file, .. } if file == VOCAB_FILE),
            "{e:?}"
        );
    }

    /// Each way a graph can compute something else is refused with its reason.
    #[test]
    fn graphs_that_compute_something_else_are_not_claimed() {
        let base = [
            "StringSplitV2",
            "StringToHashBucketFast",
            "SparseSegmentSqrtN",
        ];
        let with = |extra: &[&str]| {
            let ops: Vec<&str> = base.iter().chain(extra).copied().collect();
            source(&ops, "embeddings")
        };
        assert!(recognise(&with(&[])));
        for (extra, why) in [
            (&["MatMul", "Relu"][..], "MatMul, Relu"),
            (&["StringLower"][..], "StringLower"),
            (&["SparseSegmentMean"][..], "SparseSegmentMean"),
            (&["RegexReplace"][..], "RegexReplace"),
        ] {
            let s = with(extra);
            assert!(!recognise(&s), "{extra:?}");
            assert!(graph_deviation(&s).unwrap().contains(why), "{extra:?}");
        }
        let mut s = with(&["StaticRegexReplace"]);
        s.regex_rewrites.push(crate::RegexRewrite {
            pattern: "\\pP|[0-9]".into(),
            rewrite: String::new(),
            global: true,
        });
        assert!(graph_deviation(&s).unwrap().contains("[0-9]"));
        s.regex_rewrites[0].pattern = "\\pP".into();
        assert!(recognise(&s));
        s.regex_rewrites[0].global = false;
        assert!(graph_deviation(&s).unwrap().contains("first match only"));
        let mut s = source(&["StringSplitV2", "StringToHashBucketFast"], "embeddings");
        assert!(graph_deviation(&s).unwrap().contains("sqrtn"));
        s.op_types.insert("SparseSegmentSqrtN".into());
        s.op_types.remove("StringSplitV2");
        assert!(graph_deviation(&s).unwrap().contains("split"));
    }

    #[test]
    fn vocab_lines_counts_like_tensorflow() {
        assert_eq!(vocab_lines(b""), 0);
        assert_eq!(vocab_lines(b"a"), 1);
        assert_eq!(vocab_lines(b"a\nb"), 2);
        assert_eq!(vocab_lines(b"a\nb\n"), 2);
    }

    #[test]
    fn no_vocab_is_not_recognised() {
        let mut s = source(&[], "embeddings");
        s.assets.clear();
        assert!(!recognise(&s));
    }
}
