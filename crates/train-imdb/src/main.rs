//! `train-imdb`: the TF tutorial "Text classification with TensorFlow Hub" on IMDB,
//! in Burn: text embedding (converted TF-Hub module or a fresh table) → Dense(16, relu)
//! → Dense(1), binary cross-entropy on logits, Keras' Adam (lr 1e-3, ε 1e-7).
//!
//! Split: the 25,000 training reviews are sorted by path, shuffled with `--seed`
//! (splitmix64 Fisher–Yates, the same as `tools/keras_imdb.py`), and the last
//! `--validation` of them are held out (the tutorial's `train[:60%]` / `train[60%:]`
//! for 10,000). Test = the 25,000 test reviews. Tokenization happens once up front.

use train_imdb::{data, graph, model};

use anyhow::{bail, Context, Result};
use burn::module::Module;
use burn::tensor::Device;
use clap::{Args, Parser, Subcommand};
use data::{Imdb, SplitMix64};
use graph::GraphClassifier;
use model::{bce_with_logits, write_outputs, Classifier, DeviceBatch, KerasAdam};
use models::text_embedding::{SplitMode, TextEmbedding, TextEmbeddingConfig, TokenBatch};
use models::Backend;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Instant;
use training::report::{EpochRecord, TrainingReport};

/// The official archive (used when `--data` is not given).
const IMDB_URL: &str = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz";

#[derive(Parser, Debug)]
#[command(
    name = "train-imdb",
    version,
    about = "Train the TF-Hub IMDB sentiment classifier in Burn",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Probability of a positive review for each TEXT (or each stdin line).
    Predict(PredictArgs),
}

#[derive(Args, Debug)]
struct PredictArgs {
    /// Folder written by `train-imdb`.
    #[arg(long)]
    model: PathBuf,
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    /// Texts to classify; without any, one per stdin line.
    texts: Vec<String>,
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// aclImdb folder or the aclImdb_v1 .tar.gz (default: download the official archive).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Text embedding to start from: a SavedModel folder or archive, a handle, or a folder
    /// written by `convert`. TF Hub's Swivel / NNLM / Wiki-words pattern runs on the
    /// hand-written embedding; any other TF2 text SavedModel through its graph (its
    /// variables trained like `hub.KerasLayer(trainable=True)`).
    #[arg(long, conflicts_with = "from_scratch")]
    embedding: Option<String>,
    /// Random embedding table: the 20,000 most frequent training tokens + 1 OOV bucket, 20 dims
    /// (the gnews-swivel-20dim shape). Default when --embedding is not given.
    #[arg(long)]
    from_scratch: bool,
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    #[arg(long, default_value_t = 512)]
    batch_size: usize,
    /// Training reviews held out for validation.
    #[arg(long, default_value_t = 10000)]
    validation: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the embedding table fixed (train only the dense layers).
    #[arg(long)]
    freeze_embedding: bool,
    /// Output folder. An existing folder is replaced only when this project wrote it (our
    /// `config.json` in it) or it is empty; anything else is refused unless --force.
    #[arg(long, default_value = "imdb-model")]
    out: PathBuf,
    /// Replace --out even when it is not a folder this project wrote.
    #[arg(long)]
    force: bool,
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f32,
    /// Vocabulary size for --from-scratch.
    #[arg(long, default_value_t = 20000)]
    vocab_size: usize,
    /// Embedding dimension for --from-scratch.
    #[arg(long, default_value_t = 20)]
    dim: usize,
}

/// Examples: ids of example i are `ids[offsets[i]..offsets[i+1]]` (tokenized once for the
/// hand-written embedding; empty for a graph, which takes `texts`).
struct Encoded<'a> {
    ids: Vec<u32>,
    offsets: Vec<usize>,
    labels: Vec<f32>,
    texts: Vec<&'a [u8]>,
}

impl<'a> Encoded<'a> {
    fn new(emb: Option<&TextEmbedding>, reviews: &[&'a data::Review]) -> Self {
        let mut e = Encoded {
            ids: Vec::new(),
            offsets: vec![0],
            labels: Vec::new(),
            texts: Vec::new(),
        };
        for r in reviews {
            if let Some(emb) = emb {
                emb.tokenizer().ids_into(&r.text, &mut e.ids);
            }
            e.offsets.push(e.ids.len());
            e.labels.push(r.label as f32);
            e.texts.push(&r.text);
        }
        e
    }
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn batch(&self, idx: &[usize], device: &Device) -> DeviceBatch {
        let tb = TokenBatch::from_id_lists(
            idx.iter()
                .map(|&i| &self.ids[self.offsets[i]..self.offsets[i + 1]]),
        );
        let labels: Vec<f32> = idx.iter().map(|&i| self.labels[i]).collect();
        DeviceBatch::new(&tb, &labels, device)
    }
}

/// The network: the classifier on the hand-written embedding, or on a text graph.
enum Net {
    Hand(Classifier),
    Graph(GraphClassifier),
}

impl Net {
    /// Logits `[B, 1]` and labels `[B, 1]` of examples `idx` of `set`.
    fn logits(
        &self,
        set: &Encoded,
        idx: &[usize],
        device: &Device,
    ) -> Result<(burn::tensor::Tensor<2>, burn::tensor::Tensor<2>)> {
        match self {
            Net::Hand(m) => {
                let b = set.batch(idx, device);
                Ok((m.forward(&b), b.labels))
            }
            Net::Graph(g) => {
                let texts: Vec<&[u8]> = idx.iter().map(|&i| set.texts[i]).collect();
                let labels: Vec<f32> = idx.iter().map(|&i| set.labels[i]).collect();
                let labels = burn::tensor::Tensor::<2>::from_data(
                    burn::tensor::TensorData::new(labels, [idx.len(), 1]),
                    device,
                );
                Ok((g.forward(&texts)?, labels))
            }
        }
    }
    fn step(self, opt: &mut KerasAdam, grads: &burn::tensor::Gradients, train: bool) -> Net {
        match self {
            Net::Hand(m) => Net::Hand(m.step(opt, grads, train)),
            Net::Graph(g) => Net::Graph(g.step(opt, grads, train)),
        }
    }
    fn valid(&self) -> Net {
        match self {
            Net::Hand(m) => Net::Hand(m.valid()),
            Net::Graph(g) => Net::Graph(g.valid()),
        }
    }
    fn freeze_embedding(self) -> Net {
        match self {
            Net::Hand(mut m) => {
                m.embedding = m.embedding.no_grad();
                Net::Hand(m)
            }
            Net::Graph(g) => Net::Graph(g.freeze_embedding()),
        }
    }
    fn save(&self, dir: &std::path::Path) -> Result<()> {
        match self {
            Net::Hand(m) => m.save(dir),
            Net::Graph(g) => g.save(dir),
        }
    }
}

/// (sum of losses, number correct) of one batch.
fn batch_stats(logits: &[f32], labels: &[f32]) -> usize {
    logits
        .iter()
        .zip(labels)
        .filter(|(l, y)| ((**l > 0.0) as u8 as f32) == **y)
        .count()
}

/// Loss and accuracy over a whole set (inference device, batches of `bs`).
fn evaluate(model: &Net, set: &Encoded, bs: usize, device: &Device) -> Result<(f64, f64)> {
    let (mut loss, mut correct) = (0.0f64, 0usize);
    let idx: Vec<usize> = (0..set.len()).collect();
    for chunk in idx.chunks(bs) {
        let (logits, labels) = model.logits(set, chunk, device)?;
        let l = bce_with_logits(logits.clone(), labels).into_scalar::<f32>();
        let lv = logits
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let labels: Vec<f32> = chunk.iter().map(|&i| set.labels[i]).collect();
        correct += batch_stats(&lv, &labels);
        loss += l as f64 * chunk.len() as f64;
    }
    let n = set.len().max(1) as f64;
    Ok((loss / n, correct as f64 / n))
}

/// What `--embedding` names: a hand-written text-embedding folder (a SavedModel or handle of
/// the hub's pattern is converted once into the cache), or a SavedModel to run as a graph.
enum EmbeddingSource {
    Folder(PathBuf),
    Graph(PathBuf),
}

fn resolve_embedding(handle: &str) -> Result<EmbeddingSource> {
    let source = tfhub::open_for_program("train-imdb", handle, false, &Device::flex())
        .with_context(|| format!("{handle}: cannot open the embedding"))?;
    Ok(match source {
        tfhub::Source::Graph { dir, .. } => EmbeddingSource::Graph(dir),
        s => EmbeddingSource::Folder(s.into_folder_of(models::text_embedding::KIND)?),
    })
}

fn train(args: TrainArgs) -> Result<()> {
    if args.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if !(args.learning_rate > 0.0 && args.learning_rate.is_finite()) {
        bail!("--learning-rate must be > 0, got {}", args.learning_rate);
    }
    if args.embedding.is_none() && args.dim == 0 {
        bail!("--dim must be at least 1");
    }
    if args.embedding.is_none() && args.vocab_size == 0 {
        bail!("--vocab-size must be at least 1");
    }
    // Refused before any work is done (checked again before the new folder is put in place).
    model_folder::outdir::check_replaceable(&args.out, args.force).map_err(anyhow::Error::msg)?;
    let data_path = match &args.data {
        Some(p) => p.clone(),
        None => {
            let opts = hub::Options::from_env();
            // Cached as the archive itself (streamed when read, never extracted).
            match hub::download_file(IMDB_URL, &opts) {
                Ok(p) => p,
                Err(e) => bail!("cannot download the IMDB dataset from {IMDB_URL}: {e}. Pass --data <aclImdb folder | aclImdb_v1.tar.gz> instead"),
            }
        }
    };
    let t0 = Instant::now();
    let imdb = Imdb::load(&data_path)?;
    if args.validation >= imdb.train.len() {
        bail!(
            "--validation {} leaves no training reviews (the data has {})",
            args.validation,
            imdb.train.len()
        );
    }
    let mut order: Vec<usize> = (0..imdb.train.len()).collect();
    SplitMix64(args.seed).shuffle(&mut order);
    let n_train = imdb.train.len() - args.validation;
    let train_reviews: Vec<&data::Review> =
        order[..n_train].iter().map(|&i| &imdb.train[i]).collect();
    let val_reviews: Vec<&data::Review> =
        order[n_train..].iter().map(|&i| &imdb.train[i]).collect();
    let test_reviews: Vec<&data::Review> = imdb.test.iter().collect();

    let backend = args.backend;
    let device = backend.autodiff_device();
    let embedding = match &args.embedding {
        Some(h) => match resolve_embedding(h)? {
            EmbeddingSource::Folder(dir) => TextEmbedding::load(&dir, &device)
                .map(Ok)
                .with_context(|| format!("cannot load {}", dir.display()))?,
            EmbeddingSource::Graph(dir) => Err(dir),
        },
        None => Ok({
            let vocab = data::build_vocab(
                train_reviews.iter().map(|r| r.text.as_slice()),
                args.vocab_size,
            );
            let config = TextEmbeddingConfig {
                vocab_size: vocab.iter().filter(|&&b| b == b'\n').count(),
                oov_buckets: 1,
                dim: args.dim,
                split: SplitMode::KeepEmpty,
                remove_punctuation: true,
                vocab_file: "tokens.txt".into(),
                source_dtype: None,
            };
            TextEmbedding::random_like(
                config,
                "tokens.txt (built from the training reviews)",
                vocab,
                args.seed,
                &device,
            )?
        }),
    };
    let hand = embedding.as_ref().ok();
    let train_set = Encoded::new(hand, &train_reviews);
    let val_set = Encoded::new(hand, &val_reviews);
    let test_set = Encoded::new(hand, &test_reviews);
    eprintln!(
        "data: {} train, {} validation, {} test reviews ({} train tokens), read and tokenized in {:.1}s; backend {backend}",
        train_set.len(),
        val_set.len(),
        test_set.len(),
        train_set.ids.len(),
        t0.elapsed().as_secs_f64()
    );

    let train_embedding = !args.freeze_embedding;
    let mut model = match embedding {
        Ok(e) => Net::Hand(Classifier::new(e, 16, args.seed, &device)),
        Err(dir) => Net::Graph(GraphClassifier::open(
            &dir,
            train_embedding,
            16,
            args.seed,
            &device,
        )?),
    };
    if !train_embedding {
        model = model.freeze_embedding();
    }
    let mut opt = KerasAdam::new(args.learning_rate);
    let mut rng = SplitMix64(args.seed.wrapping_add(0x5EED));
    let mut report = TrainingReport::new();
    let inference = backend.device();
    let steps = n_train.div_ceil(args.batch_size);
    for epoch in 1..=args.epochs {
        let start = Instant::now();
        let bar = if std::io::stderr().is_terminal() {
            let b = indicatif::ProgressBar::new(steps as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "epoch {prefix} {bar:30} {pos}/{len} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_prefix(format!("{epoch}/{}", args.epochs));
            Some(b)
        } else {
            None
        };
        let mut perm: Vec<usize> = (0..n_train).collect();
        rng.shuffle(&mut perm);
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for chunk in perm.chunks(args.batch_size) {
            let (logits, labels) = model.logits(&train_set, chunk, &device)?;
            let loss = bce_with_logits(logits.clone(), labels);
            let grads = loss.backward();
            let lv = loss.clone().into_scalar::<f32>();
            let logits = logits
                .inner()
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let labels: Vec<f32> = chunk.iter().map(|&i| train_set.labels[i]).collect();
            correct += batch_stats(&logits, &labels);
            loss_sum += lv as f64 * chunk.len() as f64;
            seen += chunk.len();
            model = model.step(&mut opt, &grads, train_embedding);
            if let Some(bar) = &bar {
                bar.inc(1);
                bar.set_message(format!(
                    "loss {:.4} accuracy {:.4}",
                    loss_sum / seen as f64,
                    correct as f64 / seen as f64
                ));
            }
        }
        let train_secs = start.elapsed().as_secs_f64();
        // `--validation 0`: no validation set, so no validation figures (not zeros).
        let val = if val_set.len() > 0 {
            let eval_model = model.valid();
            Some(evaluate(&eval_model, &val_set, 4096, &inference)?)
        } else {
            None
        };
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let rec = EpochRecord {
            epoch,
            loss: loss_sum / seen as f64,
            accuracy: correct as f64 / seen as f64,
            val_loss: val.map(|v| v.0),
            val_accuracy: val.map(|v| v.1),
            seconds: start.elapsed().as_secs_f64(),
            train_seconds: Some(train_secs),
        };
        let val_text = val.map_or(String::new(), |(l, a)| {
            format!(" val_loss {l:.4} val_accuracy {a:.4}")
        });
        eprintln!(
            "epoch {epoch}/{}: loss {:.4} accuracy {:.4}{val_text} ({train_secs:.2}s training, {:.2}s with validation)",
            args.epochs,
            loss_sum / seen as f64,
            correct as f64 / seen as f64,
            start.elapsed().as_secs_f64()
        );
        report.push(rec);
    }
    let eval_model = model.valid();
    let (test_loss, test_acc) = evaluate(&eval_model, &test_set, 4096, &inference)?;
    eprintln!("test: loss {test_loss:.4} accuracy {test_acc:.4}");
    report.set("test_loss", test_loss);
    report.set("test_accuracy", test_acc);
    report.set("train_examples", n_train);
    report.set("validation_examples", val_set.len());
    report.set("test_examples", test_set.len());
    report.set("backend", backend.name());
    report.set("seed", args.seed);
    report.set("batch_size", args.batch_size);
    report.set("freeze_embedding", args.freeze_embedding);
    report.set(
        "embedding",
        args.embedding
            .clone()
            .unwrap_or_else(|| "from-scratch".into()),
    );
    write_outputs(&args.out, |dir| eval_model.save(dir), &report, args.force)?;
    println!("{}", args.out.display());
    Ok(())
}

fn predict(args: PredictArgs) -> Result<()> {
    let device = args.backend.device();
    let folder = models::weights::ModelFolder::open(&args.model, model::KIND)?;
    let model = if folder.config.get("graph_embedding").is_some() {
        Net::Graph(GraphClassifier::load(&folder, &device)?)
    } else {
        Net::Hand(Classifier::load(&args.model, &device)?)
    };
    let texts: Vec<Vec<u8>> = if args.texts.is_empty() {
        let mut input = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut input)
            .context("cannot read stdin")?;
        let body = input.strip_suffix(b"\n").unwrap_or(&input);
        if input.is_empty() {
            Vec::new()
        } else {
            body.split(|&b| b == b'\n').map(|l| l.to_vec()).collect()
        }
    } else {
        args.texts.iter().map(|t| t.as_bytes().to_vec()).collect()
    };
    let mut w = std::io::BufWriter::new(std::io::stdout().lock());
    for chunk in texts.chunks(1024) {
        let logits = match &model {
            Net::Hand(m) => {
                let tb = m.embedding.tokenize(chunk);
                m.forward(&DeviceBatch::new(&tb, &vec![0.0; chunk.len()], &device))
            }
            Net::Graph(g) => g.forward(&chunk.iter().map(|t| t.as_slice()).collect::<Vec<_>>())?,
        };
        let p = burn::tensor::activation::sigmoid(logits);
        for v in p
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
        {
            writeln!(w, "{v:.6}")?;
        }
    }
    w.flush()?;
    Ok(())
}

/// Freed activation buffers are reused (see `program::CachingAllocator`).
#[global_allocator]
static ALLOC: program::CachingAllocator = program::CachingAllocator::new();

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    program::main(|| match cli.command {
        Some(Command::Predict(p)) => predict(p),
        None => train(cli.train),
    })
}
