//! `convert`: TF Hub SavedModels / TF Lite files -> `weights/<name>/` folders that
//! `models` loads; `convert inspect` describes a model; `convert search` / `convert show` read the
//! offline catalogue of TF Hub handles. Contract: `docs/cli.md` "convert".

mod discover;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use convert::Converted;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "convert",
    version,
    about = "Convert a TF Hub model (SavedModel or TF Lite) into a weights folder for tfhub-rs",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    convert: ConvertArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show signatures, variables (name, dtype, shape, bytes), assets and op types.
    Inspect {
        /// Handle, URL, archive, SavedModel folder or .tflite file.
        handle: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Use the cache only (same as TFHUB_OFFLINE=1).
        #[arg(long)]
        offline: bool,
    },
    /// Search the offline catalogue of TF Hub handles (tfhub.dev's model docs), with what runs here.
    Search(SearchArgs),
    /// Everything known about one catalogued handle: metadata, expected input, how to run it.
    Show {
        /// Handle: google/..., https://tfhub.dev/... (with or without version), or a Kaggle URL
        /// the catalogue names.
        handle: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct SearchArgs {
    /// Words that must all occur (case-insensitively) in the handle, title, description or
    /// architecture.
    terms: Vec<String>,
    /// Task tag, e.g. image-classification, image-feature-vector, text-embedding.
    #[arg(long)]
    task: Option<String>,
    /// Publisher, e.g. google, tensorflow, sayakpaul.
    #[arg(long)]
    publisher: Option<String>,
    /// Format: saved_model_2 (tf2), hub (tf1), saved_model, lite, tfjs, coral.
    #[arg(long)]
    format: Option<String>,
    /// Network architecture tag, e.g. mobilenet-v2, inception-v3, efficientnet-b0.
    #[arg(long)]
    architecture: Option<String>,
    /// Only models whose doc says they are fine-tunable.
    #[arg(long)]
    fine_tunable: bool,
    /// Only models that run here (hand-written or graph).
    #[arg(long)]
    runs: bool,
    /// Print a JSON list instead of a table.
    #[arg(long)]
    json: bool,
    /// At most N rows (0: all; default 40 for the table, all for --json).
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

#[derive(Args, Debug)]
struct ConvertArgs {
    /// Handle: https://tfhub.dev/..., Kaggle URL, http(s)://...tar.gz, file://..., a local
    /// SavedModel folder, a .tar/.tar.gz/.tgz archive or a .tflite file.
    #[arg(required = true)]
    handle: Option<String>,
    /// Output folder (default: weights/<name> under the current directory).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Name of the output folder under weights/ (default: derived from the handle).
    #[arg(long)]
    name: Option<String>,
    /// Write every variable under its TensorFlow name with its own dtype (kind "raw"; string
    /// variables in strings.json), even for models no converter recognises.
    #[arg(long)]
    raw: bool,
    /// Use the cache only (same as TFHUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
    /// Replace the output folder even when it was not written by tfhub-rs.
    #[arg(long)]
    force: bool,
}

/// Freed activation buffers are reused (see `program::CachingAllocator`).
#[global_allocator]
static ALLOC: program::CachingAllocator = program::CachingAllocator::new();

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Inspect {
            handle,
            json,
            offline,
        }) => inspect(&handle, json, offline),
        Some(Command::Search(a)) => discover::search(&discover::SearchOptions {
            query: catalog::Query {
                terms: a.terms,
                task: a.task,
                publisher: a.publisher,
                format: a.format,
                architecture: a.architecture,
                fine_tunable: a.fine_tunable,
            },
            runs: a.runs,
            json: a.json,
            limit: a.limit,
        }),
        Some(Command::Show { handle, json }) => discover::show(&handle, json),
        None => run_convert(&cli.convert),
    };
    program::main(|| result)
}

fn resolve(handle: &str, offline: bool) -> Result<PathBuf> {
    let mut opts = hub::Options::from_env();
    opts.offline |= offline;
    let r =
        hub::resolve(handle, &opts).with_context(|| format!("cannot get the model `{handle}`"))?;
    Ok(r.path)
}

fn is_tflite(p: &Path) -> bool {
    p.is_file()
        && p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("tflite"))
}

/// Output folder name derived from a handle: the last three meaningful path segments of a
/// URL (`.../imagenet/inception_v3/classification/5` -> `inception_v3_classification_5`),
/// or the base name of a local folder/file without archive/model extensions.
pub fn derive_name(handle: &str) -> String {
    let h = handle.split(['?', '#']).next().unwrap_or(handle);
    let raw = if let Some((_, rest)) = h.split_once("://").filter(|(s, _)| s.starts_with("http")) {
        let mut segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).skip(1).collect();
        if segs.first() == Some(&"models") {
            segs.remove(0); // kaggle.com/models/<publisher>/...
        }
        let framework = ["tensorflow1", "tensorflow2", "tflite", "tfjs", "tfLite"];
        segs.retain(|s| !framework.iter().any(|f| s.eq_ignore_ascii_case(f)));
        if segs.len() > 2 {
            segs.remove(0); // publisher
        }
        let start = segs.len().saturating_sub(3);
        let mut s = segs[start..].join("_");
        for ext in [".tar.gz", ".tgz", ".tar", ".tflite"] {
            if let Some(x) = s.strip_suffix(ext) {
                s = x.to_string();
            }
        }
        s
    } else {
        let p = h.strip_prefix("file://").unwrap_or(h);
        let base = Path::new(p.trim_end_matches('/'))
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut s = base;
        for ext in [".tar.gz", ".tgz", ".tar", ".tflite"] {
            if let Some(x) = s.strip_suffix(ext) {
                s = x.to_string();
                break;
            }
        }
        s
    };
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim_matches('.').to_string();
    if clean.is_empty() {
        "model".into()
    } else {
        clean
    }
}

fn run_convert(a: &ConvertArgs) -> Result<()> {
    let handle = a.handle.as_deref().unwrap_or_default();
    let out = match (&a.out, &a.name) {
        (Some(o), _) => o.clone(),
        (None, Some(n)) => {
            if n.is_empty() || n.contains('/') || n.contains('\\') || n == "." || n == ".." {
                bail!("--name `{n}` must be a plain folder name");
            }
            PathBuf::from("weights").join(n)
        }
        (None, None) => PathBuf::from("weights").join(derive_name(handle)),
    };
    // Refused before downloading or converting anything (and checked again before replacing).
    convert::write::check_replaceable(&out, a.force)?;
    let path = resolve(handle, a.offline)?;
    let converted = if is_tflite(&path) {
        if a.raw {
            bail!(
                "{}: --raw is for SavedModels; TF Lite files are converted by their own kind",
                path.display()
            );
        }
        convert::kinds::magenta_tflite::convert_tflite(&path, handle)
            .with_context(|| format!("{}: cannot convert the TF Lite model", path.display()))?
    } else {
        let sm = savedmodel::read(&path)
            .with_context(|| format!("cannot read the SavedModel of `{handle}`"))?;
        if a.raw {
            raw_conversion(&sm)?
        } else {
            let src = convert::from_savedmodel::source_from_savedmodel(&sm, handle)
                .with_context(|| format!("cannot read the variables of `{handle}`"))?;
            match convert::kinds::convert_any(&src)
                .with_context(|| format!("{}: conversion failed", path.display()))?
            {
                Some(c) => c,
                None => bail!(
                    "{}: unrecognised model (not {}); \
                     use --raw to write its variables under their TensorFlow names",
                    path.display(),
                    convert::kinds::describe(convert::kinds::KINDS)
                ),
            }
        }
    };
    let files = convert::write::source_files(&path)
        .with_context(|| format!("{}: cannot list files", path.display()))?;
    let written = convert::write::write_model_with(&out, &converted, handle, &files, a.force)?;
    eprintln!(
        "wrote {} tensors of kind `{}`",
        converted.tensors.len(),
        converted.kind
    );
    println!("{}", written.display());
    Ok(())
}

/// `--raw`: every variable under its TensorFlow name with its own dtype in `model.safetensors`
/// (float64 stays float64, integers and bools keep theirs); string variables go to
/// `strings.json` (`{name: {"shape", "values"}}`, a value that is not UTF-8 as `{"hex": ...}`);
/// what safetensors cannot hold (complex, resource, variant) is listed in the config under
/// `skipped` and noted on stderr.
fn raw_conversion(sm: &savedmodel::SavedModel) -> Result<Converted> {
    use model_folder::safetensors::{Dtype, Tensor};
    use savedmodel::TensorData as D;
    fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| f(x)).collect()
    }
    let mut typed = Vec::new();
    let mut strings = serde_json::Map::new();
    let mut skipped = serde_json::Map::new();
    for v in sm.variables() {
        // What safetensors cannot hold (complex, resource, variant) and the reader does not
        // decode is listed, not read.
        if v.dtype.element_size().is_none() && v.dtype != savedmodel::DType::String {
            eprintln!(
                "note: skipping variable `{}` ({} {:?}): no safetensors dtype",
                v.name, v.dtype, v.shape
            );
            skipped.insert(
                v.name.clone(),
                serde_json::json!({"dtype": v.dtype.name(), "shape": v.shape}),
            );
            continue;
        }
        let t = sm
            .tensor(&v.name)
            .with_context(|| format!("variable `{}`", v.name))?;
        let (dtype, bytes) = match &t.data {
            D::F32(x) => (Dtype::F32, le(x, f32::to_le_bytes)),
            D::F64(x) => (Dtype::F64, le(x, f64::to_le_bytes)),
            D::F16(x) => (Dtype::F16, le(x, u16::to_le_bytes)),
            D::BF16(x) => (Dtype::BF16, le(x, u16::to_le_bytes)),
            D::I8(x) => (Dtype::I8, le(x, i8::to_le_bytes)),
            D::I16(x) => (Dtype::I16, le(x, i16::to_le_bytes)),
            D::I32(x) => (Dtype::I32, le(x, i32::to_le_bytes)),
            D::I64(x) => (Dtype::I64, le(x, i64::to_le_bytes)),
            D::U8(x) => (Dtype::U8, x.clone()),
            D::U16(x) => (Dtype::U16, le(x, u16::to_le_bytes)),
            D::U32(x) => (Dtype::U32, le(x, u32::to_le_bytes)),
            D::U64(x) => (Dtype::U64, le(x, u64::to_le_bytes)),
            D::Bool(x) => (Dtype::Bool, x.iter().map(|&b| b as u8).collect()),
            D::String(x) => {
                let values: Vec<serde_json::Value> = x
                    .iter()
                    .map(|b| match std::str::from_utf8(b) {
                        Ok(s) => serde_json::json!(s),
                        Err(_) => serde_json::json!({"hex": hex_string(b)}),
                    })
                    .collect();
                strings.insert(
                    v.name.clone(),
                    serde_json::json!({"shape": t.shape, "values": values}),
                );
                continue;
            }
        };
        typed.push(Tensor {
            name: v.name.clone(),
            dtype,
            shape: t.shape.clone(),
            bytes,
        });
    }
    let mut assets: Vec<(String, Vec<u8>)> = convert::from_savedmodel::assets_of(sm)
        .context("cannot read the SavedModel's assets")?
        .into_iter()
        .collect();
    if !strings.is_empty() {
        if assets.iter().any(|(k, _)| k == "strings.json") {
            bail!("the SavedModel has an asset named strings.json, where --raw writes its string variables");
        }
        assets.push((
            "strings.json".into(),
            serde_json::to_vec_pretty(&strings).context("strings.json")?,
        ));
    }
    Ok(Converted {
        kind: "raw".into(),
        config: serde_json::json!({"skipped": skipped, "op_types": sm.op_types()}),
        tensors: Vec::new(),
        typed,
        assets,
    })
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn inspect(handle: &str, json: bool, offline: bool) -> Result<()> {
    let path = resolve(handle, offline)?;
    if is_tflite(&path) {
        let text = convert::inspect::tflite(&path, json)
            .with_context(|| format!("{}: cannot inspect the TF Lite model", path.display()))?;
        println!("{}", text.trim_end());
        return Ok(());
    }
    let sm = savedmodel::read(&path)
        .with_context(|| format!("cannot read the SavedModel of `{handle}`"))?;
    let text = convert::inspect::savedmodel(&sm, &path, json);
    if json {
        println!("{text}");
    } else {
        print!("{text}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::derive_name;

    #[test]
    fn names_from_handles() {
        assert_eq!(
            derive_name("https://tfhub.dev/google/imagenet/inception_v3/classification/5"),
            "inception_v3_classification_5"
        );
        assert_eq!(
            derive_name("https://tfhub.dev/google/magenta/arbitrary-image-stylization-v1-256/2"),
            "magenta_arbitrary-image-stylization-v1-256_2"
        );
        assert_eq!(
            derive_name(
                "https://www.kaggle.com/models/google/inception-v3/tensorFlow2/classification/2"
            ),
            "inception-v3_classification_2"
        );
        assert_eq!(derive_name("/tmp/models/my_model/"), "my_model");
        assert_eq!(derive_name("file:///x/model.tar.gz"), "model");
        assert_eq!(derive_name("style.tflite"), "style");
        assert_eq!(
            derive_name("https://tfhub.dev/google/x/1?tf-hub-format=compressed"),
            "x_1"
        );
        assert_eq!(derive_name("/"), "model");
    }
}
