"""TensorFlow reference fixtures for running TF-Hub text-embedding SavedModels through the graph executor.

Usage:  tools/.venv/bin/python tools/make_text_graph_fixtures.py [OUT_DIR]
        (default OUT_DIR: tests/fixtures/text_graph)

Every variant is a TF2 SavedModel written like tensorflow/hub `examples/text_embeddings_v2/export_v2.py`
(tf.saved_model.save of a tf.train.Checkpoint subclass; `__call__` and `_tokenize` are tf.functions with
input_signature [None] string; a `tokens.txt` asset; index_table_from_file + FastHashSpec OOV buckets;
`embeddings` plus `variables` / `trainable_variables`; no serving signature), with a small vocabulary and a
seeded random table (uniform -1..1, OOV rows included). What each one mirrors:

  nnlm_f32_oov1_d50        google/nnlm-en-dim50/2 (and nnlm-en-dim128/2): tfhub.dev's model doc
                           (tensorflow/tfhub.dev assets/docs/google/models/nnlm-en-dim50/2.md) says "The module
                           preprocesses its input by splitting on spaces" (no punctuation removal; the
                           -with-normalization docs are the ones that add it), OOV "replaced by hash buckets",
                           `sqrtn` combiner. So: no regex, StringSplitV2 " " (empty tokens kept), sqrtn. float32.
  nnlm_norm_f64_oov3_d128  google/nnlm-en-dim128-with-normalization/2 (and nnlm-en-dim50-with-normalization/2):
                           the doc says "removing punctuation and splitting on spaces"; export_v2.py spells that
                           `regex_replace(x, "\\pP", "")` + `tf.strings.split(x, " ")`. float64 table (what
                           export_v2.py's np.array gives).
  swivel_f32_oov1_d20      google/tf2-preview/gnews-swivel-20dim/1: 20 dims, "20,000 tokens and 1 out of
                           vocabulary bucket", sqrtn (tfhub.dev assets/docs/google/models/tf2-preview/
                           gnews-swivel-20dim/1.md); tokenization as export_v2.py writes it (`\\pP` removal,
                           split on " "), which is what the hand-written `models::text_embedding` implements.
                           (That doc only says "splitting on spaces"; export_v2.py always removes `\\pP`.)
  swivel_v1split_f32_oov1_d20  the same with TF1's `StringSplit` (tf.compat.v1.string_split, empty tokens
                           dropped), as tensorflow/hub examples/text_embeddings/export.py (TF1 hub format) does.
  wiki_f64_oov5_d16        google/Wiki-words-250-with-normalization/2 (doc: "removing punctuation and splitting
                           on spaces", sqrtn; the real module has 1 OOV bucket initialised with zeros, see
                           assets/docs/google/models/Wiki-words-250{,-with-normalization}/2.md). Here 5 random
                           OOV rows, so a wrong hash bucket shows. float64.
  dev_regex_digits / dev_mean / dev_sum / dev_lower / dev_dense
                           swivel_f32_oov1_d20 with one change each, which a hand-written Swivel path must NOT
                           claim: regex `\\pP|[0-9]`; combiner "mean"; combiner "sum"; tf.strings.lower
                           (encoding "", ASCII only: the StringLower default) before the regex; a DAN-style head
                           after the bag (dense1: Dense(8, relu), dense2: Dense(4), as tf.Variables
                           `dense1/kernel`, `dense1/bias`, ... with tf.matmul + tf.nn.bias_add + tf.nn.relu).
  dan_v1split              a DAN-style sentence encoder that tokenizes as Universal Sentence Encoder v4 does, with
                           the TF1 op `StringSplit` (tf.compat.v1.string_split(x, " "), empty tokens dropped)
                           inside a TF2 `__call__` (no punctuation removal), then the sqrtn bag and
                           dense1: Dense(12, tanh), dense2: Dense(6, relu). float32.

Writes, under OUT_DIR: one SavedModel folder per variant, and
  expected.json  {"sentences": [hex of the input bytes...],
                  "<variant>": {"dtype" (table), "output_dtype", "vocab_size", "oov_buckets", "dim", "out_dim",
                                "pattern" (regex or null), "combiner", "lowercase", "split" ("v2_keep_empty" |
                                "v1_skip_empty"), "layers" ([[name, activation or null]...]),
                                "hand_written_equivalent" (models::text_embedding computes exactly this graph:
                                `\\pP` removal or none, either split, sqrtn, no lowercasing, no layers),
                                "ids" (bag variants: per-sentence token ids as TF's lookup gives them, the ""
                                that fills an empty row included), "outputs" (TF's outputs per sentence as
                                float64 numbers), "empty_batch_shape", "op_types" (graph and its functions)}}
The tables live in the SavedModels' variables only.

The sentences: make_text_embedding_fixture.py's 40, digits and upper case, and long rows (~1,000, ~3,000 and
~6,000 space-separated tokens drawn from the vocabulary, OOV words, punctuation and double spaces; 4,000
identical tokens), on which float32 results depend on the summation order (the script prints by how much).
"""

import json
import os
import shutil
import sys
import tempfile

import numpy as np
import tensorflow as tf
from make_text_embedding_fixture import make_table, op_types
from tensorflow.python.ops import lookup_ops

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
args = [a for a in sys.argv[1:] if not a.startswith("--")]
OUT = args[0] if args else os.path.join(ROOT, "tests", "fixtures", "text_graph")

VOCAB = ["cat", "is", "on", "the", "mat", "Hello", "world", "dog", "café", "naïve", "日本", "a$b", "CAT", "Cat",
         "x" * 70, "room", "101", "3", "cats", "B2B", "2024", "COVID19", "covid", "Über", "straße", "HELLO",
         "quick", "brown", "fox", "jumps", "over", "lazy", "dont", "hello", "42nd", "naïveté"]
OOV_WORDS = ["zebra", "qwerty", "tok123", "ÄÖÜ", "Zebra", "UNKNOWN", "7", "x" * 65, "日本語"]
PUNCT = [",", ".", "!", "?", "'s", "—", "…", "(", ")", "\"", "-", "«", "»"]

BASE_SENTENCES = [
    b"cat is on the mat", b"cat  is", b" cat", b"cat ", b"  leading double", b"trailing double  ",
    b"", b" ", b"   ", b"!!!", b"Hello, world.", b"hello", b"cat\tis", b"cat\nis", b"cat\xc2\xa0is",
    b"cat-dog", b"cat_dog", b"don't", b"a$b", "¿cat?".encode(), "“cat”".encode(), "cat — dog…".encode(),
    "«café» naïve·".encode(), "日本、。".encode(), b"cat zebra", b"CAT Cat cat", b"cat cat cat",
    b"a\xffb,", b"\xff", b"\xc3", b"\xe2\x80", b"\xe2\x80(cat)", b"\xc0\xae", b"\xed\xa0\x80 dog",
    b"x" * 70, b"y" * 70 + b" " + b"z" * 17 + b" " + b"w" * 40, b"the quick brown fox jumps over the lazy dog",
    b"$ + < = > ^ ` | ~", b"#%&*@[]{}\\/", b"the,the.the;the",
]
EXTRA_SENTENCES = [
    b"room 101", b"3 cats", b"B2B in 2024", b"COVID-19 covid 19", b"the 42nd room", b"101", b"3",
    b"HELLO WORLD", b"Hello HELLO hello", "Über STRASSE straße".encode(), "NAÏVE Café".encode(),
    b"CAT IS ON THE MAT", b"0 1 2 3 4 5 6 7 8 9", "x１２３ ٣".encode(),
]


def long_sentence(n_tokens, seed):
    rng = np.random.default_rng(seed)
    words = []
    for _ in range(n_tokens):
        r = rng.random()
        if r < 0.70:
            w = VOCAB[rng.integers(len(VOCAB))]
        elif r < 0.85:
            w = OOV_WORDS[rng.integers(len(OOV_WORDS))]
        elif r < 0.95:
            w = VOCAB[rng.integers(len(VOCAB))] + PUNCT[rng.integers(len(PUNCT))]
        else:
            w = PUNCT[rng.integers(len(PUNCT))]
        words.append(w)
    out = words[0]
    for w in words[1:]:
        out += ("  " if rng.random() < 0.05 else " ") + w
    return out.encode()


LONG_SENTENCES = [long_sentence(1000, 11), long_sentence(3000, 12), long_sentence(6000, 13),
                  b" ".join([b"cat"] * 4000)]
SENTENCES = BASE_SENTENCES + EXTRA_SENTENCES + LONG_SENTENCES


class Dense(tf.Module):
    """One dense layer as plain variables: y = act(x @ kernel + bias)."""

    def __init__(self, kernel, bias, activation, name):
        super().__init__(name=name)
        self.kernel = tf.Variable(kernel, name="kernel")
        self.bias = tf.Variable(bias, name="bias")
        self.activation = activation

    def __call__(self, x):
        y = tf.nn.bias_add(tf.matmul(x, self.kernel), self.bias)
        if self.activation == "relu":
            return tf.nn.relu(y)
        if self.activation == "tanh":
            return tf.math.tanh(y)
        return y


class TextGraphModel(tf.train.Checkpoint):
    """examples/text_embeddings_v2/export_v2.py's TextEmbeddingModel, with the preprocessing, the combiner
    and an optional dense head as parameters (vectors given in memory)."""

    def __init__(self, vocab_file, vectors, oov_buckets, pattern, lowercase, split, combiner, layers):
        super().__init__()
        self._pattern, self._lowercase, self._split, self._combiner = pattern, lowercase, split, combiner
        self._vocabulary_file = tf.saved_model.Asset(vocab_file)
        self._table = lookup_ops.index_table_from_file(
            vocabulary_file=self._vocabulary_file, num_oov_buckets=oov_buckets,
            hasher_spec=lookup_ops.FastHashSpec)
        self.embeddings = tf.Variable(vectors)
        self._layer_names = []
        variables = [self.embeddings]
        for name, kernel, bias, act in layers:
            layer = Dense(kernel, bias, act, name)
            setattr(self, name, layer)
            self._layer_names.append(name)
            variables += [layer.kernel, layer.bias]
        self.variables = variables
        self.trainable_variables = self.variables

    @tf.function(input_signature=[tf.TensorSpec([None], tf.dtypes.string)])
    def _tokenize(self, sentences):
        normalized = sentences
        if self._lowercase:
            normalized = tf.strings.lower(normalized)
        if self._pattern is not None:
            normalized = tf.strings.regex_replace(input=normalized, pattern=self._pattern, rewrite="")
        normalized = tf.reshape(normalized, [-1])
        if self._split == "v2_keep_empty":
            sparse_tokens = tf.strings.split(normalized, " ").to_sparse()
        else:
            sparse_tokens = tf.compat.v1.string_split(normalized, " ")
        sparse_tokens, _ = tf.sparse.fill_empty_rows(sparse_tokens, tf.constant(""))
        sparse_tokens = tf.sparse.reset_shape(sparse_tokens)
        sparse_token_ids = self._table.lookup(sparse_tokens.values)
        return (sparse_tokens.indices, sparse_token_ids, sparse_tokens.dense_shape)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.dtypes.string)])
    def __call__(self, sentences):
        token_ids, token_values, token_dense_shape = self._tokenize(sentences)
        x = tf.nn.safe_embedding_lookup_sparse(
            embedding_weights=self.embeddings,
            sparse_ids=tf.SparseTensor(token_ids, token_values, token_dense_shape),
            sparse_weights=None, combiner=self._combiner)
        for name in self._layer_names:
            x = getattr(self, name)(x)
        return x


def ids_per_sentence(indices, values, n):
    rows = [[] for _ in range(n)]
    for (r, _), v in zip(indices.tolist(), values.tolist()):
        rows[r].append(int(v))
    return rows


def recompute_f64(table, ids, combiner, layers):
    """numpy float64 recomputation from TF's ids (the table's values, widened)."""
    t = table.astype(np.float64)
    out = []
    for row in ids:
        s = t[row].sum(axis=0)
        if combiner == "sqrtn":
            s = s / np.sqrt(len(row))
        elif combiner == "mean":
            s = s / len(row)
        out.append(s)
    x = np.array(out)
    for _, kernel, bias, act in layers:
        x = x @ kernel.astype(np.float64) + bias.astype(np.float64)
        if act == "relu":
            x = np.maximum(x, 0.0)
        elif act == "tanh":
            x = np.tanh(x)
    return x


def make_layers(sizes, dtype, seed):
    """[(name, kernel, bias, activation)] for dense1, dense2, ... (Glorot-like uniform, seeded)."""
    rng = np.random.default_rng(seed)
    layers = []
    for i, (n_in, n_out, act) in enumerate(sizes):
        lim = np.sqrt(6.0 / (n_in + n_out))
        layers.append((f"dense{i + 1}", rng.uniform(-lim, lim, size=(n_in, n_out)).astype(dtype),
                       rng.uniform(-0.1, 0.1, size=(n_out,)).astype(dtype), act))
    return layers


VARIANTS = {
    # name: (table dtype, oov, dim, pattern, lowercase, split, combiner, layer sizes, seed)
    "nnlm_f32_oov1_d50": (np.float32, 1, 50, None, False, "v2_keep_empty", "sqrtn", [], 1),
    "nnlm_norm_f64_oov3_d128": (np.float64, 3, 128, r"\pP", False, "v2_keep_empty", "sqrtn", [], 2),
    "swivel_f32_oov1_d20": (np.float32, 1, 20, r"\pP", False, "v2_keep_empty", "sqrtn", [], 3),
    "swivel_v1split_f32_oov1_d20": (np.float32, 1, 20, r"\pP", False, "v1_skip_empty", "sqrtn", [], 3),
    "wiki_f64_oov5_d16": (np.float64, 5, 16, r"\pP", False, "v2_keep_empty", "sqrtn", [], 4),
    "dev_regex_digits": (np.float32, 1, 20, r"\pP|[0-9]", False, "v2_keep_empty", "sqrtn", [], 3),
    "dev_mean": (np.float32, 1, 20, r"\pP", False, "v2_keep_empty", "mean", [], 3),
    "dev_sum": (np.float32, 1, 20, r"\pP", False, "v2_keep_empty", "sum", [], 3),
    "dev_lower": (np.float32, 1, 20, r"\pP", True, "v2_keep_empty", "sqrtn", [], 3),
    "dev_dense": (np.float32, 1, 20, r"\pP", False, "v2_keep_empty", "sqrtn", [(20, 8, "relu"), (8, 4, None)], 3),
    "dan_v1split": (np.float32, 2, 24, None, False, "v1_skip_empty", "sqrtn", [(24, 12, "tanh"), (12, 6, "relu")], 5),
}


def write_vocab(tmp):
    path = os.path.join(tmp, "tokens.txt")
    with open(path, "wb") as f:
        f.write(("\n".join(VOCAB) + "\n").encode())  # export_v2.py writes entry + "\n" per line
    return path


def export(name, dtype, oov, dim, pattern, lowercase, split, combiner, sizes, seed):
    table = make_table(len(VOCAB) + oov, dim, dtype, seed)
    layers = make_layers(sizes, dtype, 100 + seed)
    module = TextGraphModel(write_vocab(tempfile.mkdtemp()), table, oov, pattern, lowercase, split, combiner,
                            layers)
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    tf.saved_model.save(module, path)
    loaded = tf.saved_model.load(path)
    out = loaded(tf.constant(SENTENCES)).numpy()
    empty = loaded(tf.constant([], dtype=tf.string)).numpy()
    idx, ids, _ = loaded._tokenize(tf.constant(SENTENCES))
    ids = ids_per_sentence(idx.numpy(), ids.numpy(), len(SENTENCES))
    assert out.dtype == np.dtype(dtype), (name, out.dtype)
    ref = recompute_f64(table, ids, combiner, layers)
    hand_written = (pattern in (r"\pP", None) and not lowercase and combiner == "sqrtn" and not layers)
    info = {
        "dtype": str(np.dtype(dtype)), "output_dtype": str(out.dtype), "vocab_size": len(VOCAB),
        "oov_buckets": oov, "dim": dim, "out_dim": int(out.shape[1]), "pattern": pattern, "combiner": combiner,
        "lowercase": lowercase, "split": split, "layers": [[l[0], l[3]] for l in layers],
        "hand_written_equivalent": hand_written,
    }
    if not layers:
        info["ids"] = ids
    info.update({"outputs": [[float(x) for x in row] for row in out.astype(np.float64)],
                 "empty_batch_shape": list(empty.shape), "op_types": op_types(path)})
    diff = np.abs(out.astype(np.float64) - ref)
    n_long = len(LONG_SENTENCES)
    print(f"{name}: out {out.shape} {out.dtype}, empty {empty.shape}, max |TF - f64 recompute| "
          f"all rows {diff.max():.3e}, long rows {diff[-n_long:].max():.3e} "
          f"(per long row {', '.join(f'{d:.2e}' for d in diff[-n_long:].max(axis=1))})")
    return info


def main():
    os.makedirs(OUT, exist_ok=True)
    for s in LONG_SENTENCES:
        print(f"long sentence: {len(s.split(b' '))} space-separated pieces, {len(s)} bytes")
    expected = {"sentences": [s.hex() for s in SENTENCES]}
    for name, spec in VARIANTS.items():
        expected[name] = export(name, *spec)
    for name, info in expected.items():
        if name != "sentences":
            print(name, info["op_types"])
    with open(os.path.join(OUT, "expected.json.tmp"), "w") as f:
        f.write("{\n")
        items = list(expected.items())
        for i, (k, v) in enumerate(items):
            f.write(json.dumps(k) + ": " + json.dumps(v, separators=(",", ":")) + (",\n" if i + 1 < len(items)
                                                                                   else "\n"))
        f.write("}\n")
    os.replace(os.path.join(OUT, "expected.json.tmp"), os.path.join(OUT, "expected.json"))


if __name__ == "__main__":
    main()
