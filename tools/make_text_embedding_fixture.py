"""TensorFlow reference fixtures for the Swivel-style text embedding (`models::text_embedding`).

Usage:  tools/.venv/bin/python tools/make_text_embedding_fixture.py [OUT_DIR]
        (default OUT_DIR: tests/fixtures/text_embedding)

Writes, under OUT_DIR:
  tf2_f64_oov3/   SavedModel exported exactly like tensorflow/hub examples/text_embeddings_v2/export_v2.py
                  (tf.saved_model.save of a tf.train.Checkpoint subclass; float64 table as np.array gives;
                  `\\pP` removal, tf.strings.split(x, " ") keeping empty tokens, fill_empty_rows with "",
                  index_table_from_file + FastHashSpec, safe_embedding_lookup_sparse(sqrtn)), 3 OOV buckets.
  tf2_f32_oov1/   The same pattern with a float32 table and 1 OOV bucket (the gnews-swivel-20dim shape).
  tf1_f32_oov2/   The TF1 hub pattern (examples/text_embeddings/export.py): tf.compat.v1 graph,
                  regex_replace + tf.compat.v1.string_split (empty tokens dropped), StaticVocabularyTable,
                  sparse_fill_empty_rows with the id of "", embedding_lookup_sparse(sqrtn); variable
                  `embeddings` (float32), saved with SavedModelBuilder, signature `default`
                  (input `sentences`, output `default`), 2 OOV buckets.
  expected.json   {"sentences": [hex of the input bytes...],
                   "<variant>": {"dtype", "vocab_size", "oov_buckets", "dim", "skip_empty",
                                 "table": row-major table values (float64 numbers),
                                 "ids": [[token ids per sentence, as TF's lookup gives them]],
                                 "outputs": [[TF output per sentence]] (empty-batch output shape in "empty_batch_shape"),
                                 "op_types": sorted op types of the graph and its functions}}
  ../../crates/tf-text/src/punct_table.rs (only with --punct-table): the code point
                  ranges that TF's `regex_replace(x, "\\pP", "")` (RE2) removes, computed by running TF on
                  every Unicode scalar value.

The sentences cover: double, leading and trailing spaces, punctuation-only, Unicode punctuation, tabs,
newlines, NBSP, case, invalid UTF-8, long tokens (> 64 bytes, FarmHash's loop), the empty string.
"""

import json
import os
import shutil
import sys
import tempfile

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.ops import lookup_ops

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
args = [a for a in sys.argv[1:] if not a.startswith("--")]
OUT = args[0] if args else os.path.join(ROOT, "tests", "fixtures", "text_embedding")

VOCAB = ["cat", "is", "on", "the", "mat", "Hello", "world", "dog", "café", "naïve", "日本", "a$b",
         "CAT", "x" * 70]
DIM = 4

SENTENCES = [
    b"cat is on the mat", b"cat  is", b" cat", b"cat ", b"  leading double", b"trailing double  ",
    b"", b" ", b"   ", b"!!!", b"Hello, world.", b"hello", b"cat\tis", b"cat\nis", b"cat\xc2\xa0is",
    b"cat-dog", b"cat_dog", b"don't", b"a$b", "¿cat?".encode(), "“cat”".encode(), "cat — dog…".encode(),
    "«café» naïve·".encode(), "日本、。".encode(), b"cat zebra", b"CAT Cat cat", b"cat cat cat",
    b"a\xffb,", b"\xff", b"\xc3", b"\xe2\x80", b"\xe2\x80(cat)", b"\xc0\xae", b"\xed\xa0\x80 dog",
    b"x" * 70, b"y" * 70 + b" " + b"z" * 17 + b" " + b"w" * 40, b"the quick brown fox jumps over the lazy dog",
    b"$ + < = > ^ ` | ~", b"#%&*@[]{}\\/", b"the,the.the;the",
]


def make_table(rows, dim, dtype, seed):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(rows, dim)).astype(dtype)


def op_types(model_dir):
    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(model_dir, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    mg = sm.meta_graphs[0]
    ops = {n.op for n in mg.graph_def.node}
    for fn in mg.graph_def.library.function:
        ops |= {n.op for n in fn.node_def}
    return sorted(ops)


class TextEmbeddingModel(tf.train.Checkpoint):
    """examples/text_embeddings_v2/export_v2.py, with the vectors given in memory."""

    def __init__(self, vocab_file, vectors, oov_buckets):
        super().__init__()
        self._vocabulary_file = tf.saved_model.Asset(vocab_file)
        self._table = lookup_ops.index_table_from_file(
            vocabulary_file=self._vocabulary_file, num_oov_buckets=oov_buckets,
            hasher_spec=lookup_ops.FastHashSpec)
        self.embeddings = tf.Variable(vectors)
        self.variables = [self.embeddings]
        self.trainable_variables = self.variables

    @tf.function(input_signature=[tf.TensorSpec([None], tf.dtypes.string)])
    def _tokenize(self, sentences):
        normalized = tf.strings.regex_replace(input=sentences, pattern=r"\pP", rewrite="")
        normalized = tf.reshape(normalized, [-1])
        sparse_tokens = tf.strings.split(normalized, " ").to_sparse()
        sparse_tokens, _ = tf.sparse.fill_empty_rows(sparse_tokens, tf.constant(""))
        sparse_tokens = tf.sparse.reset_shape(sparse_tokens)
        sparse_token_ids = self._table.lookup(sparse_tokens.values)
        return (sparse_tokens.indices, sparse_token_ids, sparse_tokens.dense_shape)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.dtypes.string)])
    def __call__(self, sentences):
        token_ids, token_values, token_dense_shape = self._tokenize(sentences)
        return tf.nn.safe_embedding_lookup_sparse(
            embedding_weights=self.embeddings,
            sparse_ids=tf.SparseTensor(token_ids, token_values, token_dense_shape),
            sparse_weights=None, combiner="sqrtn")


def ids_per_sentence(indices, values, n):
    rows = [[] for _ in range(n)]
    for (r, _), v in zip(indices.tolist(), values.tolist()):
        rows[r].append(int(v))
    return rows


def write_vocab(tmp, trailing_newline):
    path = os.path.join(tmp, "tokens.txt")
    with open(path, "wb") as f:
        data = "\n".join(VOCAB).encode()
        f.write(data + (b"\n" if trailing_newline else b""))
    return path


def export_tf2(name, dtype, oov, seed):
    tmp = tempfile.mkdtemp()
    vocab = write_vocab(tmp, True)
    table = make_table(len(VOCAB) + oov, DIM, dtype, seed)
    module = TextEmbeddingModel(vocab, table, oov)
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    tf.saved_model.save(module, path)
    loaded = tf.saved_model.load(path)
    out = loaded(tf.constant(SENTENCES)).numpy()
    empty = loaded(tf.constant([], dtype=tf.string)).numpy()
    idx, ids, _ = module._tokenize(tf.constant(SENTENCES))
    return path, {
        "dtype": str(table.dtype), "vocab_size": len(VOCAB), "oov_buckets": oov, "dim": DIM,
        "skip_empty": False, "table": [float(x) for x in table.astype(np.float64).reshape(-1)],
        "ids": ids_per_sentence(idx.numpy(), ids.numpy(), len(SENTENCES)),
        "outputs": [[float(x) for x in row] for row in out.astype(np.float64)],
        "empty_batch_shape": list(empty.shape), "op_types": op_types(path),
    }


def export_tf1(name, oov, seed):
    v1 = tf.compat.v1
    tmp = tempfile.mkdtemp()
    vocab = write_vocab(tmp, False)  # export.py writes "\n".join(vocabulary)
    table = make_table(len(VOCAB) + oov, DIM, np.float32, seed)
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    with tf.Graph().as_default():
        sentences = v1.placeholder(tf.string, shape=[None], name="sentences")
        embeddings = v1.get_variable("embeddings", initializer=tf.constant(table))
        vocab_const = tf.constant(vocab, name="vocabulary_file")
        v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, vocab_const)
        lookup_table = v1.lookup.StaticVocabularyTable(
            v1.lookup.TextFileInitializer(vocab_const, tf.string, v1.lookup.TextFileIndex.WHOLE_LINE,
                                          tf.int64, v1.lookup.TextFileIndex.LINE_NUMBER),
            num_oov_buckets=oov)
        normalized = v1.regex_replace(sentences, r"\pP", "")
        tokens = v1.string_split(normalized, " ")
        ids = lookup_table.lookup(tokens.values)
        sparse_ids = tf.SparseTensor(tokens.indices, ids, tokens.dense_shape)
        sparse_ids, _ = v1.sparse_fill_empty_rows(sparse_ids, lookup_table.lookup(tf.constant("")))
        sparse_ids = v1.sparse_reset_shape(sparse_ids)
        out = tf.nn.embedding_lookup_sparse(embeddings, sparse_ids, None, combiner="sqrtn")
        with v1.Session() as sess:
            sess.run([v1.global_variables_initializer(), v1.tables_initializer()])
            o, sp = sess.run([out, sparse_ids], {sentences: SENTENCES})
            empty = sess.run(out, {sentences: np.array([], dtype=object)})
            builder = v1.saved_model.Builder(path)
            sig = v1.saved_model.signature_def_utils.predict_signature_def(
                inputs={"sentences": sentences}, outputs={"default": out})
            builder.add_meta_graph_and_variables(
                sess, [v1.saved_model.tag_constants.SERVING], signature_def_map={"default": sig},
                assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS),
                main_op=v1.tables_initializer(), strip_default_attrs=True)
            builder.save()
    return path, {
        "dtype": "float32", "vocab_size": len(VOCAB), "oov_buckets": oov, "dim": DIM, "skip_empty": True,
        "table": [float(x) for x in table.astype(np.float64).reshape(-1)],
        "ids": ids_per_sentence(sp.indices, sp.values, len(SENTENCES)),
        "outputs": [[float(x) for x in row] for row in o.astype(np.float64)],
        "empty_batch_shape": list(empty.shape), "op_types": op_types(path),
    }


def punct_table():
    cps = [c for c in range(0x110000) if not (0xD800 <= c <= 0xDFFF)]
    strs = [chr(c).encode("utf-8") for c in cps]
    out = tf.strings.regex_replace(tf.constant(strs), r"\pP", "").numpy()
    removed = [c for c, o in zip(cps, out) if o == b""]
    ranges = []
    for c in removed:
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    lines = ["//! Generated by tools/make_text_embedding_fixture.py --punct-table: the Unicode code points",
             "//! that TensorFlow's `regex_replace(x, \"\\\\pP\", \"\")` (RE2) removes, as inclusive ranges,",
             f"//! computed by running TensorFlow {tf.__version__} on every scalar value. Do not edit.", "",
             "pub(crate) static PUNCT_RANGES: &[(u32, u32)] = &["]
    for a, b in ranges:
        lines.append(f"    (0x{a:04X}, 0x{b:04X}),")
    lines.append("];")
    dst = os.path.join(ROOT, "crates", "tf-text", "src", "punct_table.rs")
    with open(dst + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(dst + ".tmp", dst)
    print(f"{dst}: {len(ranges)} ranges, {len(removed)} code points")


def main():
    os.makedirs(OUT, exist_ok=True)
    if "--punct-table" in sys.argv:
        punct_table()
    expected = {"sentences": [s.hex() for s in SENTENCES]}
    for name, fn in [("tf2_f64_oov3", lambda: export_tf2("tf2_f64_oov3", np.float64, 3, 1)),
                     ("tf2_f32_oov1", lambda: export_tf2("tf2_f32_oov1", np.float32, 1, 2)),
                     ("tf1_f32_oov2", lambda: export_tf1("tf1_f32_oov2", 2, 3))]:
        path, info = fn()
        expected[name] = info
        print(name, path, info["op_types"])
    with open(os.path.join(OUT, "expected.json.tmp"), "w") as f:
        json.dump(expected, f, indent=1)
    os.replace(os.path.join(OUT, "expected.json.tmp"), os.path.join(OUT, "expected.json"))


if __name__ == "__main__":
    main()
