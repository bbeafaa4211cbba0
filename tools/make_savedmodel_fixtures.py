"""Writes the small SavedModel fixtures of the `savedmodel` crate, with TensorFlow's own values.

Usage:  tools/.venv/bin/python tools/make_savedmodel_fixtures.py [OUT_DIR]
        (default OUT_DIR: tests/fixtures/savedmodel)

Writes, under OUT_DIR:
  tf1/        TF1-style SavedModel (tf.compat.v1 graph + SavedModelBuilder, name-keyed checkpoint).
              Variables are placed on three virtual CPU devices, so the sharded saver writes
              3 data shards. Holds float32, float64, float16, bfloat16, int32, int64, uint8, bool
              and string variables, a partitioned variable `emb` (fixed_size_partitioner(3):
              stored as slices), and an asset `tokens.txt`.
  tf2/        TF2-style SavedModel (tf.saved_model.save of a tf.Module, object-based keys mapped
              through `_CHECKPOINTABLE_OBJECT_GRAPH`), several data shards
              (MaxShardSizePolicy), the same dtypes, an asset `vocab.txt` and a serving signature.
  <model>/expected.json   what TensorFlow says about the model:
      "variables": {name: {"dtype", "shape", "values"}}  (values flattened row-major; floats as
                   float64 numbers, bfloat16/float16 as their exact float value; strings as lists of
                   byte values),
      "keys": sorted checkpoint keys (tf.train.load_checkpoint),
      "num_shards", "tags", "signatures": {key: {"method_name", "inputs"/"outputs":
                   {alias: {"name", "dtype", "shape"}}}} (shape null = unknown rank, -1 = unknown dim),
      "assets": [filename...] (asset_file_def and the TF1 `saved_model_assets` collection), "op_types": sorted op types of graph_def nodes and function library.
"""

import json
import os
import shutil
import sys

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "savedmodel")


def values_of(arr):
    arr = np.asarray(arr)
    if arr.dtype.kind in ("S", "O", "U"):
        return [list(bytes(x)) if not isinstance(x, str) else list(x.encode()) for x in arr.reshape(-1)]
    if arr.dtype == bool:
        return [bool(x) for x in arr.reshape(-1)]
    if arr.dtype.kind in ("i", "u"):
        return [int(x) for x in arr.reshape(-1)]
    return [float(x) for x in arr.astype(np.float64).reshape(-1)]


def describe_pb(model_dir):
    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(model_dir, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    mg = sm.meta_graphs[0]
    ops = {n.op for n in mg.graph_def.node}
    for fn in mg.graph_def.library.function:
        ops |= {n.op for n in fn.node_def}
    assets = [a.filename for a in mg.asset_file_def]
    if "saved_model_assets" in mg.collection_def:  # TF1 SavedModelBuilder keeps assets here
        for any_pb in mg.collection_def["saved_model_assets"].any_list.value:
            a = meta_graph_pb2.AssetFileDef()
            any_pb.Unpack(a)
            assets.append(a.filename)
    sigs = {}
    for key, sd in mg.signature_def.items():
        def ti(m):
            out = {}
            for alias, info in m.items():
                shape = None if info.tensor_shape.unknown_rank else [d.size for d in info.tensor_shape.dim]
                out[alias] = {"name": info.name, "dtype": tf.dtypes.as_dtype(info.dtype).name if info.dtype else "invalid",
                              "shape": shape}
            return out
        sigs[key] = {"method_name": sd.method_name, "inputs": ti(sd.inputs), "outputs": ti(sd.outputs)}
    return {
        "tags": list(mg.meta_info_def.tags),
        "signatures": sigs,
        "assets": sorted(set(assets)),
        "op_types": sorted(ops),
    }


def ckpt_info(model_dir):
    prefix = os.path.join(model_dir, "variables", "variables")
    reader = tf.train.load_checkpoint(prefix)
    keys = sorted(reader.get_variable_to_shape_map().keys())
    shards = [f for f in os.listdir(os.path.join(model_dir, "variables")) if ".data-" in f]
    return keys, len(shards)


def write_expected(model_dir, variables):
    info = describe_pb(model_dir)
    keys, nshards = ckpt_info(model_dir)
    info["keys"] = keys
    info["num_shards"] = nshards
    info["variables"] = variables
    with open(os.path.join(model_dir, "expected.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)


def entry(dtype, value):
    value = np.asarray(value)
    return {"dtype": dtype, "shape": list(value.shape), "values": values_of(value)}


def make_tf1(out):
    d = os.path.join(out, "tf1")
    if os.path.exists(d):
        shutil.rmtree(d)
    tmp = os.path.join(out, "_tf1_assets_src")
    os.makedirs(tmp, exist_ok=True)
    tokens = os.path.join(tmp, "tokens.txt")
    with open(tokens, "w") as f:
        f.write("hello\nworld\n\xe9t\xe9\n")
    g = tf.Graph()
    with g.as_default():
        v1 = tf.compat.v1
        rng = np.random.RandomState(1)
        with tf.device("/cpu:0"):
            x = v1.placeholder(tf.float32, [None, 3], name="x")
            kernel = v1.get_variable("dense/kernel", initializer=rng.randn(3, 4).astype(np.float32))
            bias = v1.get_variable("dense/bias", initializer=rng.randn(4).astype(np.float32))
            f64 = v1.get_variable("f64var", initializer=rng.randn(2, 3).astype(np.float64))
            emb = v1.get_variable("emb", shape=[10, 3], dtype=tf.float32,
                                  initializer=v1.random_normal_initializer(seed=3),
                                  partitioner=v1.fixed_size_partitioner(3))
        with tf.device("/cpu:1"):
            f16 = v1.get_variable("half/w", initializer=rng.randn(5).astype(np.float16))
            bf16 = v1.get_variable("bf16var", initializer=tf.constant(rng.randn(2, 2), dtype=tf.bfloat16))
            i32 = v1.get_variable("ints/i32", initializer=np.array([[1, -2], [3, 2147483647]], np.int32))
            i64 = v1.get_variable("ints/i64", initializer=np.array([-(2 ** 40), 0, 7], np.int64))
        with tf.device("/cpu:2"):
            u8 = v1.get_variable("u8var", initializer=np.array([0, 1, 128, 255, 7, 9], np.uint8))
            bl = v1.get_variable("flags", initializer=np.array([True, False, True, True]))
            st = v1.get_variable("strings", initializer=tf.constant([b"a", b"", b"\xff\x00bin", b"hello world"]),
                                 trainable=False)
            scalar = v1.get_variable("global_step", initializer=np.int64(42), trainable=False)
        y = tf.nn.bias_add(tf.matmul(x, kernel), bias, name="y")
        asset_t = tf.constant(tokens, name="asset_path")
        v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, asset_t)
        table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(asset_t, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                                          tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER), -1)
        words = v1.placeholder(tf.string, [None], name="words")
        ids = table.lookup(words)
        cfg = v1.ConfigProto(device_count={"CPU": 3})
        with v1.Session(graph=g, config=cfg) as sess:
            sess.run([v1.global_variables_initializer(), v1.tables_initializer()])
            builder = v1.saved_model.Builder(d)
            sig = v1.saved_model.signature_def_utils.predict_signature_def(
                inputs={"x": x, "words": words}, outputs={"y": y, "ids": ids})
            builder.add_meta_graph_and_variables(
                sess, ["serve"], signature_def_map={"serving_default": sig},
                assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS),
                main_op=v1.tables_initializer())
            builder.save()
            names = {"dense/kernel": ("float32", kernel), "dense/bias": ("float32", bias),
                     "f64var": ("float64", f64), "half/w": ("float16", f16), "bf16var": ("bfloat16", bf16),
                     "ints/i32": ("int32", i32), "ints/i64": ("int64", i64), "u8var": ("uint8", u8),
                     "flags": ("bool", bl), "strings": ("string", st), "global_step": ("int64", scalar)}
            variables = {}
            for n, (dt, var) in names.items():
                val = sess.run(var)
                if dt == "bfloat16":
                    val = np.asarray(val).astype(np.float32)
                variables[n] = entry(dt, val)
            variables["emb"] = entry("float32", sess.run(tf.concat(list(emb), axis=0)))
    shutil.rmtree(tmp)
    write_expected(d, variables)


class Tf2Model(tf.Module):
    def __init__(self, vocab_path):
        super().__init__()
        rng = np.random.RandomState(2)
        self.kernel = tf.Variable(rng.randn(3, 4).astype(np.float32), name="dense/kernel")
        self.bias = tf.Variable(rng.randn(4).astype(np.float32), name="dense/bias")
        self.f64 = tf.Variable(rng.randn(2, 3), dtype=tf.float64, name="f64var")
        self.f16 = tf.Variable(rng.randn(5).astype(np.float16), name="half/w")
        self.bf16 = tf.Variable(tf.constant(rng.randn(3), dtype=tf.bfloat16), name="bf16var")
        self.i32 = tf.Variable(np.array([[1, -2], [3, 2147483647]], np.int32), name="ints/i32")
        self.i64 = tf.Variable(np.array([-(2 ** 40), 0, 7], np.int64), name="ints/i64")
        self.u8 = tf.Variable(np.array([0, 1, 128, 255], np.uint8), name="u8var")
        self.flags = tf.Variable([True, False, True], name="flags")
        self.strings = tf.Variable([b"a", b"", b"\xff\x00bin", b"hello world"], name="strings")
        self.layers = [tf.Variable(rng.randn(2, 2).astype(np.float32), name=f"block{i}/weights")
                       for i in range(3)]
        self.unnamed = tf.Variable(np.float32(1.5))
        self.vocab = tf.saved_model.Asset(vocab_path)

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x")])
    def __call__(self, x):
        h = tf.matmul(x, self.kernel) + self.bias
        return {"y": h, "z": tf.reduce_sum(h, axis=1) * self.unnamed}


def make_tf2(out):
    d = os.path.join(out, "tf2")
    if os.path.exists(d):
        shutil.rmtree(d)
    tmp = os.path.join(out, "_tf2_assets_src")
    os.makedirs(tmp, exist_ok=True)
    vocab = os.path.join(tmp, "vocab.txt")
    with open(vocab, "w") as f:
        f.write("<unk>\ncat\ndog\n")
    m = Tf2Model(vocab)
    opts = tf.saved_model.SaveOptions(
        experimental_sharding_callback=tf.train.experimental.MaxShardSizePolicy(max_shard_size=64))
    tf.saved_model.save(m, d, signatures={"serving_default": m.__call__}, options=opts)
    shutil.rmtree(tmp)
    variables = {}
    all_vars = [m.kernel, m.bias, m.f64, m.f16, m.bf16, m.i32, m.i64, m.u8, m.flags, m.strings,
                m.unnamed] + m.layers
    for v in all_vars:
        name = v.name[:-2] if v.name.endswith(":0") else v.name
        val = v.numpy()
        if v.dtype == tf.bfloat16:
            val = val.astype(np.float32)
        variables[name] = entry(v.dtype.name, val)
    write_expected(d, variables)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    make_tf1(OUT)
    make_tf2(OUT)
    print("wrote", os.path.abspath(OUT))
