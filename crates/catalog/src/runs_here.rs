//! The runs-here column, computed from an entry's metadata, the hand-written families and the
//! graph executor's test index (never typed per handle).

use crate::{Catalog, Entry, GraphTest};
use std::fmt;

/// How this project runs a catalogue entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunsHere {
    /// A hand-written Burn model with a verified converter (the exact fast path).
    HandWritten,
    /// A TF2 SavedModel whose architecture has a passing graph-executor test model of the same
    /// task family (image classification and feature vectors count as one).
    Graph,
    /// Not yet, and why.
    NotYet(String),
}

impl RunsHere {
    /// `hand-written`, `graph` or `not yet`.
    pub fn label(&self) -> &'static str {
        match self {
            RunsHere::HandWritten => "hand-written",
            RunsHere::Graph => "graph",
            RunsHere::NotYet(_) => "not yet",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            RunsHere::NotYet(r) => Some(r),
            _ => None,
        }
    }

    pub fn runs(&self) -> bool {
        !matches!(self, RunsHere::NotYet(_))
    }
}

impl fmt::Display for RunsHere {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunsHere::NotYet(r) => write!(f, "not yet: {r}"),
            other => f.write_str(other.label()),
        }
    }
}

/// A model family the project ports by hand (`models::*` + a `convert` kind), with the tests
/// that verify it.
struct Family {
    /// Which entries: publisher `google`, the handle's model path (handle without publisher and
    /// version) and the formats the converter reads.
    matches: fn(model_path: &str, e: &Entry) -> bool,
}

const HAND_WRITTEN: &[Family] = &[
    // Inception-v3 classification / feature vector, the TF2 SavedModels of
    // google/imagenet/inception_v3 (models::inception_v3; tests: convert/tests/inception_parity.rs,
    // inception_full.rs). Other Inception-v3 exports (tf2-preview, inaturalist) are not verified
    // against the converter and take the graph rule.
    Family {
        matches: |m, e| {
            e.is_tf2_saved_model()
                && e.has_architecture("inception-v3")
                && (m == "imagenet/inception_v3/classification"
                    || m == "imagenet/inception_v3/feature_vector")
        },
    },
    // Magenta arbitrary image stylization: the SavedModel of version 2 (the one the project
    // converts; fixture from Magenta's export_hub) and Magenta's TF Lite prediction/transfer
    // files (tests: convert/tests/stylization*.rs, fixtures stylization, stylization_tflite).
    Family {
        matches: |m, e| {
            (m == "magenta/arbitrary-image-stylization-v1-256" && e.version() == Some(2))
                || (e.format == "lite"
                    && m.starts_with("lite-model/magenta/arbitrary-image-stylization-v1-256/"))
        },
    },
    // Token-based text embeddings: gnews-swivel, NNLM, Wiki-words (models::text_embedding;
    // fixtures text_embedding/tf2_* are TF2 exports, tf1_f32_oov2 the TF1 hub pattern).
    Family {
        matches: |m, e| {
            let m = m.strip_prefix("tf2-preview/").unwrap_or(m);
            (e.is_tf2_saved_model() || e.format == "hub")
                && e.has_task("text-embedding")
                && (m.starts_with("gnews-swivel-20dim")
                    || m.starts_with("nnlm-")
                    || m.starts_with("Wiki-words-"))
        },
    },
];

fn hand_written(e: &Entry) -> bool {
    if e.publisher != "google" {
        return false;
    }
    let path = e.model().strip_prefix("google/").unwrap_or(e.model());
    HAND_WRITTEN.iter().any(|f| (f.matches)(path, e))
}

/// A custom (non-core TensorFlow) op the graph needs, recognised from the metadata.
fn custom_op(e: &Entry) -> Option<&'static str> {
    let h = e.handle.to_lowercase();
    if e.has_task("text-preprocessing") || h.contains("preprocess") {
        return Some("needs TensorFlow Text ops (tf_text tokenizers), which the graph executor does not have");
    }
    if h.contains("universal-sentence-encoder-multilingual")
        || h.contains("sentencepiece")
        || h.contains("wiki40b-lm")
    {
        return Some("needs the SentencePiece custom op, which the graph executor does not have");
    }
    None
}

pub(crate) fn runs_here(cat: &Catalog, e: &Entry) -> RunsHere {
    let own = own_status(cat, e);
    if own.runs() {
        return own;
    }
    // Point at another version of the same model that runs, if any.
    let other = cat
        .entries()
        .iter()
        .filter(|o| o.model() == e.model() && o.handle != e.handle)
        .find(|o| own_status(cat, o).runs());
    match (own, other) {
        (RunsHere::NotYet(r), Some(o)) => RunsHere::NotYet(format!(
            "{r}; version {} runs ({})",
            o.version().map(|v| v.to_string()).unwrap_or_default(),
            own_status(cat, o).label()
        )),
        (own, _) => own,
    }
}

fn own_status(cat: &Catalog, e: &Entry) -> RunsHere {
    if hand_written(e) {
        return RunsHere::HandWritten;
    }
    let not_yet = |s: &str| RunsHere::NotYet(s.to_string());
    match e.format.as_str() {
        "saved_model_2" => {}
        "hub" => return not_yet("TF1 hub format (the graph executor runs TF2 SavedModels)"),
        "saved_model" => {
            return not_yet("TF1 SavedModel (the graph executor runs TF2 SavedModels)")
        }
        "lite" => {
            return not_yet("TF Lite format: only Magenta's stylization networks are converted")
        }
        "tfjs" => return not_yet("TF.js format is not read"),
        "coral" => return not_yet("Coral Edge TPU format is not read"),
        other => return RunsHere::NotYet(format!("format `{other}` is not read")),
    }
    if let Some(r) = custom_op(e) {
        return not_yet(r);
    }
    if e.architecture.is_empty() {
        return not_yet("no network-architecture tag, so no graph test vouches for it");
    }
    for a in &e.architecture {
        let tests: Vec<&GraphTest> = cat
            .graph_tests()
            .iter()
            .filter(|t| t.architecture.eq_ignore_ascii_case(a))
            .collect();
        if tests.is_empty() {
            return RunsHere::NotYet(format!("architecture {a} has no passing graph test yet"));
        }
        // The test model must be of the entry's task family: a backbone tested as a classifier
        // does not vouch for a detector or pose model built on it (other heads, other ops).
        if !tests.iter().any(|t| {
            t.task
                .as_deref()
                .is_some_and(|tt| e.task.iter().any(|et| same_task_family(tt, et)))
        }) {
            let tested: Vec<&str> = tests.iter().filter_map(|t| t.task.as_deref()).collect();
            return RunsHere::NotYet(format!(
                "architecture {a} is graph-tested only as {}, not {}",
                if tested.is_empty() {
                    "an untasked model".to_string()
                } else {
                    tested.join(", ")
                },
                if e.task.is_empty() {
                    "an untagged task".to_string()
                } else {
                    e.task.join(", ")
                }
            ));
        }
    }
    RunsHere::Graph
}

/// Classifier and feature-vector exports of a network are the same graph up to the head.
fn same_task_family(a: &str, b: &str) -> bool {
    const IMAGE_BACKBONE: &[&str] = &[
        "image-classification",
        "image-feature-vector",
        "image-classification-logits",
        "image-classifier",
    ];
    a.eq_ignore_ascii_case(b) || (IMAGE_BACKBONE.contains(&a) && IMAGE_BACKBONE.contains(&b))
}
