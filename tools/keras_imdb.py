"""Keras reference for `train-imdb` (TF 2.21 / Keras 3, no tensorflow_hub needed).

The model is the TF tutorial's: text embedding (sqrtn bag over the hub module's tokenization,
written as a Keras layer over padded ids) -> Dense(16, relu) -> Dense(1) logits,
BinaryCrossentropy(from_logits=True), Adam(1e-3, epsilon=1e-7).

Usage:
  tools/.venv/bin/python tools/keras_imdb.py --fixture [OUT_JSON]
      One Adam step on one small batch from fixed initial weights; writes
      (default) tests/fixtures/text_embedding/keras_adam_step.json:
      {"vocab": tokens.txt text, "oov_buckets", "dim", "hidden", "sentences": [hex],
       "labels", "ids": [[...]] (TF's lookup), "initial": {"table", "dense_kernel", "dense_bias",
       "out_kernel", "out_bias"} (row-major lists), "logits", "loss",
       "updated": {same keys, after one Keras Adam step}, "steps": 2 (the fixture holds two
       successive steps: "loss_2", "updated_2" after the second one on the same batch)}.
  tools/.venv/bin/python tools/keras_imdb.py --bench --data ../shared/data/aclImdb_v1_labeled.tar.gz
      [--epochs 20] [--batch-size 512] [--validation 10000] [--seed 42] [--out tools/out/keras_imdb_bench.json]
      From-scratch training on the same split and vocabulary as `train-imdb --from-scratch`
      (paths sorted, splitmix64 Fisher-Yates shuffle with the seed, last --validation reviews held out;
      the 20,000 most frequent training tokens, ties by bytes, + 1 OOV bucket, 20 dims), with
      model.fit; prints and writes per-epoch loss/accuracy/val_loss/val_accuracy/seconds and the
      test loss/accuracy.
"""

import argparse
import json
import os
import sys
import tarfile
import time
from collections import Counter

import numpy as np
import tensorflow as tf
import keras

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.s = seed & MASK

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def shuffle(self, v):
        for i in range(len(v) - 1, 0, -1):
            j = self.next() % (i + 1)
            v[i], v[j] = v[j], v[i]


def tokenize(texts):
    """The hub module's preprocessing: regex_replace(\\pP) then split on ' ' (empty tokens kept)."""
    norm = tf.strings.regex_replace(tf.constant(texts), r"\pP", "")
    return tf.strings.split(norm, " ")


def lookup(vocab_path, oov, ragged_tokens):
    table = tf.lookup.StaticVocabularyTable(
        tf.lookup.TextFileInitializer(vocab_path, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                                      tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER), oov)
    return tf.ragged.map_flat_values(table.lookup, ragged_tokens)


class SqrtnBag(keras.layers.Layer):
    """safe_embedding_lookup_sparse(combiner="sqrtn") over padded ids (-1 = padding), dense gradient."""

    def __init__(self, table, **kw):
        super().__init__(**kw)
        self.table = self.add_weight(shape=table.shape, initializer=keras.initializers.Constant(table),
                                     name="embeddings", trainable=True)

    def call(self, ids):
        mask = tf.cast(ids >= 0, self.table.dtype)
        # `* 1.0` makes the table's gradient dense: with the IndexedSlices a bare gather gives,
        # Keras 3's Adam squares each occurrence's gradient separately (sum of squares instead of
        # square of the sum for a repeated token), which is not the Adam update.
        emb = tf.gather(tf.convert_to_tensor(self.table) * 1.0, tf.maximum(ids, 0)) * mask[..., None]
        n = tf.reduce_sum(mask, axis=1, keepdims=True)
        return tf.reduce_sum(emb, axis=1) / tf.sqrt(tf.maximum(n, 1.0))


def build_model(table, dense_kernel=None, dense_bias=None, out_kernel=None, out_bias=None, hidden=16):
    ids = keras.Input(shape=(None,), dtype="int64")
    x = SqrtnBag(table)(ids)
    d1 = keras.layers.Dense(hidden, activation="relu")
    d2 = keras.layers.Dense(1)
    out = d2(d1(x))
    model = keras.Model(ids, out)
    if dense_kernel is not None:
        d1.set_weights([dense_kernel, dense_bias])
        d2.set_weights([out_kernel, out_bias])
    return model, d1, d2


def pad(rows):
    L = max(1, max(len(r) for r in rows))
    out = np.full((len(rows), L), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


def fixture(out_path):
    vocab = ["cat", "is", "on", "the", "mat", "good", "bad", "movie", "great", "awful"]
    oov, dim, hidden = 1, 4, 16
    rng = np.random.default_rng(7)
    table = rng.uniform(-0.05, 0.05, size=(len(vocab) + oov, dim)).astype(np.float32)
    lim1 = np.sqrt(6 / (dim + hidden))
    dk = rng.uniform(-lim1, lim1, size=(dim, hidden)).astype(np.float32)
    db = rng.uniform(-0.1, 0.1, size=(hidden,)).astype(np.float32)
    lim2 = np.sqrt(6 / (hidden + 1))
    ok = rng.uniform(-lim2, lim2, size=(hidden, 1)).astype(np.float32)
    ob = np.array([0.05], dtype=np.float32)
    sentences = [b"a great movie", b"bad, bad movie!", b"the cat is on the mat", b"", b"awful  awful",
                 b"good great good", b"zebra movie", b"movie"]
    labels = np.array([1, 0, 1, 0, 0, 1, 0, 1], dtype=np.float32)
    import tempfile
    tmp = tempfile.mkdtemp()
    vpath = os.path.join(tmp, "tokens.txt")
    with open(vpath, "w") as f:
        f.write("\n".join(vocab) + "\n")
    ids = lookup(vpath, oov, tokenize(sentences))
    rows = [list(map(int, r)) for r in ids.to_list()]
    model, d1, d2 = build_model(table, dk, db, ok, ob, hidden)
    opt = keras.optimizers.Adam(learning_rate=1e-3, epsilon=1e-7)
    lossf = keras.losses.BinaryCrossentropy(from_logits=True)
    x = tf.constant(pad(rows))
    y = tf.constant(labels[:, None])
    results = {}
    for step in (1, 2):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = lossf(y, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        w = {v.path: v.numpy() for v in model.trainable_variables}
        bag = [v for v in model.trainable_variables if "embeddings" in v.path][0].numpy()
        k1, b1 = d1.get_weights()
        k2, b2 = d2.get_weights()
        results[step] = (float(loss.numpy()), logits.numpy().reshape(-1).tolist(),
                         {"table": bag, "dense_kernel": k1, "dense_bias": b1, "out_kernel": k2, "out_bias": b2})
    flat = lambda d: {k: [float(v) for v in np.asarray(a, dtype=np.float64).reshape(-1)] for k, a in d.items()}
    doc = {
        "vocab": "\n".join(vocab) + "\n", "oov_buckets": oov, "dim": dim, "hidden": hidden,
        "sentences": [s.hex() for s in sentences], "labels": labels.tolist(), "ids": rows,
        "initial": flat({"table": table, "dense_kernel": dk, "dense_bias": db, "out_kernel": ok, "out_bias": ob}),
        "logits": results[1][1], "loss": results[1][0], "updated": flat(results[1][2]),
        "loss_2": results[2][0], "updated_2": flat(results[2][2]),
        "keras_version": keras.__version__, "tf_version": tf.__version__,
    }
    with open(out_path + ".tmp", "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(out_path + ".tmp", out_path)
    print(out_path, "loss", results[1][0], results[2][0])


def read_imdb(path):
    train, test = [], []
    if os.path.isdir(path):
        root = os.path.join(path, "aclImdb") if os.path.isdir(os.path.join(path, "aclImdb")) else path
        for split in ("train", "test"):
            for label in ("pos", "neg"):
                d = os.path.join(root, split, label)
                for name in os.listdir(d):
                    if name.endswith(".txt"):
                        with open(os.path.join(d, name), "rb") as f:
                            (train if split == "train" else test).append((f"{split}/{label}/{name}", f.read(), int(label == "pos")))
    else:
        with tarfile.open(path) as tar:
            for m in tar:
                parts = [p for p in m.name.split("/") if p]
                if not m.isfile() or len(parts) < 3 or not parts[-1].endswith(".txt"):
                    continue
                split, label, name = parts[-3], parts[-2], parts[-1]
                if split not in ("train", "test") or label not in ("pos", "neg"):
                    continue
                data = tar.extractfile(m).read()
                (train if split == "train" else test).append((f"{split}/{label}/{name}", data, int(label == "pos")))
    # Rust sorts by the path's bytes (String::cmp); identical to Python's str order for ASCII
    train.sort(key=lambda r: r[0].encode())
    test.sort(key=lambda r: r[0].encode())
    return train, test


def build_vocab(texts, size):
    counts = Counter()
    for chunk in range(0, len(texts), 2000):
        toks = tokenize(texts[chunk:chunk + 2000]).flat_values.numpy()
        counts.update(t for t in toks.tolist() if t and b"\n" not in t and not t.endswith(b"\r"))
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]
    return [t for t, _ in items]


def bench(args):
    t0 = time.time()
    train, test = read_imdb(args.data)
    order = list(range(len(train)))
    SplitMix64(args.seed).shuffle(order)
    n_train = len(train) - args.validation
    tr = [train[i] for i in order[:n_train]]
    va = [train[i] for i in order[n_train:]]
    vocab = build_vocab([r[1] for r in tr], args.vocab_size)
    import tempfile
    vpath = os.path.join(tempfile.mkdtemp(), "tokens.txt")
    with open(vpath, "wb") as f:
        f.write(b"".join(t + b"\n" for t in vocab))

    def encode(rows):
        ids = lookup(vpath, 1, tokenize([r[1] for r in rows]))
        return ids, np.array([r[2] for r in rows], dtype=np.float32)

    def dataset(rows, shuffle):
        ids, labels = encode(rows)
        ds = tf.data.Dataset.from_tensor_slices((ids, labels[:, None]))
        if shuffle:
            ds = ds.shuffle(len(rows), seed=args.seed, reshuffle_each_iteration=True)
        ds = ds.ragged_batch(args.batch_size).map(lambda x, y: (x.to_tensor(default_value=-1), y))
        return ds.prefetch(2)

    train_ds, val_ds, test_ds = dataset(tr, True), dataset(va, False), dataset(test, False)
    prep = time.time() - t0
    keras.utils.set_random_seed(args.seed)
    table = np.random.default_rng(args.seed).uniform(-0.05, 0.05, size=(len(vocab) + 1, args.dim)).astype(np.float32)
    model, _, _ = build_model(table)
    model.compile(optimizer=keras.optimizers.Adam(1e-3, epsilon=1e-7),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")])

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.time()

        def on_epoch_end(self, epoch, logs=None):
            logs["seconds"] = time.time() - self.t

    hist = model.fit(train_ds, validation_data=val_ds, epochs=args.epochs, callbacks=[Timer()], verbose=2)
    test_loss, test_acc = model.evaluate(test_ds, verbose=0)
    h = hist.history
    doc = {
        "epochs": [{"epoch": i + 1, "loss": h["loss"][i], "accuracy": h["accuracy"][i], "val_loss": h["val_loss"][i],
                    "val_accuracy": h["val_accuracy"][i], "seconds": h["seconds"][i]} for i in range(args.epochs)],
        "test_loss": float(test_loss), "test_accuracy": float(test_acc), "train_examples": len(tr),
        "validation_examples": len(va), "test_examples": len(test), "prep_seconds": prep,
        "total_seconds": time.time() - t0, "tf_version": tf.__version__, "keras_version": keras.__version__,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".tmp", "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(args.out + ".tmp", args.out)
    print(json.dumps({k: v for k, v in doc.items() if k != "epochs"}))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--fixture", nargs="?", const=os.path.join(ROOT, "tests", "fixtures", "text_embedding", "keras_adam_step.json"))
    p.add_argument("--bench", action="store_true")
    p.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "aclImdb_v1_labeled.tar.gz"))
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--validation", type=int, default=10000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--vocab-size", type=int, default=20000)
    p.add_argument("--dim", type=int, default=20)
    p.add_argument("--out", default=os.path.join(ROOT, "tools", "out", "keras_imdb_bench.json"))
    args = p.parse_args()
    if args.fixture:
        fixture(args.fixture)
    if args.bench:
        bench(args)
    if not args.fixture and not args.bench:
        p.print_help()


if __name__ == "__main__":
    main()
