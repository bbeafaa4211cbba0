//! `embed`: sentence embeddings with a TF-Hub text embedding: the hand-written embedding for
//! the Swivel / NNLM / Wiki-words pattern (converted once, checked against its graph), any
//! other TF2 text SavedModel (a DAN encoder, another preprocessing) through its graph.
//!
//! One sentence per line of `--input` (or stdin), taken as raw bytes (invalid UTF-8
//! included; only `\n` ends a line, so a `\r` stays part of the sentence; a final
//! newline does not start an extra empty sentence). Writes a float32 `.npy` `[N, D]`
//! with `-o`, else one JSON array of D numbers per line on stdout.

use anyhow::{bail, Context, Result};
use burn::tensor::Device;
use clap::Parser;
use models::text_embedding::TextEmbedding;
use models::Backend;
use std::io::{Read, Write};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "embed",
    version,
    about = "Embed sentences (one per line) with a TF-Hub text embedding (any TF2 text SavedModel)"
)]
struct Args {
    /// Text model: a SavedModel folder or archive, a handle, or a folder written by `convert`.
    #[arg(long)]
    model: String,
    /// Input file, one sentence per line (default: stdin).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Output `.npy` file (float32 [N, D]); without it, JSON lines on stdout.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// Compute backend: flex, ndarray or wgpu.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    /// Sentences per forward pass.
    #[arg(long, default_value_t = 4096)]
    batch: usize,
    /// Use the hub cache only (no download).
    #[arg(long)]
    offline: bool,
}

/// Splits input bytes into lines: only `\n` separates, a trailing `\n` ends the last line.
fn lines(input: &[u8]) -> Vec<&[u8]> {
    if input.is_empty() {
        return Vec::new();
    }
    let body = input.strip_suffix(b"\n").unwrap_or(input);
    body.split(|&b| b == b'\n').collect()
}

fn run(args: Args) -> Result<()> {
    // The options and the input are checked before the model is opened (or converted).
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if let Some(out) = &args.output {
        program::check_output_file(out, "-o")?;
    }
    let mut input = Vec::new();
    match &args.input {
        Some(path) => {
            input = std::fs::read(path)
                .with_context(|| format!("--input {}: cannot read", path.display()))?;
        }
        None => {
            std::io::stdin()
                .lock()
                .read_to_end(&mut input)
                .context("cannot read stdin")?;
        }
    }
    let device: Device = args.backend.device();
    let source = tfhub::open_for_program("embed", &args.model, args.offline, &device)
        .with_context(|| format!("{}: cannot open the model", args.model))?;
    let sentences = lines(&input);
    let (values, dim) = match source {
        // Any other TF2 text model (NNLM, Wiki-words, a DAN encoder, ...): its own graph.
        tfhub::Source::Graph { dir, .. } => embed_graph(&dir, &sentences, args.batch, &device)?,
        source => {
            let dir = source.into_folder_of(models::text_embedding::KIND)?;
            let model = TextEmbedding::load(&dir, &device)
                .with_context(|| format!("cannot load {}", dir.display()))?;
            let dim = model.dim();
            let mut values = Vec::with_capacity(sentences.len() * dim);
            for chunk in sentences.chunks(args.batch) {
                values.extend(model.embed_values(chunk));
            }
            (values, dim)
        }
    };
    match &args.output {
        Some(path) => {
            model_folder::npy::write(path, &[sentences.len(), dim], &values)?;
            eprintln!("{}: {} x {} float32", path.display(), sentences.len(), dim);
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            for row in values.chunks(dim.max(1)).take(sentences.len()) {
                serde_json::to_writer(&mut w, row)?;
                w.write_all(b"\n")?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

/// Runs a text SavedModel's graph on `sentences`, `batch` at a time: `[N, dim]` values
/// (float64 outputs narrowed to float32 for the `.npy` / JSON output).
fn embed_graph(
    dir: &std::path::Path,
    sentences: &[&[u8]],
    batch: usize,
    device: &Device,
) -> Result<(Vec<f32>, usize)> {
    let model = tfhub::tfgraph::Model::open(dir, device)
        .with_context(|| format!("{}: cannot load its graph", dir.display()))?;
    if !model.entry().takes_one_string_batch() {
        bail!(
            "{}: its {} does not take one batch of strings (is it a text model?)",
            dir.display(),
            model.entry().label()
        );
    }
    let mut values = Vec::new();
    let mut dim = None;
    for chunk in sentences.chunks(batch) {
        let x = tfhub::tfgraph::HostTensor {
            dtype: tfhub::savedmodel::DType::String,
            shape: vec![chunk.len()],
            data: tfhub::tfgraph::HostData::Str(chunk.iter().map(|s| s.to_vec()).collect()),
        };
        let out = model
            .run_host(vec![x])
            .with_context(|| format!("{}: running its graph", dir.display()))?;
        let out = out
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("{}: the graph has no output", dir.display()))?;
        match out.shape.as_slice() {
            [n, d] if *n == chunk.len() => dim = Some(*d),
            s => bail!(
                "{}: the graph gives an output of shape {s:?} for {} sentences; expected [{}, dim]",
                dir.display(),
                chunk.len(),
                chunk.len()
            ),
        }
        values.extend(
            out.to_f32()
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?,
        );
    }
    let dim = match dim {
        Some(d) => d,
        // No sentences: the output width from an empty batch.
        None => model
            .run_host(vec![tfhub::tfgraph::HostTensor {
                dtype: tfhub::savedmodel::DType::String,
                shape: vec![0],
                data: tfhub::tfgraph::HostData::Str(Vec::new()),
            }])?
            .first()
            .and_then(|o| o.shape.get(1).copied())
            .unwrap_or(0),
    };
    Ok((values, dim))
}

/// Freed activation buffers are reused (see `program::CachingAllocator`).
#[global_allocator]
static ALLOC: program::CachingAllocator = program::CachingAllocator::new();

fn main() -> std::process::ExitCode {
    program::main(|| run(Args::parse()))
}

#[cfg(test)]
mod tests {
    use super::lines;

    #[test]
    fn only_newline_ends_a_line() {
        assert_eq!(lines(b""), Vec::<&[u8]>::new());
        assert_eq!(lines(b"a\n"), vec![&b"a"[..]]);
        assert_eq!(lines(b"a\r\n\nb"), vec![&b"a\r"[..], b"", b"b"]);
        assert_eq!(lines(b"\n"), vec![&b""[..]]);
    }
}
