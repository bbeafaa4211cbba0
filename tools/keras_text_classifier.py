"""Keras reference for `train-imdb` as a user runs it: the TF tutorial "Text classification with
TensorFlow Hub" with tf_keras (Keras 2) and `hub.KerasLayer(handle, trainable=True)`.

The embedding is a SavedModel exported in the pattern of tensorflow/hub
examples/text_embeddings_v2/export_v2.py (as tools/make_text_embedding_fixture.py does) from the
*same* vocabulary and table as `train-imdb --from-scratch --seed S`: the 20,000 most frequent
training tokens (ties by bytes) + 1 OOV bucket, 20 dims, the table drawn with the seed exactly as
`TextEmbedding::random_like` does (splitmix64, uniform [-0.05, 0.05)). Model: hub layer ->
Dense(16, relu) -> Dense(1), BinaryCrossentropy(from_logits=True), Adam(1e-3) (tf_keras' own
epsilon 1e-7), batch 512, 20 epochs, shuffled every epoch. Split: as train-imdb (training reviews
sorted by path, splitmix64 Fisher-Yates with the seed, the last --validation held out).

Datasets (--dataset):
  imdb       ../shared/data/aclImdb_v1_labeled.tar.gz (25,000 train, 10,000 of them held out; 25,000 test).
  sentences  IMDB-sentences: a short-sentence sentiment set *derived from IMDB* (no package on the
             registries this project reaches ships the Pang & Lee rt-polarity sentences): for each of
             the 50,000 labelled reviews, its last sentence of 6 to 40 words (`<br />` removed), i.e.
             usually the reviewer's verdict; 5,331 positive + 5,331 negative of them drawn with
             splitmix64(2005), 9,595 for training and 1,067 for test (rt-polarity's sizes). Written
             under tools/out/imdb_sentences/aclImdb/{train,test}/{pos,neg}/<n>_<0|10>.txt, so
             `train-imdb --data tools/out/imdb_sentences --validation 0` reads the same data.
  folder:P   any aclImdb-layout folder or .tar.gz P (e.g. rt-polarity laid out that way by hand).

Usage:
  tools/.venv/bin/python tools/keras_text_classifier.py [--dataset imdb|sentences|folder:P]
      [--seeds 42[,43,...]] [--epochs 20] [--batch-size 512] [--validation N] [--dense-init keras|rust]
      [--optimizer adam|legacy|lazy|nodedup] [--embedding SAVEDMODEL] [--rust BIN] [--out tools/out/keras_text_classifier_<dataset>.json]
  tools/.venv/bin/python tools/keras_text_classifier.py --make-sentences   (only writes the derived set)

  --validation: default 10000 for imdb, 0 for the others (all 9,595 sentences train).
  --dense-init rust: start the Dense layers from train-imdb's own glorot draw (splitmix64(seed+1))
      instead of Keras' (so only the optimizer and the batch order differ).
  --optimizer legacy: tf_keras.optimizers.legacy.Adam; lazy: Adam whose moments and step touch only
      the table rows of the batch (TF Addons' LazyAdam rule); nodedup: tf_keras' Adam without merging
      a sparse gradient's repeated rows (v sums each occurrence's squared gradient, as Keras 3's Adam
      does on the IndexedSlices of a bare gather). For comparison.
  --embedding SAVEDMODEL: start both from this text-embedding SavedModel (hub.KerasLayer(trainable=True)
      in Keras, `train-imdb --embedding` in Rust) instead of the from-scratch table.
  --rust BIN: also run `BIN --from-scratch` (or `--embedding`) (train-imdb) on the same data and seeds and put its
      test accuracy and s/epoch beside Keras' in the JSON.

Writes a JSON with, per seed, the per-epoch history and s/epoch, the test loss, the test accuracy
(logit > 0, what train-imdb reports) and the tutorial's `metrics=['accuracy']` figure (tf_keras
thresholds the *logit* at 0.5 there), and the mean over seeds.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402
import tensorflow_hub as hub  # noqa: E402
import tf_keras  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, HERE)
from keras_imdb import SplitMix64, build_vocab, read_imdb  # noqa: E402
from make_text_embedding_fixture import TextEmbeddingModel  # noqa: E402  (export_v2.py's pattern)

MASK = (1 << 64) - 1
G = 0x9E3779B97F4A7C15
IMDB = os.path.join(ROOT, "..", "shared", "data", "aclImdb_v1_labeled.tar.gz")
SENTENCES_DIR = os.path.join(ROOT, "tools", "out", "imdb_sentences")


# ---------------------------------------------------------------- the derived short-sentence set

def make_sentences(imdb_path, out_dir, per_class=5331, n_test=1067, seed=2005):
    """IMDB-sentences (see the module doc). Returns out_dir."""
    if os.path.isfile(os.path.join(out_dir, "DONE")):
        return out_dir
    train, test = read_imdb(imdb_path)
    split_re = re.compile(rb"(?<=[.!?])\s+")
    cands = {0: [], 1: []}
    for path, text, label in train + test:
        text = text.replace(b"<br />", b" ").replace(b"<br/>", b" ")
        sents = [s.strip() for s in split_re.split(text) if s.strip()]
        for s in reversed(sents):
            if 6 <= len(s.split()) <= 40:
                cands[label].append((path, s))
                break
    rows = []
    for label in (0, 1):
        c = sorted(cands[label])
        SplitMix64(seed + label).shuffle(c)
        rows += [(s, label) for _, s in c[:per_class]]
    SplitMix64(seed).shuffle(rows)
    tmp = out_dir + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for i, (s, label) in enumerate(rows):
        split = "test" if i >= len(rows) - n_test else "train"
        d = os.path.join(tmp, "aclImdb", split, "pos" if label else "neg")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"{i}_{10 if label else 0}.txt"), "wb") as f:
            f.write(s)
    with open(os.path.join(tmp, "DONE"), "w") as f:
        f.write(f"derived from {os.path.basename(imdb_path)}: last sentence of 6-40 words; "
                f"{per_class} per class, seed {seed}, {n_test} test\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return out_dir


# ---------------------------------------------------------------- the embedding (export_v2 pattern)

def random_like_table(rows, dim, seed):
    """`TextEmbedding::random_like`: splitmix64 from `seed ^ G`, ((z >> 40) / 2^24 - 0.5) * 0.1."""
    n = rows * dim
    with np.errstate(over="ignore"):
        s0 = np.uint64((seed ^ G) & MASK)
        st = s0 + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(G)
        z = st
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float32) / np.float32(1 << 24)
    return ((u - np.float32(0.5)) * np.float32(0.1)).reshape(rows, dim)


def rust_glorot(seed, dim, hidden):
    """`Classifier::new`: splitmix64(seed + 1), dense kernel then output kernel, biases zero."""
    r = SplitMix64(seed + 1)

    def draw(fan_in, fan_out):
        lim = np.float32(np.sqrt(6.0 / (fan_in + fan_out)))
        v = [(np.float32((r.next() >> 40) / float(1 << 24)) * 2 - 1) * lim for _ in range(fan_in * fan_out)]
        return np.array(v, dtype=np.float32).reshape(fan_in, fan_out)

    return draw(dim, hidden), draw(hidden, 1)


def export_embedding(vocab, table, out_dir):
    tmp = tempfile.mkdtemp()
    vpath = os.path.join(tmp, "tokens.txt")
    with open(vpath, "wb") as f:
        f.write(b"".join(t + b"\n" for t in vocab))
    shutil.rmtree(out_dir, ignore_errors=True)
    tf.saved_model.save(TextEmbeddingModel(vpath, table, 1), out_dir)
    return out_dir


# ---------------------------------------------------------------- optimizers

class LazyAdam(tf_keras.optimizers.Adam):
    """Adam whose moments and step only touch the rows a sparse gradient names (LazyAdam)."""

    def update_step(self, gradient, variable):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        lr = tf.cast(self.learning_rate, variable.dtype)
        t = tf.cast(self.iterations + 1, variable.dtype)
        alpha = lr * tf.sqrt(1 - tf.pow(tf.cast(self.beta_2, variable.dtype), t)) / (
            1 - tf.pow(tf.cast(self.beta_1, variable.dtype), t))
        key = self._var_key(variable)
        m = self._momentums[self._index_dict[key]]
        v = self._velocities[self._index_dict[key]]
        idx, g = gradient.indices, gradient.values
        m_rows = tf.gather(m, idx) * self.beta_1 + g * (1 - self.beta_1)
        v_rows = tf.gather(v, idx) * self.beta_2 + tf.square(g) * (1 - self.beta_2)
        m.scatter_update(tf.IndexedSlices(m_rows, idx))
        v.scatter_update(tf.IndexedSlices(v_rows, idx))
        variable.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon), idx))


class NoDedupAdam(tf_keras.optimizers.Adam):
    """tf_keras' Adam without merging a sparse gradient's repeated rows first: `v` then gets the sum
    of each occurrence's squared gradient instead of the square of their sum (what Keras 3's Adam
    does with the IndexedSlices of a bare gather)."""

    def _deduplicate_sparse_grad(self, grads):
        return grads


def make_optimizer(name):
    if name == "adam":
        return tf_keras.optimizers.Adam(1e-3)
    if name == "legacy":
        return tf_keras.optimizers.legacy.Adam(1e-3)
    if name == "lazy":
        return LazyAdam(1e-3)
    if name == "nodedup":
        return NoDedupAdam(1e-3)
    raise SystemExit(f"unknown --optimizer {name}")


# ---------------------------------------------------------------- one run

def load_split(data, validation, seed):
    train, test = read_imdb(data)
    if validation >= len(train):
        raise SystemExit(f"--validation {validation} leaves no training examples ({len(train)})")
    order = list(range(len(train)))
    SplitMix64(seed).shuffle(order)
    n_train = len(train) - validation
    return [train[i] for i in order[:n_train]], [train[i] for i in order[n_train:]], test


def run_keras(args, data, seed, workdir):
    tr, va, te = load_split(data, args.validation, seed)
    if args.embedding:
        emb_dir = args.embedding
    else:
        vocab = build_vocab([r[1] for r in tr], args.vocab_size)
        table = random_like_table(len(vocab) + 1, args.dim, seed)
        if args.table_dtype == "float64":
            table = table.astype(np.float64)
        emb_dir = export_embedding(vocab, table, os.path.join(workdir, f"embedding_{seed}"))

    def ds(rows, shuffle):
        d = tf.data.Dataset.from_tensor_slices(([r[1] for r in rows], np.array([r[2] for r in rows], np.float32)))
        if shuffle:
            d = d.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
        return d.batch(args.batch_size).prefetch(2)

    tf_keras.utils.set_random_seed(seed)
    model = tf_keras.Sequential([
        hub.KerasLayer(emb_dir, input_shape=[], dtype=tf.string, trainable=True),
        tf_keras.layers.Dense(16, activation="relu"),
        tf_keras.layers.Dense(1),
    ])
    if args.dense_init == "rust":
        k1, k2 = rust_glorot(seed, args.dim, 16)
        model.layers[1].set_weights([k1, np.zeros(16, np.float32)])
        model.layers[2].set_weights([k2, np.zeros(1, np.float32)])
    model.compile(optimizer=make_optimizer(args.optimizer),
                  loss=tf_keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[tf_keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")])

    class Timer(tf_keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs["seconds"] = time.time() - self.t

    hist = model.fit(ds(tr, True), validation_data=ds(va, False) if va else None, epochs=args.epochs,
                     callbacks=[Timer()], verbose=0)
    logits = model.predict(ds(te, False), verbose=0).reshape(-1)
    y = np.array([r[2] for r in te], np.float32)
    test_loss = float(np.mean(np.maximum(logits, 0) - logits * y + np.log1p(np.exp(-np.abs(logits)))))
    h = hist.history
    epochs = [{k: float(h[k][i]) for k in h} | {"epoch": i + 1} for i in range(len(h["loss"]))]
    secs = [e["seconds"] for e in epochs]
    return {
        "seed": seed, "epochs": epochs, "test_loss": test_loss,
        "test_accuracy": float(np.mean((logits > 0) == (y > 0.5))),
        "tutorial_metric_accuracy": float(np.mean((logits > 0.5) == (y > 0.5))),
        "seconds_per_epoch": float(np.median(secs[1:] if len(secs) > 1 else secs)),
        "first_epoch_seconds": secs[0],
        "train_examples": len(tr), "validation_examples": len(va), "test_examples": len(te),
    }


def run_rust(args, data, seed, workdir):
    out = os.path.join(workdir, f"rust_{seed}")
    source = ["--embedding", args.embedding] if args.embedding else ["--from-scratch"]
    cmd = [args.rust, "--data", data, *source, "--seed", str(seed), "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size), "--validation", str(args.validation), "--out", out, "--force"]
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(os.path.join(out, "metrics.json")) as f:
        m = json.load(f)
    secs = [e.get("train_seconds") or e["seconds"] for e in m["epochs"]]
    return {"seed": seed, "test_loss": m["test_loss"], "test_accuracy": m["test_accuracy"],
            "seconds_per_epoch": float(np.median(secs[1:] if len(secs) > 1 else secs)),
            "total_seconds": time.time() - t0}


def summary(runs):
    acc = [r["test_accuracy"] for r in runs]
    return {"test_accuracy_mean": float(np.mean(acc)), "test_accuracy_std": float(np.std(acc)),
            "test_accuracy": acc, "seconds_per_epoch_mean": float(np.mean([r["seconds_per_epoch"] for r in runs]))}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="imdb")
    p.add_argument("--make-sentences", action="store_true")
    p.add_argument("--imdb", default=IMDB)
    p.add_argument("--seeds", default="42")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--validation", type=int)
    p.add_argument("--vocab-size", type=int, default=20000)
    p.add_argument("--dim", type=int, default=20)
    p.add_argument("--dense-init", choices=["keras", "rust"], default="keras")
    p.add_argument("--optimizer", choices=["adam", "legacy", "lazy", "nodedup"], default="adam")
    p.add_argument("--table-dtype", choices=["float32", "float64"], default="float32")
    p.add_argument("--embedding", help="a text-embedding SavedModel (export_v2 pattern) for both, instead of the from-scratch table")
    p.add_argument("--rust", help="train-imdb binary to run beside Keras")
    p.add_argument("--out")
    args = p.parse_args()
    if args.make_sentences:
        print(make_sentences(args.imdb, SENTENCES_DIR))
        return
    if args.dataset == "imdb":
        data, name = args.imdb, "imdb"
    elif args.dataset == "sentences":
        data, name = make_sentences(args.imdb, SENTENCES_DIR), "sentences"
    elif args.dataset.startswith("folder:"):
        data, name = args.dataset[len("folder:"):], "folder"
    else:
        raise SystemExit(f"unknown --dataset {args.dataset}")
    if args.validation is None:
        args.validation = 10000 if name == "imdb" else 0
    out = args.out or os.path.join(ROOT, "tools", "out", f"keras_text_classifier_{name}.json")
    seeds = [int(s) for s in args.seeds.split(",")]
    workdir = tempfile.mkdtemp(prefix="keras_text_classifier_")
    doc = {"dataset": args.dataset, "data": os.path.abspath(data), "epochs": args.epochs,
           "batch_size": args.batch_size, "validation": args.validation, "dense_init": args.dense_init,
           "optimizer": args.optimizer, "embedding": args.embedding, "table_dtype": args.table_dtype,
           "tf_version": tf.__version__, "tf_keras_version": tf_keras.__version__,
           "tensorflow_hub_version": hub.__version__, "keras": [], "rust": []}
    try:
        for seed in seeds:
            k = run_keras(args, data, seed, workdir)
            doc["keras"].append(k)
            print(json.dumps({"keras": {x: k[x] for x in ("seed", "test_accuracy", "tutorial_metric_accuracy",
                                                           "test_loss", "seconds_per_epoch")}}), flush=True)
            if args.rust:
                r = run_rust(args, data, seed, workdir)
                doc["rust"].append(r)
                print(json.dumps({"rust": r}), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    doc["keras_summary"] = summary(doc["keras"])
    if doc["rust"]:
        doc["rust_summary"] = summary(doc["rust"])
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".tmp", "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(out + ".tmp", out)
    print(json.dumps({k: v for k, v in doc.items() if k.endswith("summary")}))
    print(out)


if __name__ == "__main__":
    main()
