//! `convert search` and `convert show`: the offline catalogue of TF Hub handles (crate
//! `catalog`) as a table / JSON, with the runs-here column and the command lines that run a handle.

use anyhow::{bail, Result};
use catalog::{Catalog, Entry, Input, Query, RunsHere};
use std::fmt::Write as _;

/// Rows printed by a table search when `--limit` is not given.
const DEFAULT_TABLE_LIMIT: usize = 40;

pub struct SearchOptions {
    pub query: Query,
    /// Only entries that run here (hand-written or graph).
    pub runs: bool,
    pub json: bool,
    /// `Some(0)`: no limit.
    pub limit: Option<usize>,
}

/// `convert search`: prints the matching entries (table or JSON) and returns.
pub fn search(opts: &SearchOptions) -> Result<()> {
    let cat = Catalog::builtin();
    check_filters(cat, &opts.query)?;
    let found: Vec<(&Entry, RunsHere)> = cat
        .search(&opts.query)
        .into_iter()
        .map(|e| (e, cat.runs_here(e)))
        .filter(|(_, r)| !opts.runs || r.runs())
        .collect();
    let limit = match opts.limit {
        Some(0) => usize::MAX,
        Some(n) => n,
        None if opts.json => usize::MAX,
        None => DEFAULT_TABLE_LIMIT,
    };
    let shown = &found[..found.len().min(limit)];
    if opts.json {
        let list: Vec<serde_json::Value> =
            shown.iter().map(|(e, r)| entry_json(cat, e, r)).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    if found.is_empty() {
        eprintln!("no handle matches; try fewer words or filters (`convert search --help`)");
        return Ok(());
    }
    print!("{}", table(shown));
    let more = if found.len() > shown.len() {
        format!(
            ", first {} shown (--limit N, --limit 0 for all)",
            shown.len()
        )
    } else {
        String::new()
    };
    println!(
        "{} of {} handles{more}; catalogue: {} @ {} ({})",
        found.len(),
        cat.entries().len(),
        cat.source(),
        short(cat.commit()),
        cat.date().get(..10).unwrap_or(cat.date())
    );
    Ok(())
}

/// `convert show HANDLE`.
pub fn show(handle: &str, json: bool) -> Result<()> {
    let cat = Catalog::builtin();
    let Some(e) = cat.lookup(handle) else {
        bail!("{}", unknown_handle(cat, handle));
    };
    let r = cat.runs_here(e);
    if json {
        let mut v = entry_json(cat, e, &r);
        v["input"] = e.input().to_string().into();
        v["commands"] = commands(cat, e, &r)
            .into_iter()
            .map(|(_, c)| c)
            .collect::<Vec<_>>()
            .into();
        v["library"] = library_call(e, &r)
            .map(Into::into)
            .unwrap_or(serde_json::Value::Null);
        v["versions"] = versions(cat, e).into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    print!("{}", show_text(cat, e, &r));
    Ok(())
}

/// The error for a handle the catalogue does not have: names it, suggests near handles and
/// `convert search`.
fn unknown_handle(cat: &Catalog, handle: &str) -> String {
    let mut msg = format!(
        "`{handle}` is not in the catalogue of TF Hub handles ({} @ {}, {} handles)",
        cat.source(),
        short(cat.commit()),
        cat.entries().len()
    );
    if handle.contains("kaggle.com/") {
        msg.push_str("; the tfhub.dev docs name no Kaggle URL for it");
    }
    let near = cat.suggestions(handle, 3);
    if !near.is_empty() {
        let names: Vec<&str> = near.iter().map(|e| e.handle.as_str()).collect();
        let _ = write!(msg, "; similar handles: {}", names.join(", "));
    }
    msg.push_str("; find handles with `convert search WORDS`");
    msg
}

/// Unknown filter values are errors naming the accepted ones (a typo must not look like "no
/// such model").
fn check_filters(cat: &Catalog, q: &Query) -> Result<()> {
    if let Some(f) = &q.format {
        if catalog::canonical_format(f).is_none() {
            let names: Vec<String> = catalog::FORMATS
                .iter()
                .map(|(tag, aliases, _)| format!("{tag} ({})", aliases.join(", ")))
                .collect();
            bail!("unknown format `{f}`; formats: {}", names.join("; "));
        }
    }
    for (field, value) in [
        ("task", &q.task),
        ("publisher", &q.publisher),
        ("architecture", &q.architecture),
    ] {
        let Some(v) = value else { continue };
        let known = cat.values(field);
        if known.iter().any(|k| k.eq_ignore_ascii_case(v)) {
            continue;
        }
        let vl = v.to_lowercase();
        let close: Vec<&str> = known
            .iter()
            .copied()
            .filter(|k| k.contains(&vl) || vl.contains(*k))
            .collect();
        let list = if close.is_empty() { known } else { close };
        let shown: Vec<&str> = list.iter().take(30).copied().collect();
        let more = if list.len() > shown.len() {
            ", ..."
        } else {
            ""
        };
        bail!(
            "unknown {field} `{v}`; {field}s: {}{more}",
            shown.join(", ")
        );
    }
    Ok(())
}

fn short(commit: &str) -> &str {
    commit.get(..7).unwrap_or(commit)
}

fn entry_json(cat: &Catalog, e: &Entry, r: &RunsHere) -> serde_json::Value {
    let mut v = serde_json::to_value(e).expect("entries serialize");
    v["runs_here"] = r.label().into();
    v["runs_here_reason"] = r
        .reason()
        .map(Into::into)
        .unwrap_or(serde_json::Value::Null);
    if *r == RunsHere::Graph {
        v["graph_tests"] = graph_tests(cat, e).into();
    }
    v
}

/// The graph-executor test models that vouch for an entry's architectures.
fn graph_tests(cat: &Catalog, e: &Entry) -> Vec<String> {
    cat.graph_tests()
        .iter()
        .filter(|t| e.has_architecture(&t.architecture))
        .map(|t| t.name.clone())
        .collect()
}

fn versions(cat: &Catalog, e: &Entry) -> Vec<String> {
    cat.entries()
        .iter()
        .filter(|o| o.model() == e.model() && o.handle != e.handle)
        .map(|o| format!("{} ({}, {})", o.handle, o.format, cat.runs_here(o).label()))
        .collect()
}

fn table(rows: &[(&Entry, RunsHere)]) -> String {
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|(e, r)| {
            [
                e.handle.clone(),
                or_dash(&e.task.join(",")),
                e.format.clone(),
                or_dash(&e.architecture.join(",")),
                r.to_string(),
            ]
        })
        .collect();
    let header = ["HANDLE", "TASK", "FORMAT", "ARCHITECTURE", "RUNS HERE"];
    let mut width = header.map(str::len);
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header.map(String::from)).chain(cells) {
        let line: Vec<String> = row
            .iter()
            .zip(width)
            .enumerate()
            .map(|(i, (s, w))| {
                if i == 4 {
                    s.clone()
                } else {
                    format!("{s:<w$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.into()
    }
}

fn show_text(cat: &Catalog, e: &Entry, r: &RunsHere) -> String {
    let mut o = String::new();
    let list = |v: &[String]| or_dash(&v.join(", "));
    let runs = match r {
        RunsHere::Graph => format!("graph (test models: {})", graph_tests(cat, e).join(", ")),
        RunsHere::HandWritten => "hand-written (the exact fast path)".into(),
        other => other.to_string(),
    };
    let fine_tunable = match e.fine_tunable {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    };
    let rows: Vec<(&str, String)> = vec![
        ("handle", e.handle.clone()),
        ("url", e.url.clone()),
        (
            "kaggle url",
            e.kaggle_url
                .clone()
                .unwrap_or_else(|| "- (not named in the tfhub.dev doc)".into()),
        ),
        ("publisher", e.publisher.clone()),
        ("format", format!("{} ({})", e.format, e.format_name())),
        ("task", list(&e.task)),
        ("architecture", list(&e.architecture)),
        ("dataset", list(&e.dataset)),
        ("language", list(&e.language)),
        ("fine-tunable", fine_tunable.into()),
        ("license", e.license.clone().unwrap_or_else(|| "-".into())),
        ("title", or_dash(&e.title)),
        ("description", or_dash(&e.description)),
    ];
    for (k, v) in rows {
        let _ = writeln!(o, "{k:<13} {v}");
    }
    if let Some(a) = &e.asset {
        let _ = writeln!(o, "{:<13} {a}", "download");
    }
    if let Some(p) = &e.parent {
        let _ = writeln!(o, "{:<13} {p}", "made from");
    }
    if !e.inherited.is_empty() {
        let from = if e.parent.is_some() {
            "the parent model"
        } else {
            "another version of this model"
        };
        let _ = writeln!(
            o,
            "{:<13} {} (from {from})",
            "inherited",
            e.inherited.join(", ")
        );
    }
    let _ = writeln!(o, "{:<13} {runs}", "runs here");
    let _ = writeln!(o, "{:<13} {}", "input", e.input());
    let others = versions(cat, e);
    if !others.is_empty() {
        let _ = writeln!(o, "{:<13} {}", "other versions", others.join("; "));
    }
    let cmds = commands(cat, e, r);
    if !cmds.is_empty() {
        let _ = writeln!(o, "\nrun it:");
        for (what, c) in cmds {
            let _ = writeln!(o, "  # {what}\n  {c}");
        }
    }
    if let Some(l) = library_call(e, r) {
        let _ = writeln!(o, "\nlibrary:\n  {}", l.replace('\n', "\n  "));
    }
    let _ = writeln!(
        o,
        "\n(catalogue: {} @ {}, {})",
        cat.source(),
        short(cat.commit()),
        cat.date().get(..10).unwrap_or(cat.date())
    );
    o
}

/// The command lines that run an entry here: (what it does, command line).
fn commands(cat: &Catalog, e: &Entry, r: &RunsHere) -> Vec<(String, String)> {
    let url = &e.url;
    let mut c = Vec::new();
    if !r.runs() {
        if matches!(e.format.as_str(), "saved_model_2" | "hub" | "saved_model") {
            c.push((
                "see its signatures, variables and unsupported ops".into(),
                format!("convert inspect {url}"),
            ));
        }
        return c;
    }
    let hand = *r == RunsHere::HandWritten;
    let name = crate::derive_name(url);
    if hand && e.format != "lite" {
        c.push((
            "convert once into weights/ (programs also convert on first use)".into(),
            format!("convert {url} --out weights/{name}"),
        ));
    }
    let is = |t: &str| e.has_task(t);
    if is("image-classification") || is("image-classifier") || is("image-classification-logits") {
        c.push((
            "top-5 ImageNet classes".into(),
            format!("classify --model {url} --top 5 IMAGE..."),
        ));
    }
    if is("image-feature-vector") {
        c.push((
            "feature vectors [N, D]".into(),
            format!("classify --model {url} --features features.npy IMAGE..."),
        ));
        if e.fine_tunable == Some(true) {
            c.push((
                "train a classifier head on your images (one sub-folder per class)".into(),
                format!("finetune --model {url} --data DIR --out runs/{name}"),
            ));
        }
    }
    if is("text-embedding") {
        c.push((
            "embed one sentence per line".into(),
            format!("embed --model {url} --input sentences.txt -o embeddings.npy"),
        ));
        if hand {
            c.push((
                "train an IMDB sentiment classifier on top".into(),
                format!("train-imdb --embedding {url} --data aclImdb_v1.tar.gz --out runs/imdb"),
            ));
        }
    }
    if is("image-style-transfer") {
        if e.format == "lite" {
            let (pred, transfer) = if e.handle.contains("/prediction/") {
                (
                    e.url.clone(),
                    counterpart(cat, e, "/prediction/", "/transfer/"),
                )
            } else {
                (
                    counterpart(cat, e, "/transfer/", "/prediction/"),
                    e.url.clone(),
                )
            };
            c.push((
                "stylize with the two TF Lite halves".into(),
                format!("stylize --predictor {pred} --transfer {transfer} --content IMAGE --style IMAGE -o out.png"),
            ));
        } else {
            c.push((
                "stylize".into(),
                format!("stylize --model {url} --content IMAGE --style IMAGE -o out.png"),
            ));
        }
    }
    if e.is_tf2_saved_model() && !hand {
        c.push((
            "see its signatures and op coverage".into(),
            format!("convert inspect {url}"),
        ));
    }
    c
}

/// The URL of the other half of a Magenta TF Lite pair (or a placeholder when the catalogue
/// lacks it).
fn counterpart(cat: &Catalog, e: &Entry, from: &str, to: &str) -> String {
    cat.lookup(&e.handle.replace(from, to))
        .map(|o| o.url.clone())
        .unwrap_or_else(|| "OTHER_HALF.tflite".into())
}

/// The Rust library call for an entry that runs here.
fn library_call(e: &Entry, r: &RunsHere) -> Option<String> {
    let name = crate::derive_name(&e.url);
    let dev = "let device = models::Backend::Flex.device();";
    match r {
        RunsHere::NotYet(_) => None,
        RunsHere::Graph => Some(format!(
            "{dev}\nlet folder = hub::resolve(\"{url}\", &hub::Options::default())?.path;\nlet model = tfgraph::Model::load(&savedmodel::read(&folder)?, None, &device)?;\nlet outputs = model.run_host(vec![images])?; // images: tfgraph::HostTensor [B, H, W, 3] in [0, 1]",
            url = e.url
        )),
        RunsHere::HandWritten => Some(match e.input() {
            Input::Image { .. } => format!(
                "{dev}\nlet net = models::inception_v3::InceptionV3::load(\"weights/{name}\", &device)?;\nlet out = net.forward(images)?; // images: Tensor<4> [B, H, W, 3] in [0, 1]"
            ),
            Input::Text => format!(
                "{dev}\nlet emb = models::text_embedding::TextEmbedding::load(\"weights/{name}\", &device)?;\nlet vectors = emb.embed(&[\"a sentence\", \"another one\"]); // Tensor<2> [B, D]"
            ),
            Input::StyleTransfer { .. } => format!(
                "{dev}\nlet st = models::stylization::Stylization::load(\"weights/{name}\", &device)?;\nlet out = st.stylize(content, style); // Tensor<4> [1, H, W, 3] in [0, 1]"
            ),
            Input::Other(_) => format!(
                "{dev}\nlet st = models::stylization::Stylization::load_parts(\"weights/<prediction>\", \"weights/<transfer>\", &device)?;"
            ),
        }),
    }
}
