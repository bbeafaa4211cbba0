"""Exports small TF2 SavedModels with TensorFlow 2.21 and records what TensorFlow computes: the
reference fixtures of `tfgraph`, the generic SavedModel graph executor.

Usage:
    tools/.venv/bin/python tools/make_tfgraph_fixtures.py                  # every committed fixture
    tools/.venv/bin/python tools/make_tfgraph_fixtures.py --only op_conv2d_same_s1_3x3_bias mobilenet_v2_small
    tools/.venv/bin/python tools/make_tfgraph_fixtures.py --full [--only NAME...]   # full-size networks
    tools/.venv/bin/python tools/make_tfgraph_fixtures.py --list           # names only

Set-up: `python3 -m venv tools/.venv && tools/.venv/bin/pip install -r tools/requirements.txt`
(tensorflow-cpu 2.21.0, tf-keras 2.21.0, numpy, safetensors). The script sets
`TF_USE_LEGACY_KERAS=1` itself and builds everything with Keras 2 (`tf_keras`), like TF Hub's models.

Output: `tests/fixtures/tfgraph/<name>/` (with `--full`: `tools/out/tfgraph/<name>/`, git-ignored):
    saved_model/            what `tf.saved_model.save` writes (saved_model.pb, variables/, assets/,
                            fingerprint.pb). Not frozen, not optimised.
    expected.safetensors    `input` (or `input0`, `input1`, ... in the order of the serving
                            signature's input keys, sorted), `output` (or `output0`, `output1`, ...
                            in the order of the signature's output keys, sorted) = the result of the
                            reloaded `serving_default` signature on those inputs. Networks also
                            have `output_training` = `__call__(input, training=True)` (batch
                            statistics in every batch norm; no dropout anywhere, so deterministic).
                            dtypes: float32, float64, int32, int64, bool.
    expected.json           {"name", "kind": "op" | "network", "architecture" (tfhub.dev's
                            network-architecture vocabulary, null for ops), "task"
                            ("image-classification" | "image-feature-vector" | "op"),
                            "signature": "serving_default",
                            "inputs": [{"name": signature key, "tensor": safetensors name,
                                        "dtype", "shape": the stored tensor's shape,
                                        "signature_shape": the signature's shape (null = any)}],
                            "outputs": [same for the outputs; networks add the `output_training`
                                        entry with "name": "__call__(training=True)"],
                            "preprocessing": what the graph does to its input,
                            "tolerance": {"rel": r}: suggested check max|got - want| <= r * max|want|
                                         per tensor (integer and bool tensors must match exactly),
                            "ops": sorted distinct op types of every function body reachable
                                   from the object graph's functions (the serving signature and
                                   the `__call__` traces) through calls, library function names
                                   excluded,
                            "saver": whether saved_model.pb keeps TF's save/restore functions,
                            "description", plus "output_row_gap" for networks}
    training.safetensors    only vit_tiny, resnet50_v2_small, mobilenet_v3_small_small (and their
                            --full versions): `loss_weights` (N(0, 1), the output's shape), `loss`
                            = sum(output_training * loss_weights) (float32 scalar),
                            `grad/<SavedVariable.name>` = d loss / d variable for every trainable
                            variable, `updated/<SavedVariable.name>` = every non-trainable variable
                            after that one `__call__(training=True)` (batch-norm moving statistics),
                            computed on a fresh load of the SavedModel; described under
                            "training_reference" in expected.json.
    tests/fixtures/tfgraph/index.json: [{"name", "kind", "architecture", "task"}] of every fixture
                            folder present (tools/out/tfgraph/index.json for --full).

Export form of the networks: TF Hub's "reusable SavedModel" (tensorflow/hub
docs/reusable_saved_models.md): the root object (an AutoTrackable) has `variables`,
`trainable_variables`, `regularization_losses` (empty list) and `__call__`, a tf.function traced
twice, `(images, training=False)` and `(images, training=True)`, with input signature
`[None, H, W, 3]` float32 ([None, None, None, 3] for `mobilenet_v2_fv_small`), taking images in
[0, 1] and doing the application's preprocessing inside; `signatures={"serving_default": the
training=False concrete function}` (output key `output_0`). The Keras model itself is not an
attribute of the root (only its variables are), so saved_model.pb holds no Keras layer functions.
Note that `tf.saved_model.save` retraces `__call__` in its save context, so the library has two
identical inference bodies: the signature wrapper calls the first, the object graph's `__call__`
lists the retrace. The small network fixtures are saved with `experimental_skip_saver=True`
(no `__inference__traced_save/restore` functions, to keep them small), and so are the op fixtures
except the few in OPS_WITH_SAVER; the `--full` networks keep the saver.

Weights (numpy seed from the fixture's name): conv/dense kernels N(0, 2/fan_in) (fan_in = kh*kw
for depthwise kernels, d_model for attention q/k/v kernels, heads*key_dim for the attention
output kernel), biases U(-0.1, 0.1), BatchNorm/LayerNorm gamma U(0.5, 1.5), beta U(-0.2, 0.2),
moving_mean U(-0.2, 0.2), moving_variance U(0.5, 2) (op fixtures; in the networks the moving
statistics are then calibrated on 4 other seeded images, in layer order: moving_mean = mean of
the layer's input + U(-0.2, 0.2) * its std, moving_variance = its variance * U(0.5, 2), because
with statistics unrelated to the activations the input-dependent signal fades with depth: the
two images' EfficientNet logits differed by 4e-4 of their size), ViT class token and position
embedding N(0, 0.5), EfficientNet's Normalization layer the ImageNet mean and variance (as its imagenet
weights have). Network inputs: batch 2, NHWC float32 in [0, 1], seeded: coarse uniform noise
upsampled bilinearly + fine uniform noise + a per-image brightness offset, clipped (iid uniform
noise images have equal statistics, and pooled networks then give both nearly the same output).

Networks (Keras-2 `tf_keras.applications`, weights=None, classifier_activation=None, so the
outputs are logits; small versions: narrow, classes=11; --full: the published width, 224x224
(299 for Inception-v3), 1000 classes):
    mobilenet_v2_small        MobileNetV2 alpha 0.1 (min 8 channels; alpha 0.35 was 1.7 MB of
                              variables), 64x64, preprocessing x*2-1.
    mobilenet_v2_fv_small     same net, include_top=False, pooling="avg", any input size (input
                              2x80x72).
    mobilenet_v3_small_small  MobileNetV3Small / Large alpha 0.1, minimalistic=False,
    mobilenet_v3_large_small  include_preprocessing (x*255 in the wrapper, then Rescaling(1/127.5,
                              offset -1)), 64x64; the head's last_point_ch (1024 / 1280 whatever
                              alpha is) patched to 64.
    efficientnet_b0_small     efficientnet.EfficientNet(width 0.25, depth 0.25), 64x64: x*255,
                              Rescaling(1/255), Normalization (ImageNet mean/variance).
    efficientnet_v2_b0_small  efficientnet_v2.EfficientNetV2(width 0.25, depth 0.25,
                              model_name "efficientnetv2-b0"), 64x64: x*255, Rescaling(1/255),
                              Normalization(ImageNet mean/variance as constants).
    resnet50_v1_small         resnet.ResNet(stack1 x4 stages, filters 4/8/16/32 (x4 out), 2 blocks each,
                              preact=False, use_bias=True), 64x64: x*255 then
                              resnet.preprocess_input ("caffe": RGB->BGR, mean subtraction).
    resnet50_v2_small         resnet.ResNet(stack2 x4, 4/8/16/32, 2 blocks, preact=True), 64x64,
                              x*2-1.
    vit_tiny                  hand-built ViT: 4x4 patches by Reshape/Permute/Reshape + Dense(32) on
                              3-D tensors, class token (Tile + ConcatV2), position embedding,
                              2 pre-norm blocks (LayerNormalization, MultiHeadAttention 2 heads
                              (Einsum, Softmax), MLP 64 with exact GELU in block 0, tanh GELU in
                              block 1), final LayerNorm, class token -> Dense(11); 32x32, x*2-1.
    slim_inception_v3_small   TF-Slim Inception-v3 of tools/make_inception_fixture.py (same
                              build and randomisation: depth_multiplier 0.05, min_depth 4,
                              11 classes, numpy seed 0, so the same weights as
                              tests/fixtures/inception_v3/small) exported with a serving
                              signature only (x*2-1 inside, batch norm inference only; no
                              `__call__` attribute, no output_training), input
                              [None, 91, 107, 3] (slim sizes its last AvgPool from the static
                              shape), fed that fixture's case "a" images (a/input_u8 / 255), so
                              its logits equal a/logits (checked).
    tiny_cnn_no_signature     a tiny reusable SavedModel WITHOUT signatures (only the
                              `__saved_model_init_op` signature_def TF always adds): the entry point is the
                              object graph's `__call__` (training False / True), whose bodies call
                              two nested tf.functions (conv + batch norm + ReLU6/ReLU blocks);
                              expected.json has "signature": null and the outputs named
                              "__call__(training=False)" / "__call__(training=True)"; any size,
                              fed 2x33x29.
    inception_v3_keras        Keras InceptionV3 cannot be narrowed (21.8M parameters even with
                              11 classes): --full only.

Op fixtures (`op_*`): one tiny SavedModel each whose serving function (a tf.function with an
input signature, attribute `serve` of the root; variables, if any, in `variables`) applies one op
(or a short chain) to its inputs, covering attribute edge cases (odd sizes with SAME padding, strides,
dilations, keep_dims, negative axes, broadcasting, StridedSlice masks, dynamic shapes, dtypes
int32/int64/float64/bool, control flow: op_cond (StatelessIf) and op_while_loop (StatelessWhile)).
Their inputs are seeded random (the description says what). `--list` prints every name.

Determinism: every network runs in its own subprocess and all op fixtures in one, so rerunning the
same command gives byte-identical files except saved_model/fingerprint.pb (TF writes a random
UUID into it). TF numbers its library functions with a process-wide counter: an `--only` subset
of op fixtures gets other function numbers in saved_model.pb (same graph, same values); rerun
without --only before committing op fixtures. Git does not keep the empty saved_model/assets/
folders TF creates (TF loads the SavedModels without them).
"""

import argparse
import inspect
import json
import os
import shutil
import subprocess
import sys
import zlib

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT_SMALL = os.path.join(ROOT, "tests", "fixtures", "tfgraph")
OUT_FULL = os.path.join(ROOT, "tools", "out", "tfgraph")

np = tf = keras = None  # imported in the worker (the parent only spawns workers)


def _import():
    global np, tf, keras
    import numpy as _np
    import tensorflow as _tf
    import tf_keras as _keras

    np, tf, keras = _np, _tf, _keras


def rng_for(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


# --------------------------------------------------------------------------------------------
# Writing a fixture
# --------------------------------------------------------------------------------------------

DTYPES = {"float32", "float64", "int32", "int64", "bool"}


def reachable_ops(pb_path):
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    with open(pb_path, "rb") as f:
        sm.ParseFromString(f.read())
    mg = sm.meta_graphs[0]
    lib = {f.signature.name: f for f in mg.graph_def.library.function}
    todo = []
    for node in mg.object_graph_def.nodes:
        kind = node.WhichOneof("kind")
        if kind == "function":
            todo += list(node.function.concrete_functions)
        elif kind == "bare_concrete_function":
            todo.append(node.bare_concrete_function.concrete_function_name)
    seen, ops = set(), set()

    def funcs_in_attr(v):
        if v.HasField("func"):
            yield v.func.name
        if v.HasField("list"):
            for fn in v.list.func:
                yield fn.name

    while todo:
        name = todo.pop()
        if name in seen or name not in lib:
            continue
        seen.add(name)
        for n in lib[name].node_def:
            if n.op in lib:
                todo.append(n.op)
            else:
                ops.add(n.op)
            for v in n.attr.values():
                todo += list(funcs_in_attr(v))
    return sorted(ops)


def dtype_name(a):
    s = "bool" if a.dtype == np.bool_ else str(a.dtype)
    assert s in DTYPES, s
    return s


def spec_shape(spec):
    return None if spec.shape.rank is None else [d for d in spec.shape.as_list()]


def write_fixture(out_root, name, obj, serving, inputs, meta, saver=True, training=False):
    """Saves `obj` with `serving` as serving_default, reloads it, runs the signature on `inputs`
    ({signature key: numpy array}) and writes expected.safetensors / expected.json."""
    from safetensors.numpy import save_file

    out = os.path.join(out_root, name)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    sm = os.path.join(out, "saved_model")
    tf.saved_model.save(obj, sm, signatures={"serving_default": serving},
                        options=tf.saved_model.SaveOptions(experimental_skip_saver=not saver))
    loaded = tf.saved_model.load(sm)
    sig = loaded.signatures["serving_default"]
    in_specs = sig.structured_input_signature[1]
    out_specs = sig.structured_outputs
    in_keys, out_keys = sorted(in_specs), sorted(out_specs)
    assert sorted(inputs) == in_keys, (sorted(inputs), in_keys)
    feeds = {k: tf.constant(inputs[k]) for k in in_keys}
    res = {k: v.numpy() for k, v in sig(**feeds).items()}
    # The in-memory function must agree with the reloaded signature.
    direct = serving(**feeds)
    direct = direct if isinstance(direct, dict) else {"output_0": direct}
    for k in out_keys:
        d = np.asarray(direct[k])
        assert d.dtype == res[k].dtype and d.shape == res[k].shape, (k, d.dtype, res[k].dtype)
        if not np.array_equal(d, res[k], equal_nan=True):
            gap = float(np.max(np.abs(d.astype(np.float64) - res[k].astype(np.float64))))
            print(f"  note: {name}/{k}: in-memory vs reloaded max diff {gap:.3g}")
    tensors, in_meta, out_meta = {}, [], []
    for i, k in enumerate(in_keys):
        t = "input" if len(in_keys) == 1 else f"input{i}"
        tensors[t] = np.array(inputs[k], order="C")
        in_meta.append({"name": k, "tensor": t, "dtype": dtype_name(inputs[k]), "shape": list(inputs[k].shape),
                        "signature_shape": spec_shape(in_specs[k])})
    for i, k in enumerate(out_keys):
        t = "output" if len(out_keys) == 1 else f"output{i}"
        tensors[t] = np.array(res[k], order="C")
        out_meta.append({"name": k, "tensor": t, "dtype": dtype_name(res[k]), "shape": list(res[k].shape),
                         "signature_shape": spec_shape(out_specs[k])})
    extra = {}
    if training:
        (k,) = in_keys
        y = loaded.__call__(tf.constant(inputs[k]), training=True).numpy()
        tensors["output_training"] = y
        out_meta.append({"name": "__call__(training=True)", "tensor": "output_training", "dtype": dtype_name(y),
                         "shape": list(y.shape), "signature_shape": None})
        # The in-memory model gives the same (it updates moving statistics in memory only,
        # after the files were written).
        y2 = obj.__call__(tf.constant(inputs[k]), training=True).numpy()
        if not np.array_equal(y, y2):
            print(f"  note: {name}: training output in-memory vs reloaded max diff {np.abs(y - y2).max():.3g}")
    for k, v in tensors.items():
        assert np.all(np.isfinite(v)) if v.dtype.kind == "f" else True, f"{name}/{k} not finite"
    if meta["kind"] == "network":
        o = tensors["output"].astype(np.float64)
        gap = float(np.abs(o[0] - o[1]).max() / max(np.abs(o).max(), 1e-30))
        extra["output_row_gap"] = gap
        print(f"  {name}: output rows differ by {gap:.3f} of max|output| ({np.abs(o).max():.3g})"
              + (f"; training rows differ by {np.abs(tensors['output_training'][0] - tensors['output_training'][1]).max() / np.abs(tensors['output_training']).max():.3f}" if training else ""))
        assert gap > meta.get("min_row_gap", 0.05), f"{name}: the two images give nearly the same output ({gap})"
    save_file(tensors, os.path.join(out, "expected.safetensors"))
    doc = {"name": name, "kind": meta["kind"], "architecture": meta.get("architecture"), "task": meta["task"],
           "signature": "serving_default", "inputs": in_meta, "outputs": out_meta,
           "preprocessing": meta.get("preprocessing", "none"), "tolerance": {"rel": meta["tol"]},
           "ops": reachable_ops(os.path.join(sm, "saved_model.pb")), "saver": saver,
           "description": meta["description"], **extra}
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    # Reload once more from disk and check the stored outputs are reproduced.
    check_fixture(out)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    print(f"  wrote {name} ({size / 1024:.0f} KiB, {len(doc['ops'])} op types)")


def check_fixture(folder):
    from safetensors.numpy import load_file

    with open(os.path.join(folder, "expected.json")) as f:
        doc = json.load(f)
    t = load_file(os.path.join(folder, "expected.safetensors"))
    loaded = tf.saved_model.load(os.path.join(folder, "saved_model"))
    res = {}
    if doc["signature"] is not None:
        sig = loaded.signatures[doc["signature"]]
        res = sig(**{i["name"]: tf.constant(t[i["tensor"]]) for i in doc["inputs"]})
    else:
        assert not loaded.signatures, f"{folder}: has signatures"
    for o in doc["outputs"]:
        if o["name"].startswith("__call__("):
            (i,) = doc["inputs"]
            got = loaded.__call__(tf.constant(t[i["tensor"]]), training=o["name"] == "__call__(training=True)").numpy()
        else:
            got = res[o["name"]].numpy()
        want = t[o["tensor"]]
        assert got.dtype == want.dtype and got.shape == want.shape, (folder, o)
        assert np.array_equal(got, want, equal_nan=True), f"{folder}: {o['name']} not reproduced"


# --------------------------------------------------------------------------------------------
# Op fixtures
# --------------------------------------------------------------------------------------------

OPS = {}  # name -> builder(rng) returning a dict
# Op fixtures saved with TF's save/restore functions (the others skip them, to stay small).
OPS_WITH_SAVER = {"op_conv2d_same_s1_3x3_bias", "op_batchnorm_keras", "op_keras_mha", "op_pad_modes"}


def op(name, description, tol=1e-6):
    def reg(builder):
        assert name not in OPS, name
        OPS[name] = (builder, description, tol)
        return builder

    return reg


def f32(a):
    return np.asarray(a, dtype=np.float32)


def normal(rng, *shape):
    return f32(rng.normal(0, 1, shape))


def unif(rng, lo, hi, *shape):
    return f32(rng.uniform(lo, hi, shape))


def var(rng, shape, kind="kernel", name=None):
    if kind == "kernel":
        fan_in = int(np.prod(shape[:-1]))
        val = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
    elif kind == "depthwise":
        val = rng.normal(0, np.sqrt(2.0 / (shape[0] * shape[1])), shape)
    else:
        val = rng.uniform(-0.1, 0.1, shape)
    return tf.Variable(f32(val), name=name)


def export_op(name, builder, description, tol, out_root):
    rng = rng_for(name)
    tf.random.set_seed(zlib.crc32(name.encode()) % (2**31))
    keras.backend.clear_session()
    c = builder(rng)
    fn, inputs = c["fn"], c["inputs"]
    params = list(inspect.signature(fn).parameters)
    assert params == list(inputs), (name, params, list(inputs))
    shapes = c.get("shapes", {})
    specs = [tf.TensorSpec(shapes.get(p, inputs[p].shape), tf.as_dtype(inputs[p].dtype), name=p) for p in params]
    obj = tf.__internal__.tracking.AutoTrackable()
    obj.variables = list(c.get("variables", []))
    if "layers" in c:  # Keras layers used by fn: track their variables only
        obj.variables = obj.variables + [v for layer in c["layers"] for v in layer.variables]
    obj.serve = tf.function(fn, input_signature=specs)
    meta = {"kind": "op", "architecture": None, "task": "op", "tol": c.get("tol", tol),
            "preprocessing": "none", "description": description}
    write_fixture(out_root, name, obj, obj.serve, inputs, meta, saver=name in OPS_WITH_SAVER)


def build_layer(layer, shape, rng, **randomise_kw):
    layer.build(shape)
    randomise([(layer.name + "/" + v.name.split("/")[-1], v) for v in layer.variables], rng, **randomise_kw)
    return layer


def conv_case(name, x_shape, k_shape, strides, padding, dilations=1, bias=False, desc=""):
    def builder(rng):
        k = var(rng, k_shape, name="kernel")
        vs = [k]
        b = None
        if bias:
            b = var(rng, [k_shape[-1]], "bias", name="bias")
            vs.append(b)

        def f(x):
            y = tf.nn.conv2d(x, k, strides=strides, padding=padding, dilations=dilations)
            return tf.nn.bias_add(y, b) if b is not None else y

        return {"fn": f, "inputs": {"x": normal(rng, *x_shape)}, "variables": vs}

    op(name, f"Conv2D {desc}: x {x_shape}, HWIO kernel {k_shape} (variable), strides {strides}, "
             f"padding {padding}, dilations {dilations}" + (", + BiasAdd" if bias else ""), tol=1e-5)(builder)


def depthwise_case(name, x_shape, k_shape, strides, padding, dilations=1, keras_layer=False):
    def builder(rng):
        if keras_layer:
            layer = keras.layers.DepthwiseConv2D(k_shape[:2], strides=strides, padding=padding.lower(),
                                                 depth_multiplier=k_shape[3], dilation_rate=dilations, use_bias=True)
            build_layer(layer, [None] + list(x_shape[1:]), rng)
            return {"fn": lambda x: layer(x), "inputs": {"x": normal(rng, *x_shape)}, "layers": [layer]}
        k = var(rng, k_shape, "depthwise", name="depthwise_kernel")

        def f(x):
            return tf.raw_ops.DepthwiseConv2dNative(input=x, filter=k, strides=[1, strides, strides, 1],
                                                    padding=padding, dilations=[1, dilations, dilations, 1])

        return {"fn": f, "inputs": {"x": normal(rng, *x_shape)}, "variables": [k]}

    how = "Keras DepthwiseConv2D layer (with bias)" if keras_layer else "tf.raw_ops.DepthwiseConv2dNative"
    op(name, f"{how}: x {x_shape}, HWCM kernel {k_shape}, strides {strides}, padding {padding}, "
             f"dilations {dilations}", tol=1e-5)(builder)


def define_op_cases():
    # ---- Conv2D
    conv_case("op_conv2d_same_s1_3x3_bias", [2, 7, 9, 4], [3, 3, 4, 5], 1, "SAME", bias=True)
    conv_case("op_conv2d_same_s2_5x5", [2, 7, 9, 3], [5, 5, 3, 4], 2, "SAME")
    conv_case("op_conv2d_same_s2_3x3_even", [1, 8, 10, 3], [3, 3, 3, 4], 2, "SAME", desc="(even input: pad 0 before, 1 after)")
    conv_case("op_conv2d_valid_s3_3x3", [2, 11, 10, 3], [3, 3, 3, 4], 3, "VALID")
    conv_case("op_conv2d_same_s3_5x5_bias", [1, 11, 13, 2], [5, 5, 2, 3], 3, "SAME", bias=True)
    conv_case("op_conv2d_same_1x7", [2, 7, 9, 4], [1, 7, 4, 3], 1, "SAME")
    conv_case("op_conv2d_same_7x1", [2, 7, 9, 4], [7, 1, 4, 3], 1, "SAME")
    conv_case("op_conv2d_valid_s2_7x1", [1, 15, 9, 3], [7, 1, 3, 2], 2, "VALID")
    conv_case("op_conv2d_same_strides_2x1", [2, 7, 9, 3], [3, 3, 3, 4], [1, 2, 1, 1], "SAME", desc="(strides 2 rows, 1 cols)")
    conv_case("op_conv2d_same_dilation2", [2, 9, 11, 3], [3, 3, 3, 4], 1, "SAME", dilations=2)
    conv_case("op_conv2d_valid_dilation2_bias", [1, 9, 11, 3], [3, 3, 3, 4], 1, "VALID", dilations=2, bias=True)
    conv_case("op_conv2d_explicit_padding", [1, 7, 9, 3], [3, 3, 3, 4], 2, [[0, 0], [1, 2], [0, 1], [0, 0]],
              desc="(EXPLICIT padding: rows 1/2, cols 0/1)")
    conv_case("op_conv2d_1x1_s2", [2, 7, 9, 5], [1, 1, 5, 6], 2, "SAME")

    @op("op_conv2d_keras_relu", "Keras Conv2D(4, 3x3, strides 2, padding same, bias, activation relu) on "
                                "x [2, 9, 7, 3]: Conv2D, BiasAdd, Relu", tol=1e-5)
    def _(rng):
        layer = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")
        build_layer(layer, [None, 9, 7, 3], rng)
        return {"fn": lambda x: layer(x), "inputs": {"x": normal(rng, 2, 9, 7, 3)}, "layers": [layer]}

    @op("op_conv2d_constant_kernel", "tf.nn.conv2d with the kernel a graph constant (Const, not a variable): "
                                     "x [2, 6, 5, 3], 3x3x3x2, VALID", tol=1e-5)
    def _(rng):
        k = tf.constant(normal(rng, 3, 3, 3, 2) * 0.3)
        return {"fn": lambda x: tf.nn.conv2d(x, k, 1, "VALID"), "inputs": {"x": normal(rng, 2, 6, 5, 3)}}

    # ---- DepthwiseConv2dNative
    depthwise_case("op_depthwise_m1_s1_same", [2, 7, 9, 4], [3, 3, 4, 1], 1, "SAME")
    depthwise_case("op_depthwise_m2_s2_same", [1, 9, 8, 3], [3, 3, 3, 2], 2, "SAME")
    depthwise_case("op_depthwise_m1_s2_valid_5x5", [2, 11, 9, 3], [5, 5, 3, 1], 2, "VALID")
    depthwise_case("op_depthwise_m2_s1_valid", [1, 7, 9, 2], [3, 3, 2, 2], 1, "VALID")
    depthwise_case("op_depthwise_m1_s2_same_5x5", [2, 9, 7, 4], [5, 5, 4, 1], 2, "SAME")
    depthwise_case("op_depthwise_dilation2", [1, 9, 11, 3], [3, 3, 3, 1], 1, "SAME", dilations=2)
    depthwise_case("op_depthwise_keras_m2_s2", [2, 9, 7, 3], [3, 3, 3, 2], 2, "SAME", keras_layer=True)
    depthwise_case("op_depthwise_keras_dilation2", [1, 11, 9, 3], [3, 3, 3, 1], 1, "SAME", dilations=2, keras_layer=True)

    # ---- Batch norm
    @op("op_batchnorm_keras", "Keras BatchNormalization(epsilon 1e-3) inference on x [2, 5, 7, 6] "
                              "(FusedBatchNormV3 is_training=False; random gamma/beta/moving stats)", tol=1e-5)
    def _(rng):
        layer = keras.layers.BatchNormalization(epsilon=1e-3)
        build_layer(layer, [None, 5, 7, 6], rng)
        return {"fn": lambda x: layer(x, training=False), "inputs": {"x": normal(rng, 2, 5, 7, 6)}, "layers": [layer]}

    @op("op_batchnorm_keras_no_scale", "Keras BatchNormalization(scale=False, center=True, epsilon 0.01) inference "
                                       "on x [1, 3, 5, 4] (FusedBatchNormV3 with a constant-ones scale)", tol=1e-5)
    def _(rng):
        layer = keras.layers.BatchNormalization(scale=False, epsilon=0.01)
        build_layer(layer, [None, 3, 5, 4], rng)
        return {"fn": lambda x: layer(x, training=False), "inputs": {"x": normal(rng, 1, 3, 5, 4)}, "layers": [layer]}

    @op("op_batchnorm_keras_2d", "Keras BatchNormalization inference on a 2-D x [3, 6] (not fused: "
                                 "Rsqrt/Mul/Sub/AddV2 arithmetic)", tol=1e-5)
    def _(rng):
        layer = keras.layers.BatchNormalization()
        build_layer(layer, [None, 6], rng)
        return {"fn": lambda x: layer(x, training=False), "inputs": {"x": normal(rng, 3, 6)}, "layers": [layer]}

    @op("op_fused_batchnorm_training", "tf.raw_ops.FusedBatchNormV3(is_training=True, exponential_avg_factor 1) "
                                       "on x [2, 5, 3, 4]: outputs y, batch_mean, batch_variance (Bessel-corrected)", tol=1e-5)
    def _(rng):
        scale, offset = unif(rng, 0.5, 1.5, 4), unif(rng, -0.2, 0.2, 4)

        def f(x):
            r = tf.raw_ops.FusedBatchNormV3(x=x, scale=scale, offset=offset, mean=tf.zeros([4]), variance=tf.ones([4]),
                                            epsilon=0.001, is_training=True)
            return {"y": r.y, "batch_mean": r.batch_mean, "batch_variance": r.batch_variance}

        return {"fn": f, "inputs": {"x": normal(rng, 2, 5, 3, 4)}}

    # ---- Pooling
    for nm, kind, k, s, pad, shape in [
        ("op_avgpool_same_k3_s2", "avg", 3, 2, "SAME", [2, 7, 9, 3]),
        ("op_avgpool_valid_k3_s2", "avg", 3, 2, "VALID", [2, 7, 9, 3]),
        ("op_avgpool_same_k3_s1", "avg", 3, 1, "SAME", [1, 5, 6, 2]),
        ("op_avgpool_valid_k2_s2", "avg", 2, 2, "VALID", [1, 7, 9, 2]),
        ("op_maxpool_same_k3_s2", "max", 3, 2, "SAME", [2, 7, 9, 3]),
        ("op_maxpool_valid_k3_s2", "max", 3, 2, "VALID", [2, 9, 7, 3]),
        ("op_maxpool_same_k2_s2_even", "max", 2, 2, "SAME", [1, 8, 7, 2]),
        ("op_maxpool_same_k3_s1", "max", 3, 1, "SAME", [1, 5, 6, 2]),
    ]:
        def builder(rng, kind=kind, k=k, s=s, pad=pad, shape=shape):
            fn = tf.nn.avg_pool2d if kind == "avg" else tf.nn.max_pool2d
            return {"fn": lambda x: fn(x, k, s, pad), "inputs": {"x": normal(rng, *shape)}}

        op(nm, f"{'AvgPool' if kind == 'avg' else 'MaxPool'} ksize {k}, strides {s}, padding {pad} on x {shape}"
               + (" (SAME AvgPool averages over the valid cells only)" if kind == "avg" and pad == "SAME" else ""),
           tol=1e-5)(builder)

    @op("op_maxpool_nonsquare", "MaxPool ksize [1, 3, 2, 1], strides [1, 2, 1, 1], SAME on x [2, 7, 5, 3]")
    def _(rng):
        return {"fn": lambda x: tf.nn.max_pool2d(x, [3, 2], [2, 1], "SAME"), "inputs": {"x": normal(rng, 2, 7, 5, 3)}}

    # ---- Reductions
    for nm, fn_name, axis, keep in [
        ("op_mean_hw_keepdims", "reduce_mean", [1, 2], True),
        ("op_mean_hw", "reduce_mean", [1, 2], False),
        ("op_sum_last_neg_axis", "reduce_sum", -1, False),
        ("op_sum_axis0_keepdims", "reduce_sum", 0, True),
        ("op_max_axes_0_neg1", "reduce_max", [0, -1], False),
        ("op_max_neg2_keepdims", "reduce_max", -2, True),
        ("op_min_axis1", "reduce_min", 1, False),
        ("op_prod_axis2", "reduce_prod", 2, False),
        ("op_mean_all", "reduce_mean", None, False),
    ]:
        def builder(rng, fn_name=fn_name, axis=axis, keep=keep):
            fn = getattr(tf.math, fn_name)
            return {"fn": lambda x: fn(x, axis=axis, keepdims=keep),
                    "inputs": {"x": unif(rng, 0.5, 1.5, 2, 3, 5, 4) if fn_name == "reduce_prod" else normal(rng, 2, 3, 5, 4)}}

        op(nm, f"tf.math.{fn_name}(x [2, 3, 5, 4], axis={axis}, keepdims={keep})", tol=1e-5)(builder)

    @op("op_reduce_any_all", "Any / All over axis 1 (keepdims False / True) of a bool x [3, 4, 2]")
    def _(rng):
        return {"fn": lambda x: {"any": tf.reduce_any(x, 1), "all": tf.reduce_all(x, 1, keepdims=True)},
                "inputs": {"x": rng.uniform(0, 1, [3, 4, 2]) < 0.6}}

    @op("op_sum_int32", "Sum over axis -1 and Max over axis 0 of an int32 x [3, 5]")
    def _(rng):
        return {"fn": lambda x: {"sum": tf.reduce_sum(x, -1), "max": tf.reduce_max(x, 0)},
                "inputs": {"x": rng.integers(-50, 50, [3, 5]).astype(np.int32)}}

    # ---- Broadcasting binary ops
    for nm, fn, pos in [("add", tf.add, False), ("sub", tf.subtract, False), ("mul", tf.multiply, False),
                        ("realdiv", tf.divide, False), ("maximum", tf.maximum, False), ("minimum", tf.minimum, False),
                        ("squared_difference", tf.math.squared_difference, False), ("pow", tf.pow, True)]:
        def builder(rng, fn=fn, pos=pos, nm=nm):
            a = unif(rng, 0.2, 2.0, 2, 1, 5) if pos else normal(rng, 2, 1, 5)
            b = normal(rng, 3, 1)
            if nm == "realdiv":
                b = f32(np.sign(b) * (np.abs(b) + 0.5))
            if nm == "pow":
                b = unif(rng, -2.0, 3.0, 3, 1)
            return {"fn": lambda a, b: fn(a, b), "inputs": {"a": a, "b": b}}

        op(f"op_{nm}_broadcast", f"{fn.__name__}(a [2, 1, 5], b [3, 1]) -> [2, 3, 5] (numpy broadcasting)"
           + ("; a in [0.2, 2], b in [-2, 3]" if pos else ""), tol=1e-5 if nm == "pow" else 1e-6)(builder)

    @op("op_add_scalar_and_rank1", "x [2, 3, 4] + scalar const 0.5, * rank-1 const [4], - x's transpose-free "
                                   "rank-1 slice: AddV2/Mul/Sub with constants of lower rank")
    def _(rng):
        c = tf.constant(normal(rng, 4))
        return {"fn": lambda x: (x + 0.5) * c - x[0, 0], "inputs": {"x": normal(rng, 2, 3, 4)}}

    @op("op_int32_arith", "int32 a [2, 1, 4], b [3, 1] (b != 0): AddV2, Sub, Mul, FloorDiv, FloorMod "
                          "(floor semantics with negative operands), Maximum")
    def _(rng):
        a = rng.integers(-20, 20, [2, 1, 4]).astype(np.int32)
        b = rng.choice([-7, -3, -2, 2, 3, 5], [3, 1]).astype(np.int32)
        return {"fn": lambda a, b: {"add": a + b, "sub": a - b, "mul": a * b, "floordiv": a // b,
                                    "floormod": a % b, "maximum": tf.maximum(a, b)},
                "inputs": {"a": a, "b": b}}

    @op("op_int64_arith", "int64 x [5] (values above 2^32): AddV2 with a constant, Mul, Cast to float32 "
                          "and to int32 (wraps), Neg")
    def _(rng):
        x = rng.integers(-(2**40), 2**40, [5]).astype(np.int64)
        return {"fn": lambda x: {"add": x + 3, "mul": x * 2, "to_f32": tf.cast(x, tf.float32),
                                 "to_i32": tf.cast(x, tf.int32), "neg": -x},
                "inputs": {"x": x}}

    @op("op_binary_broadcast_large", "x, y [2, 64, 64, 4] (each first scaled by a scalar, so on the device): "
                                     "Sub and RealDiv by per-channel constants [4], AddV2 / Mul of equal shapes, "
                                     "[4] - x, x + a [1, 1, 1, 4] constant: the flex device's parallel host path "
                                     "for operands of 32Ki elements and more", tol=1e-6)
    def _(rng):
        m, sd = tf.constant(normal(rng, 4)), tf.constant(f32(rng.uniform(0.5, 2.0, [4])))
        m4 = tf.reshape(m, [1, 1, 1, 4])

        def fn(x, y):
            u, v = x * 2.0, y * 0.5
            return {"norm": (u - m) / sd, "same": u * v + u, "rev": m - u, "rank4": u + m4}
        return {"fn": fn, "inputs": {"x": normal(rng, 2, 64, 64, 4), "y": normal(rng, 2, 64, 64, 4)}}

    @op("op_float64_math", "float64 x [2, 3] and y [3]: Mul, AddV2, Exp, Sqrt(|x|), Cast to float32, "
                           "MatMul in float64", tol=1e-6)
    def _(rng):
        x, y = rng.normal(0, 1, [2, 3]), rng.normal(0, 1, [3])
        return {"fn": lambda x, y: {"mul_add": x * y + 1.0, "exp": tf.exp(x), "sqrt": tf.sqrt(tf.abs(x)),
                                    "to_f32": tf.cast(x, tf.float32),
                                    "matmul": tf.matmul(x, tf.reshape(y, [3, 1]))},
                "inputs": {"x": x.astype(np.float64), "y": y.astype(np.float64)}}

    @op("op_bool_logic", "bool a [2, 3], b [3]: LogicalAnd, LogicalOr, LogicalNot, Equal/NotEqual on bool, "
                         "Cast bool->float32 and float32->bool (nonzero)")
    def _(rng):
        return {"fn": lambda a, b, x: {"and": tf.logical_and(a, b), "or": tf.logical_or(a, b), "not": tf.logical_not(a),
                                       "eq": tf.equal(a, b), "ne": tf.not_equal(a, b),
                                       "to_f32": tf.cast(a, tf.float32), "from_f32": tf.cast(x, tf.bool)},
                "inputs": {"a": rng.uniform(0, 1, [2, 3]) < 0.5, "b": rng.uniform(0, 1, [3]) < 0.5,
                           "x": f32(rng.integers(-1, 2, [2, 3]))}}

    # ---- Unary
    unary = [
        ("relu", tf.nn.relu, "n"), ("relu6", tf.nn.relu6, "n3"), ("sigmoid", tf.sigmoid, "n3"), ("tanh", tf.tanh, "n"),
        ("rsqrt", tf.math.rsqrt, "p"), ("sqrt", tf.sqrt, "p"), ("neg", tf.negative, "n"), ("exp", tf.exp, "n"),
        ("log", tf.math.log, "p"), ("erf", tf.math.erf, "n"), ("erfc", tf.math.erfc, "n"), ("softplus", tf.nn.softplus, "n3"),
        ("abs", tf.abs, "n"), ("square", tf.square, "n"), ("reciprocal", tf.math.reciprocal, "p"),
        ("floor", tf.floor, "n3"), ("ceil", tf.math.ceil, "n3"), ("round", tf.round, "half"), ("sign", tf.sign, "n"),
        ("elu", tf.nn.elu, "n"), ("selu", tf.nn.selu, "n"), ("leaky_relu", lambda x: tf.nn.leaky_relu(x, 0.2), "n"),
        ("log_sigmoid", tf.math.log_sigmoid, "n3"), ("softsign", tf.nn.softsign, "n"),
        ("gelu_exact", lambda x: tf.nn.gelu(x, approximate=False), "n3"),
        ("gelu_tanh", lambda x: tf.nn.gelu(x, approximate=True), "n3"),
        ("swish", tf.nn.silu, "n3"), ("log1p", tf.math.log1p, "p"), ("expm1", tf.math.expm1, "n"),
        ("sin", tf.sin, "n3"), ("cos", tf.cos, "n3"),
        ("clip_by_value", lambda x: tf.clip_by_value(x, -0.5, 0.7), "n"),
    ]
    for nm, fn, dom in unary:
        def builder(rng, fn=fn, dom=dom):
            if dom == "p":
                x = unif(rng, 0.05, 4.0, 3, 5, 7)
            elif dom == "n3":
                x = normal(rng, 3, 5, 7) * 3
            elif dom == "half":
                x = f32(np.concatenate([rng.normal(0, 3, 95), [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, -3.5, 0.0, 4.5]])[:105].reshape(3, 5, 7))
            else:
                x = normal(rng, 3, 5, 7)
            return {"fn": lambda x: fn(x), "inputs": {"x": x}}

        desc = {"p": "x in [0.05, 4]", "n3": "x ~ N(0, 9)", "n": "x ~ N(0, 1)", "half": "x ~ N(0, 9) with exact halves (round half to even)"}[dom]
        exact = nm in ("relu", "relu6", "neg", "abs", "floor", "ceil", "round", "sign", "clip_by_value")
        op(f"op_{nm}", f"{nm} on x [3, 5, 7], {desc}" + (" (EfficientNet's swish: IdentityN with a custom gradient)" if nm == "swish" else ""),
           tol=1e-6 if exact else 1e-5)(builder)

    @op("op_hard_swish_keras", "hard-swish as Keras-2 MobileNetV3 writes it: Multiply()([x, ReLU(6.)(x + 3.) * (1/6)]) "
                               "on x [2, 5, 7, 3] ~ N(0, 16)", tol=1e-6)
    def _(rng):
        relu6, mul = keras.layers.ReLU(6.0), keras.layers.Multiply()
        return {"fn": lambda x: mul([x, relu6(x + 3.0) * (1.0 / 6.0)]), "inputs": {"x": normal(rng, 2, 5, 7, 3) * 4}}

    # ---- Softmax / MatMul / BatchMatMul / Einsum
    @op("op_softmax_3d", "tf.nn.softmax on the last axis of x [2, 3, 7] ~ N(0, 9)", tol=1e-5)
    def _(rng):
        return {"fn": lambda x: tf.nn.softmax(x), "inputs": {"x": normal(rng, 2, 3, 7) * 3}}

    @op("op_log_softmax", "tf.nn.log_softmax on the last axis of x [3, 6]", tol=1e-5)
    def _(rng):
        return {"fn": lambda x: tf.nn.log_softmax(x), "inputs": {"x": normal(rng, 3, 6) * 3}}

    @op("op_softmax_axis1_keras", "Keras Softmax(axis=1) on x [2, 5, 3]: tf.nn.softmax on a non-last axis "
                                 "is Transpose (perm built by Range/ConcatV2), Softmax, Transpose back", tol=1e-5)
    def _(rng):
        layer = keras.layers.Softmax(axis=1)
        return {"fn": lambda x: layer(x), "inputs": {"x": normal(rng, 2, 5, 3) * 2}}

    for ta in (False, True):
        for tb in (False, True):
            def builder(rng, ta=ta, tb=tb):
                a = normal(rng, *([5, 3] if ta else [3, 5]))
                b = normal(rng, *([4, 5] if tb else [5, 4]))
                return {"fn": lambda a, b: tf.matmul(a, b, transpose_a=ta, transpose_b=tb), "inputs": {"a": a, "b": b}}

            op(f"op_matmul_ta{int(ta)}_tb{int(tb)}", f"MatMul transpose_a={ta} transpose_b={tb}: [3, 5] x [5, 4] after "
                                                     f"transposes", tol=1e-5)(builder)

    @op("op_batch_matmul_broadcast", "BatchMatMulV2 a [2, 1, 3, 4] x b [3, 4, 5] -> [2, 3, 3, 5] (batch dims broadcast)", tol=1e-5)
    def _(rng):
        return {"fn": lambda a, b: tf.matmul(a, b), "inputs": {"a": normal(rng, 2, 1, 3, 4), "b": normal(rng, 3, 4, 5)}}

    @op("op_batch_matmul_adj", "BatchMatMulV2 adj_x=True adj_y=True: a [2, 4, 3], b [1, 5, 4] -> [2, 3, 5]", tol=1e-5)
    def _(rng):
        return {"fn": lambda a, b: tf.matmul(a, b, adjoint_a=True, adjoint_b=True),
                "inputs": {"a": normal(rng, 2, 4, 3), "b": normal(rng, 1, 5, 4)}}

    for nm, eq, sa, sb in [
        ("op_einsum_abc_cd", "abc,cd->abd", [2, 3, 5], [5, 4]),
        ("op_einsum_abc_cde", "abc,cde->abde", [2, 3, 6], [6, 2, 3]),          # MHA q/k/v projection
        ("op_einsum_bqhd_bkhd", "aecd,abcd->acbe", [2, 3, 2, 4], [2, 5, 2, 4]),  # MHA scores as Keras writes it
        ("op_einsum_bhqk_bkhd", "acbe,aecd->abcd", [2, 2, 3, 5], [2, 5, 2, 4]),  # MHA context as Keras writes it
        ("op_einsum_abcd_cde", "abcd,cde->abe", [2, 3, 2, 4], [2, 4, 6]),      # MHA output projection
        ("op_einsum_bqhd_bkhd_named", "bqhd,bkhd->bhqk", [2, 3, 2, 4], [2, 5, 2, 4]),
        ("op_einsum_transpose", "abc->cab", [2, 3, 4], None),
        ("op_einsum_trace_like", "ij,ij->i", [3, 4], [3, 4]),
    ]:
        def builder(rng, eq=eq, sa=sa, sb=sb):
            if sb is None:
                return {"fn": lambda a: tf.einsum(eq, a), "inputs": {"a": normal(rng, *sa)}}
            return {"fn": lambda a, b: tf.einsum(eq, a, b), "inputs": {"a": normal(rng, *sa), "b": normal(rng, *sb)}}

        op(nm, f"tf.einsum('{eq}') on {sa}" + (f" and {sb}" if sb else ""), tol=1e-5)(builder)

    @op("op_keras_mha", "Keras MultiHeadAttention(num_heads 2, key_dim 4) self-attention on x [2, 5, 6]: Einsum "
                        "projections, Mul by 1/sqrt(key_dim), Einsum scores, Softmax, Einsum context, output Einsum", tol=1e-5)
    def _(rng):
        layer = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)
        x0 = tf.zeros([1, 5, 6])
        layer(x0, x0)
        randomise([(v.name, v) for v in layer.variables], rng)
        return {"fn": lambda x: layer(x, x), "inputs": {"x": normal(rng, 2, 5, 6)}, "layers": [layer]}

    @op("op_layer_norm_keras", "Keras LayerNormalization(epsilon 1e-6) over the last axis of x [2, 5, 8]: "
                               "Mean, SquaredDifference (StopGradient on the mean), Mean, AddV2 eps, Rsqrt, Mul, Sub", tol=1e-5)
    def _(rng):
        layer = keras.layers.LayerNormalization(epsilon=1e-6)
        build_layer(layer, [None, 5, 8], rng)
        return {"fn": lambda x: layer(x), "inputs": {"x": normal(rng, 2, 5, 8) * 2 + 0.5}, "layers": [layer]}

    @op("op_layer_norm_axis2_rank4", "tf.nn.moments over axis 2 (keepdims) and tf.nn.batch_normalization with "
                                     "gamma, beta [4] on x [2, 3, 5, 4]: LayerNormalization's nodes over another "
                                     "axis than the last (the CPU fast path matches them, then replays the graph's "
                                     "ops)", tol=1e-5)
    def _(rng):
        gamma, beta = tf.constant(normal(rng, 4) + 1.0), tf.constant(normal(rng, 4))

        def fn(x):
            mean, var = tf.nn.moments(x, [2], keepdims=True)
            return tf.nn.batch_normalization(x, mean, var, beta, gamma, 1e-3)
        return {"fn": fn, "inputs": {"x": normal(rng, 2, 3, 5, 4) * 2 + 0.5}}

    @op("op_dense_3d_keras", "Keras Dense(6) on a 3-D x [None, 5, 4] (fed [2, 5, 4]): tf.tensordot with "
                             "a dynamic batch (Shape, GatherV2, Prod, Pack, Reshape, MatMul, ConcatV2) + BiasAdd", tol=1e-5)
    def _(rng):
        layer = keras.layers.Dense(6)
        build_layer(layer, [None, 5, 4], rng)
        return {"fn": lambda x: layer(x), "inputs": {"x": normal(rng, 2, 5, 4)}, "layers": [layer],
                "shapes": {"x": [None, 5, 4]}}

    @op("op_dense_3d_gelu", "Keras Dense(40) on x [None, 5, 12] (fed [2, 5, 12]) then tf.nn.gelu exact (Neg, Mul, "
                            "Erfc, Mul), Dense(12) then tf.nn.gelu tanh (Pow, Mul, AddV2, Tanh); the CPU fast path "
                            "folds the BiasAdd through the Tensordot Reshape and both GELUs into the products' store",
        tol=1e-5)
    def _(rng):
        d1, d2 = keras.layers.Dense(40, name="d1"), keras.layers.Dense(12, name="d2")
        build_layer(d1, [None, 5, 12], rng)
        build_layer(d2, [None, 5, 40], rng)
        return {"fn": lambda x: tf.nn.gelu(d2(tf.nn.gelu(d1(x))), approximate=True),
                "inputs": {"x": normal(rng, 2, 5, 12) * 2}, "layers": [d1, d2], "shapes": {"x": [None, 5, 12]}}

    @op("op_matmul_const_tb1_bias_relu", "MatMul of x [7, 5] by a constant [6, 5] with transpose_b, "
                                         "BiasAdd, Relu (the CPU fast path's matrix product)", tol=1e-5)
    def _(rng):
        w = tf.constant(normal(rng, 6, 5))
        b = tf.constant(normal(rng, 6))
        return {"fn": lambda x: tf.nn.relu(tf.nn.bias_add(tf.matmul(x, w, transpose_b=True), b)),
                "inputs": {"x": normal(rng, 7, 5)}}

    @op("op_mul_channel_gate", "Squeeze-and-excitation gating on the device: 1x1 convolutions of x [2, 40, 40, 16], "
                               "g [2, 1, 1, 16] and h [1, 1, 1, 16]; Mul of x' by the per-image gate g' and of the "
                               "batch-1 gate h' by x', summed (the flex host path for channel gates)", tol=1e-5)
    def _(rng):
        w1 = tf.constant(normal(rng, 1, 1, 16, 16))
        w2 = tf.constant(normal(rng, 1, 1, 16, 16))
        conv = lambda t, w: tf.nn.conv2d(t, w, 1, "VALID")

        def fn(x, g, h):
            y = conv(x, w1)
            return y * conv(g, w2) + conv(h, w2) * y

        return {"fn": fn, "inputs": {"x": normal(rng, 2, 40, 40, 16), "g": normal(rng, 2, 1, 1, 16),
                                     "h": normal(rng, 1, 1, 1, 16)}}

    @op("op_conv1x1_residual_relu", "Residual ends of ResNet blocks: relu(s + conv1x1(x) + b) with s of the "
                                    "output's shape (second operand), relu6(conv1x1(x) + r) with r [1, 1, 9, 24] "
                                    "broadcast (the flex fast path joins both Adds; the second falls back to the "
                                    "graph's Add and Relu6), x [2, 7, 9, 16]", tol=1e-5)
    def _(rng):
        w1 = tf.constant(normal(rng, 1, 1, 16, 24))
        w2 = tf.constant(normal(rng, 1, 1, 16, 24))
        b = tf.constant(normal(rng, 24))
        conv = lambda t, w: tf.nn.conv2d(t, w, 1, "VALID")

        def fn(x, s, r):
            return tf.nn.relu(s + tf.nn.bias_add(conv(x, w1), b)) + tf.nn.relu6(conv(x, w2) + r)

        return {"fn": fn, "inputs": {"x": normal(rng, 2, 7, 9, 16), "s": normal(rng, 2, 7, 9, 24),
                                     "r": normal(rng, 1, 1, 9, 24)}}

    @op("op_l2_normalize", "tf.math.l2_normalize(x [3, 5], axis -1)", tol=1e-5)
    def _(rng):
        return {"fn": lambda x: tf.math.l2_normalize(x, axis=-1), "inputs": {"x": normal(rng, 3, 5)}}

    @op("op_add_n_bias_add", "AddN of three inputs, then BiasAdd with a rank-1 constant (x [2, 3, 4])")
    def _(rng):
        b = tf.constant(normal(rng, 4))
        return {"fn": lambda a, b2, c: tf.nn.bias_add(tf.add_n([a, b2, c]), b),
                "inputs": {"a": normal(rng, 2, 3, 4), "b2": normal(rng, 2, 3, 4), "c": normal(rng, 2, 3, 4)}}

    # ---- Shape arithmetic with a dynamic input ([None, None, 3])
    dyn = {"x": [None, None, 3]}

    @op("op_shape_reshape_dynamic", "x [None, None, 3] (fed [5, 7, 3]): Shape, StridedSlice (shrink), Prod, Pack, "
                                    "Reshape to [-1, 3] and to [h*w*3], ExpandDims, the shape itself (int32)")
    def _(rng):
        def f(x):
            s = tf.shape(x)
            h, w = s[0], s[1]
            flat = tf.reshape(x, [-1, 3])
            return {"shape": s, "flat": flat, "numel": tf.reshape(x, [tf.reduce_prod(s)]),
                    "hw1": tf.reshape(x, tf.stack([h * w, 1, 3])), "expand": tf.expand_dims(x, -2)}

        return {"fn": f, "inputs": {"x": normal(rng, 5, 7, 3)}, "shapes": dyn}

    @op("op_strided_slice_masks", "StridedSlice on x [None, None, 3] (fed [6, 7, 3]): x[1:-1, ::2], x[..., 0] "
                                  "(ellipsis + shrink), x[:, tf.newaxis, 1:] (new_axis), x[::-1, ::-2] (negative strides), "
                                  "x[-3:, 2:5, 1:2], x[4:1:-2], x[2] (shrink), x[:, -1], x[5:100] (end past the size)")
    def _(rng):
        def f(x):
            return {"a": x[1:-1, ::2], "b": x[..., 0], "c": x[:, tf.newaxis, 1:], "d": x[::-1, ::-2],
                    "e": x[-3:, 2:5, 1:2], "f": x[4:1:-2], "g": x[2], "h": x[:, -1], "i": x[5:100]}

        return {"fn": f, "inputs": {"x": normal(rng, 6, 7, 3)}, "shapes": dyn}

    @op("op_strided_slice_dynamic_bounds", "StridedSlice with tensor bounds from the dynamic shape: "
                                           "x[h//2:, :w-1] and x[:, tf.shape(x)[1]-2::-1] on x [None, None, 3] (fed [7, 6, 3])")
    def _(rng):
        def f(x):
            s = tf.shape(x)
            return {"a": x[s[0] // 2:, : s[1] - 1], "b": x[:, s[1] - 2::-1]}

        return {"fn": f, "inputs": {"x": normal(rng, 7, 6, 3)}, "shapes": dyn}

    @op("op_gather_shape", "GatherV2 on the shape vector (tf.gather(tf.shape(x), [2, 0])), GatherV2 of rows "
                           "(indices [2, 0, 2], axis 0) and channels (axis -1, indices [[2, 1], [0, 0]]), gather with batch_dims 1")
    def _(rng):
        def f(x, idx):
            return {"shape_20": tf.gather(tf.shape(x), [2, 0]), "rows": tf.gather(x, [2, 0, 2]),
                    "chan": tf.gather(x, [[2, 1], [0, 0]], axis=-1),
                    "batch": tf.gather(x, idx, axis=1, batch_dims=1)}

        return {"fn": f, "inputs": {"x": normal(rng, 4, 5, 3), "idx": rng.integers(0, 5, [4, 2]).astype(np.int32)},
                "shapes": {"x": [None, None, 3], "idx": [None, 2]}}

    @op("op_gather_nd", "GatherNd x [4, 5, 3] with indices [[1, 2], [3, 0], [0, 4]] (int64)")
    def _(rng):
        return {"fn": lambda x, idx: tf.gather_nd(x, idx),
                "inputs": {"x": normal(rng, 4, 5, 3), "idx": np.array([[1, 2], [3, 0], [0, 4]], np.int64)}}

    @op("op_fill_range", "Fill([h, 2], 1.5), Range(h) (int32), Range(1, w, 2) as float32, Range with a "
                         "negative delta, on x [None, None, 3] (fed [5, 8, 3])")
    def _(rng):
        def f(x):
            s = tf.shape(x)
            return {"fill": tf.fill([s[0], 2], 1.5), "range": tf.range(s[0]),
                    "range_f": tf.range(1.0, tf.cast(s[1], tf.float32), 2.0),
                    "range_neg": tf.range(s[1], 0, -3)}

        return {"fn": f, "inputs": {"x": normal(rng, 5, 8, 3)}, "shapes": dyn}

    @op("op_slice_squeeze", "Slice(x, [1, 0, 0], [2, -1, -1]), Slice with sizes from the shape, Squeeze axis 1 "
                            "and all-ones squeeze, on x [None, None, 3] (fed [5, 1, 3]... see inputs)")
    def _(rng):
        def f(x):
            s = tf.shape(x)
            return {"slice": tf.slice(x, [1, 0, 0], [2, -1, -1]),
                    "slice_dyn": tf.slice(x, [0, 0, 1], tf.stack([s[0] - 1, s[1], 2])),
                    "squeeze1": tf.squeeze(x, axis=1), "squeeze_all": tf.squeeze(x[:1])}

        return {"fn": f, "inputs": {"x": normal(rng, 5, 1, 3)}, "shapes": dyn}

    @op("op_cast", "Cast float32->int32 (truncation toward zero), float32->int64, int32->float32, float32->bool, "
                   "float32->float64, bool->int32")
    def _(rng):
        def f(x):
            return {"i32": tf.cast(x, tf.int32), "i64": tf.cast(x, tf.int64), "back": tf.cast(tf.cast(x, tf.int32), tf.float32),
                    "bool": tf.cast(x, tf.bool), "f64": tf.cast(x, tf.float64),
                    "b2i": tf.cast(tf.cast(x, tf.bool), tf.int32)}

        return {"fn": f, "inputs": {"x": f32(np.round(rng.normal(0, 3, [3, 5]), 1))}}

    @op("op_concat", "ConcatV2 on axis -1 (x, 2x), axis 0 (x, x[::-1]) and axis 1 of three tensors, with x [None, None, 3] (fed [3, 4, 3])")
    def _(rng):
        def f(x):
            return {"last": tf.concat([x, 2.0 * x], -1), "first": tf.concat([x, x[::-1]], 0),
                    "mid": tf.concat([x, x[:, :1], x], 1)}

        return {"fn": f, "inputs": {"x": normal(rng, 3, 4, 3)}, "shapes": dyn}

    @op("op_pad_modes", "Pad (constant 0, [[1, 2], [0, 3], [0, 0]]), PadV2 (constant 0.5), MirrorPad REFLECT "
                        "([[2, 1], [1, 2], [0, 0]]), MirrorPad SYMMETRIC ([[3, 0], [2, 1], [0, 0]]), on x [None, None, 3] (fed [4, 5, 3])")
    def _(rng):
        def f(x):
            return {"pad": tf.pad(x, [[1, 2], [0, 3], [0, 0]]),
                    "padv2": tf.pad(x, [[1, 0], [2, 1], [0, 0]], constant_values=0.5),
                    "reflect": tf.pad(x, [[2, 1], [1, 2], [0, 0]], mode="REFLECT"),
                    "symmetric": tf.pad(x, [[3, 0], [2, 1], [0, 0]], mode="SYMMETRIC")}

        return {"fn": f, "inputs": {"x": normal(rng, 4, 5, 3)}, "shapes": dyn}

    @op("op_tile_transpose", "Tile(x, [2, 1, 3]), Tile with multiples from the shape, Transpose perm [2, 0, 1] and "
                             "[1, 0, 2], on x [None, None, 3] (fed [3, 4, 3])")
    def _(rng):
        def f(x):
            s = tf.shape(x)
            return {"tile": tf.tile(x, [2, 1, 3]), "tile_dyn": tf.tile(x[:1], tf.stack([s[0], 1, 1])),
                    "t201": tf.transpose(x, [2, 0, 1]), "t102": tf.transpose(x, [1, 0, 2])}

        return {"fn": f, "inputs": {"x": normal(rng, 3, 4, 3)}, "shapes": dyn}

    @op("op_split_unpack", "Split (3 ways on axis -1), SplitV (sizes [1, -1, 2] on axis 1), Unpack (axis 0) on "
                           "x [3, 7, 3]")
    def _(rng):
        def f(x):
            a, b, c = tf.split(x, 3, axis=-1)
            d, e, g = tf.split(x, [1, -1, 2], axis=1)
            u0, u1, u2 = tf.unstack(x, axis=0)
            return {"split0": a, "split1": b, "split2": c, "splitv0": d, "splitv1": e, "splitv2": g,
                    "unpack0": u0, "unpack1": u1, "unpack2": u2}

        return {"fn": f, "inputs": {"x": normal(rng, 3, 7, 3)}}

    @op("op_argmax_onehot", "ArgMax over axis -1 (int64) and axis 0 (int32 output_type), ArgMin, OneHot(depth 5, "
                            "on 2.0, off -1.0) of the int32 argmax, TopK k=2 (values, indices)")
    def _(rng):
        def f(x):
            am = tf.argmax(x, axis=-1, output_type=tf.int32)
            tk = tf.math.top_k(x, k=2)
            return {"argmax": tf.argmax(x, axis=-1), "argmax0": tf.argmax(x, axis=0, output_type=tf.int32),
                    "argmin": tf.argmin(x, axis=1), "onehot": tf.one_hot(am, 5, on_value=2.0, off_value=-1.0),
                    "topk_values": tk.values, "topk_indices": tk.indices}

        return {"fn": f, "inputs": {"x": normal(rng, 4, 5)}}

    @op("op_select_compare", "Greater, Less, Equal, GreaterEqual, LessEqual, NotEqual (bool outputs) and "
                             "SelectV2 (tf.where(cond, a, b) with broadcasting [2, 3, 4] / [4] / scalar) and "
                             "Select (tf.compat.v1.where, same shapes) on a [2, 3, 4], b [4]")
    def _(rng):
        def f(a, b):
            return {"gt": a > b, "lt": a < b, "eq": tf.equal(tf.round(a), tf.round(b)), "ge": a >= b, "le": a <= b,
                    "ne": tf.not_equal(tf.round(a), tf.round(b)), "select_v2": tf.where(a > b, a, 0.0),
                    "select": tf.compat.v1.where(a > 0.0, a, -a * 2.0)}

        return {"fn": f, "inputs": {"a": normal(rng, 2, 3, 4), "b": normal(rng, 4)}}

    @op("op_where_coords", "Where (one argument: int64 coordinates of true elements) on x > 0.3, x [3, 4]; and the "
                           "count via Shape")
    def _(rng):
        def f(x):
            w = tf.where(x > 0.3)
            return {"coords": w, "count": tf.shape(w)[0]}

        return {"fn": f, "inputs": {"x": normal(rng, 3, 4)}}

    @op("op_cumsum", "Cumsum axis 1, exclusive / reverse variants, on x [2, 5]", tol=1e-6)
    def _(rng):
        return {"fn": lambda x: {"cumsum": tf.cumsum(x, 1), "exclusive": tf.cumsum(x, 1, exclusive=True),
                                 "reverse": tf.cumsum(x, 1, reverse=True)},
                "inputs": {"x": normal(rng, 2, 5)}}

    @op("op_identity_stop_gradient", "Identity, StopGradient, IdentityN (tf.identity_n) chain on x [2, 3]")
    def _(rng):
        return {"fn": lambda x: tf.identity_n([tf.stop_gradient(tf.identity(x) * 2.0), x])[0],
                "inputs": {"x": normal(rng, 2, 3)}}

    @op("op_conv2d_transpose_keras_s2_same", "Keras Conv2DTranspose(4, 3x3, strides 2, padding same, bias) on "
                                              "x [None, 5, 7, 3] (fed [2, 5, 7, 3]): Conv2DBackpropInput with the "
                                              "output shape Pack(dynamic batch from Shape/StridedSlice, 10, 14, 4), BiasAdd", tol=1e-5)
    def _(rng):
        layer = keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same")
        build_layer(layer, [None, 5, 7, 3], rng)
        return {"fn": lambda x: layer(x), "inputs": {"x": normal(rng, 2, 5, 7, 3)}, "layers": [layer],
                "shapes": {"x": [None, 5, 7, 3]}}

    @op("op_conv2d_transpose_valid", "tf.nn.conv2d_transpose VALID, strides 2, kernel 3x3 (HW out-in [3, 3, 2, 3]), "
                                     "x [1, 5, 4, 3] -> output_shape [1, 11, 9, 2] (Conv2DBackpropInput)", tol=1e-5)
    def _(rng):
        k = var(rng, [3, 3, 2, 3], name="kernel")
        return {"fn": lambda x: tf.nn.conv2d_transpose(x, k, [1, 11, 9, 2], 2, "VALID"),
                "inputs": {"x": normal(rng, 1, 5, 4, 3)}, "variables": [k]}

    @op("op_depth_space", "DepthToSpace (block 2) of x [1, 3, 5, 8] and SpaceToDepth (block 2) of its result; NHWC")
    def _(rng):
        def f(x):
            d = tf.nn.depth_to_space(x, 2)
            return {"depth_to_space": d, "space_to_depth": tf.nn.space_to_depth(d[:, :, :, :1] * 2.0, 2)}

        return {"fn": f, "inputs": {"x": normal(rng, 1, 3, 5, 8)}}

    @op("op_reverse", "ReverseV2 over axis [1] and over axes [0, -1] of x [2, 3, 4]")
    def _(rng):
        return {"fn": lambda x: {"r1": tf.reverse(x, [1]), "r0_last": tf.reverse(x, [0, -1])},
                "inputs": {"x": normal(rng, 2, 3, 4)}}

    @op("op_resize_antialias", "tf.image.resize(x [1, 13, 11, 3], [5, 4], bilinear, antialias=True) "
                               "(ScaleAndTranslate, triangle kernel) and method area (ResizeArea)", tol=1e-5)
    def _(rng):
        return {"fn": lambda x: {"antialias": tf.image.resize(x, [5, 4], "bilinear", antialias=True),
                                 "area": tf.image.resize(x, [5, 4], "area")},
                "inputs": {"x": unif(rng, 0, 1, 1, 13, 11, 3)}}

    @op("op_cond", "tf.cond inside the function (StatelessIf with then/else branch functions in the library): "
                   "a = cond(mean(x) > 0, x * 2, x - 1), b = the same with the predicate negated, so one run "
                   "takes both branches; x [3, 4]")
    def _(rng):
        def f(x):
            p = tf.reduce_mean(x) > 0.0
            return {"a": tf.cond(p, lambda: x * 2.0, lambda: x - 1.0),
                    "b": tf.cond(tf.logical_not(p), lambda: x * 2.0, lambda: x - 1.0)}

        return {"fn": f, "inputs": {"x": normal(rng, 3, 4) + 0.3}}

    @op("op_while_loop", "tf.while_loop (StatelessWhile with cond/body functions): i from 0 while i < n "
                         "(n = the input's dynamic row count, fed 4): acc = acc * 0.5 + x; outputs acc and i; x [None, 3]")
    def _(rng):
        def f(x):
            n = tf.shape(x)[0]
            i, acc = tf.while_loop(lambda i, acc: i < n, lambda i, acc: (i + 1, acc * 0.5 + x), [0, tf.zeros_like(x)])
            return {"acc": acc, "i": i}

        return {"fn": f, "inputs": {"x": normal(rng, 4, 3)}, "shapes": {"x": [None, 3]}}

    @op("op_broadcast_to_zeros_like", "BroadcastTo x [1, 3] -> [4, 3], ZerosLike, OnesLike, Size, Rank on x [None, 3]")
    def _(rng):
        def f(x):
            return {"bcast": tf.broadcast_to(x[:1], [4, 3]), "zeros": tf.zeros_like(x), "ones": tf.ones_like(x),
                    "size": tf.size(x), "rank": tf.rank(x)}

        return {"fn": f, "inputs": {"x": normal(rng, 2, 3)}, "shapes": {"x": [None, 3]}}

    @op("op_resize_bilinear", "tf.image.resize (half_pixel_centers=True, antialias off) of x [2, 7, 9, 3]: "
                              "bilinear to 5x11 and 13x4, nearest to 5x11 and 13x4 (ResizeBilinear / "
                              "ResizeNearestNeighbor), and tf.compat.v1.image.resize_bilinear align_corners=True to 5x11", tol=1e-5)
    def _(rng):
        def f(x):
            return {"bilinear_5x11": tf.image.resize(x, [5, 11], "bilinear"),
                    "bilinear_13x4": tf.image.resize(x, [13, 4], "bilinear"),
                    "nearest_5x11": tf.image.resize(x, [5, 11], "nearest"),
                    "nearest_13x4": tf.image.resize(x, [13, 4], "nearest"),
                    "align_corners_5x11": tf.compat.v1.image.resize_bilinear(x, [5, 11], align_corners=True)}

        return {"fn": f, "inputs": {"x": unif(rng, 0, 1, 2, 7, 9, 3)}}

    @op("op_resize_dynamic", "tf.image.resize bilinear of x [None, None, None, 3] (fed [1, 6, 5, 3]) to twice "
                             "its size computed from Shape (size is a tensor)", tol=1e-5)
    def _(rng):
        def f(x):
            s = tf.shape(x)
            return tf.image.resize(x, s[1:3] * 2)

        return {"fn": f, "inputs": {"x": unif(rng, 0, 1, 1, 6, 5, 3)}, "shapes": {"x": [None, None, None, 3]}}


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_VAR = [0.229**2, 0.224**2, 0.225**2]


def randomise(named_vars, rng, extra=None):
    """named_vars: [(name, tf.Variable)]; sets seeded random values by the variable's role."""
    for name, v in named_vars:
        shape = v.shape.as_list()
        leaf = name.split("/")[-1].split(":")[0]
        if extra and leaf in extra:
            val = extra[leaf](shape)
        elif leaf == "depthwise_kernel":
            val = rng.normal(0, np.sqrt(2.0 / (shape[0] * shape[1])), shape)
        elif leaf == "kernel":
            if len(shape) == 3 and "attention_output" in name:
                fan_in = shape[0] * shape[1]
            elif len(shape) == 3:  # MHA query/key/value: [d_model, heads, key_dim]
                fan_in = shape[0]
            else:
                fan_in = int(np.prod(shape[:-1]))
            val = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
        elif leaf == "bias":
            val = rng.uniform(-0.1, 0.1, shape)
        elif leaf == "gamma":
            val = rng.uniform(0.5, 1.5, shape)
        elif leaf in ("beta", "moving_mean"):
            val = rng.uniform(-0.2, 0.2, shape)
        elif leaf == "moving_variance":
            val = rng.uniform(0.5, 2.0, shape)
        elif leaf == "mean" and shape[-1] == 3:  # keras Normalization layer (EfficientNet)
            val = np.broadcast_to(IMAGENET_MEAN, shape)
        elif leaf == "variance" and shape[-1] == 3:
            val = np.broadcast_to(IMAGENET_VAR, shape)
        elif leaf == "count":
            continue
        else:
            raise SystemExit(f"randomise: unexpected variable {name} {shape}")
        v.assign(np.asarray(val).astype(v.dtype.as_numpy_dtype))


def randomise_model(model, rng, extra=None):
    randomise([(v.name, v) for v in model.variables], rng, extra)


NETS = {}


def net(name, architecture, task, description, full_ok=True, small_ok=True):
    def reg(builder):
        NETS[name] = dict(builder=builder, architecture=architecture, task=task, description=description,
                          full_ok=full_ok, small_ok=small_ok)
        return builder

    return reg


# A builder returns (keras model, preprocessing function of the [0, 1] images, preprocessing text,
# __call__ input shape [H, W] (None for any), fed input shape [B, H, W, 3]).

@net("mobilenet_v2_small", "mobilenet-v2", "image-classification", "Keras-2 MobileNetV2 (alpha 0.1 small / 1.0 "
     "full), classification logits (classifier_activation=None)")
def _(full):
    apps = keras.applications
    s = 224 if full else 64
    m = apps.MobileNetV2(alpha=1.0 if full else 0.1, input_shape=(s, s, 3), classes=1000 if full else 11,
                         weights=None, classifier_activation=None)
    return m, (lambda x: x * 2.0 - 1.0), "x * 2 - 1", [s, s], [2, s, s, 3]


@net("mobilenet_v2_fv_small", "mobilenet-v2", "image-feature-vector", "Keras-2 MobileNetV2 (alpha 0.1 small / 1.0 "
     "full), include_top=False, pooling='avg', any input size")
def _(full):
    m = keras.applications.MobileNetV2(alpha=1.0 if full else 0.1, input_shape=(None, None, 3), include_top=False,
                                       pooling="avg", weights=None)
    return m, (lambda x: x * 2.0 - 1.0), "x * 2 - 1", [None, None], [2, 224, 224, 3] if full else [2, 80, 72, 3]


def _mnv3(cls, full):
    from tf_keras.src.applications import mobilenet_v3

    s = 224 if full else 64
    if full:
        return _mnv3_build(cls, full, s)
    # Small: the head's 1x1 conv has last_point_ch 1024 / 1280 channels whatever alpha is (most of
    # the variables); the public constructors take no argument for it, so their call of the
    # module's MobileNetV3() is patched to use 64.
    orig = mobilenet_v3.MobileNetV3
    mobilenet_v3.MobileNetV3 = lambda stack_fn, last_point_ch, *a, **k: orig(stack_fn, 64, *a, **k)
    try:
        return _mnv3_build(cls, full, s)
    finally:
        mobilenet_v3.MobileNetV3 = orig


def _mnv3_build(cls, full, s):
    m = cls(alpha=1.0 if full else 0.1, minimalistic=False, input_shape=(s, s, 3), classes=1000 if full else 11,
            weights=None, include_preprocessing=True, dropout_rate=0.0, classifier_activation=None)
    return (m, (lambda x: x * 255.0), "x * 255 (wrapper), then the model's Rescaling(1/127.5, offset -1)", [s, s],
            [2, s, s, 3])


@net("mobilenet_v3_small_small", "mobilenet-v3-small", "image-classification", "Keras-2 MobileNetV3Small (alpha "
     "0.1 small / 1.0 full, minimalistic=False, dropout 0; small: the head's last_point_ch patched to 64): "
     "hard-swish, squeeze-excite, logits")
def _(full):
    return _mnv3(keras.applications.MobileNetV3Small, full)


@net("mobilenet_v3_large_small", "mobilenet-v3-large", "image-classification", "Keras-2 MobileNetV3Large (alpha "
     "0.1 small / 1.0 full, minimalistic=False, dropout 0; small: the head's last_point_ch patched to 64): "
     "hard-swish, squeeze-excite, logits")
def _(full):
    return _mnv3(keras.applications.MobileNetV3Large, full)


@net("efficientnet_b0_small", "efficientnet-b0", "image-classification", "Keras-2 efficientnet.EfficientNet "
     "(width 0.25, depth 0.25, 64x64 small; B0's 1.0/1.0/224 full), dropout and drop-connect 0, logits; swish is "
     "IdentityN with a custom gradient")
def _(full):
    from tf_keras.src.applications import efficientnet

    s = 224 if full else 64
    c = 1.0 if full else 0.25
    m = efficientnet.EfficientNet(c, c, s, dropout_rate=0.0, drop_connect_rate=0.0, model_name="efficientnetb0",
                                  weights=None, input_shape=(s, s, 3), classes=1000 if full else 11,
                                  classifier_activation=None)
    return (m, (lambda x: x * 255.0), "x * 255 (wrapper), then the model's Rescaling(1/255) and Normalization "
            "((x - ImageNet mean) / sqrt(ImageNet variance), as variables)", [s, s], [2, s, s, 3])


@net("efficientnet_v2_b0_small", "efficientnet-v2-b0", "image-classification", "Keras-2 "
     "efficientnet_v2.EfficientNetV2 (model_name efficientnetv2-b0 blocks; width 0.25, depth 0.25, 64x64 small; "
     "1.0/1.0/224 full), dropout and drop-connect 0, logits")
def _(full):
    from tf_keras.src.applications import efficientnet_v2

    s = 224 if full else 64
    c = 1.0 if full else 0.25
    m = efficientnet_v2.EfficientNetV2(c, c, s, dropout_rate=0.0, drop_connect_rate=0.0,
                                       model_name="efficientnetv2-b0", weights=None, input_shape=(s, s, 3),
                                       classes=1000 if full else 11, classifier_activation=None,
                                       include_preprocessing=True)
    return (m, (lambda x: x * 255.0), "x * 255 (wrapper), then the model's Rescaling(1/255) and Normalization "
            "(ImageNet mean/variance as constants)", [s, s], [2, s, s, 3])


def _resnet(full, v2):
    from tf_keras.src.applications import resnet

    s = 224 if full else 64
    if full:
        fl, blocks = [64, 128, 256, 512], [3, 4, 6, 3]
    else:
        fl, blocks = [4, 8, 16, 32], [2, 2, 2, 2]

    def stack_fn(x):
        if v2:
            x = resnet.stack2(x, fl[0], blocks[0], name="conv2")
            x = resnet.stack2(x, fl[1], blocks[1], name="conv3")
            x = resnet.stack2(x, fl[2], blocks[2], name="conv4")
            return resnet.stack2(x, fl[3], blocks[3], stride1=1, name="conv5")
        x = resnet.stack1(x, fl[0], blocks[0], stride1=1, name="conv2")
        x = resnet.stack1(x, fl[1], blocks[1], name="conv3")
        x = resnet.stack1(x, fl[2], blocks[2], name="conv4")
        return resnet.stack1(x, fl[3], blocks[3], name="conv5")

    m = resnet.ResNet(stack_fn, v2, True, "resnet50v2" if v2 else "resnet50", weights=None, input_shape=(s, s, 3),
                      classes=1000 if full else 11, classifier_activation=None)
    if v2:
        return m, (lambda x: x * 2.0 - 1.0), "x * 2 - 1", [s, s], [2, s, s, 3]
    return (m, (lambda x: resnet.preprocess_input(x * 255.0)),
            "x * 255, then resnet.preprocess_input ('caffe': RGB->BGR by x[..., ::-1], BiasAdd of -[103.939, "
            "116.779, 123.68])", [s, s], [2, s, s, 3])


@net("resnet50_v1_small", "resnet50-v1", "image-classification", "Keras-2 resnet.ResNet with ResNet50's stack1 "
     "bottleneck blocks (small: filters 4/8/16/32, 2 blocks per stage; full: ResNet50), use_bias, logits")
def _(full):
    return _resnet(full, False)


@net("resnet50_v2_small", "resnet50-v2", "image-classification", "Keras-2 resnet.ResNet with ResNet50V2's "
     "pre-activation stack2 blocks (small: filters 4/8/16/32, 2 blocks per stage; full: ResNet50V2), logits")
def _(full):
    return _resnet(full, True)


@net("inception_v3_keras", "inception-v3", "image-classification", "Keras-2 InceptionV3 (cannot be narrowed: "
     "full only), logits", small_ok=False)
def _(full):
    m = keras.applications.InceptionV3(weights=None, input_shape=(299, 299, 3), classes=1000,
                                       classifier_activation=None)
    return m, (lambda x: x * 2.0 - 1.0), "x * 2 - 1", [299, 299], [2, 299, 299, 3]


@net("vit_tiny", "vit", "image-classification", "hand-built Keras-2 ViT (see the script's docstring): patches "
     "by Reshape/Permute/Reshape, Dense on 3-D tensors, class token, position embedding, 2 pre-norm blocks with "
     "LayerNormalization, MultiHeadAttention (Einsum, Softmax), MLP with exact GELU (block 0) and tanh GELU "
     "(block 1); logits")
def _(full):
    L = keras.layers
    s, p, d, heads, mlp, depth = (224, 16, 192, 3, 768, 12) if full else (32, 8, 32, 2, 64, 2)
    n = (s // p) ** 2

    class ClassToken(L.Layer):
        def build(self, shape):
            self.cls = self.add_weight(name="cls", shape=(1, 1, shape[-1]))

        def call(self, x):
            return tf.concat([tf.tile(self.cls, [tf.shape(x)[0], 1, 1]), x], axis=1)

    class AddPosition(L.Layer):
        def build(self, shape):
            self.pos = self.add_weight(name="pos_embedding", shape=(1, shape[1], shape[2]))

        def call(self, x):
            return x + self.pos

    inp = keras.Input((s, s, 3))
    x = L.Reshape((s // p, p, s // p, p, 3))(inp)
    x = L.Permute((1, 3, 2, 4, 5))(x)
    x = L.Reshape((n, p * p * 3))(x)
    x = L.Dense(d, name="embedding")(x)
    x = ClassToken(name="class_token")(x)
    x = AddPosition(name="position")(x)
    for i in range(depth):
        y = L.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln1")(x)
        y = L.MultiHeadAttention(heads, d // heads, name=f"block{i}_mha")(y, y)
        x = L.Add()([x, y])
        y = L.LayerNormalization(epsilon=1e-6, name=f"block{i}_ln2")(x)
        approx = i % 2 == 1
        y = L.Dense(mlp, name=f"block{i}_mlp1")(y)
        y = L.Activation(lambda t, a=approx: tf.nn.gelu(t, approximate=a), name=f"block{i}_gelu")(y)
        y = L.Dense(d, name=f"block{i}_mlp2")(y)
        x = L.Add()([x, y])
    x = L.LayerNormalization(epsilon=1e-6, name="final_ln")(x)
    x = L.Lambda(lambda t: t[:, 0], name="take_class_token")(x)
    out = L.Dense(1000 if full else 11, name="head")(x)
    m = keras.Model(inp, out, name="vit")
    return m, (lambda x: x * 2.0 - 1.0), "x * 2 - 1", [s, s], [2, s, s, 3]


def images(rng, shape):
    """Seeded pictures in [0, 1]: uniform noise on a coarse grid, bilinearly upsampled, plus
    fine uniform noise, plus a per-image brightness offset, clipped. (Plain iid uniform images have
    the same statistics, so globally pooled networks would give both nearly the same output.)"""
    b, h, w, _ = shape
    out = []
    for i in range(b):
        coarse = rng.uniform(0, 1, [1, max(2, h // 8), max(2, w // 8), 3])
        up = tf.image.resize(f32(coarse), [h, w], method="bilinear").numpy()[0]
        fine = rng.uniform(-0.15, 0.15, [h, w, 3])
        out.append(np.clip(0.6 * up + fine + (0.3 if i % 2 else -0.05), 0.0, 1.0))
    return f32(np.stack(out))


def calibrate_batch_norms(model, x, rng):
    """Sets each batch norm's moving statistics from the statistics of its input on the
    calibration images x (in layer order, so later layers see calibrated earlier ones): moving_mean
    = mean + U(-0.2, 0.2) * std, moving_variance = variance * U(0.5, 2). With moving statistics
    drawn independently of the activations the input-dependent part of the signal fades layer
    after layer (EfficientNet's two images gave the same logits to 4e-4)."""
    for bn in [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]:
        feat = keras.Model(model.inputs, bn.input)(x, training=False).numpy().astype(np.float64)
        axes = tuple(range(feat.ndim - 1))
        m, v = feat.mean(axes), feat.var(axes) + 1e-6
        bn.moving_mean.assign(f32(m + rng.uniform(-0.2, 0.2, m.shape) * np.sqrt(v)))
        bn.moving_variance.assign(f32(v * rng.uniform(0.5, 2.0, v.shape)))


# Networks that also get training.safetensors (gradients of a fixed loss, batch-norm updates).
TRAINING_REFERENCE = {"vit_tiny", "resnet50_v2_small", "mobilenet_v3_small_small"}


def write_training_reference(out, x, rng):
    """training.safetensors, from a fresh load of the written SavedModel: loss_weights (N(0, 1),
    the output's shape), loss = sum(__call__(input, training=True) * loss_weights) (scalar),
    grad/<SavedVariable.name> for every trainable variable, updated/<SavedVariable.name> for every
    non-trainable variable after that one training call (the batch norms' moving statistics)."""
    from safetensors.numpy import save_file

    loaded = tf.saved_model.load(os.path.join(out, "saved_model"))
    before = {v.name: v.numpy() for v in loaded.variables}
    with tf.GradientTape() as tape:
        y = loaded.__call__(tf.constant(x), training=True)
        w = normal(rng, *y.shape)
        loss = tf.reduce_sum(y * w)
    train = list(loaded.trainable_variables)
    grads = tape.gradient(loss, train)
    t = {"loss_weights": w, "loss": np.array(loss.numpy(), dtype=np.float32)}

    def key(v):
        return v.name[:-2] if v.name.endswith(":0") else v.name

    trainable_names = {key(v) for v in train}
    for v, g in zip(train, grads):
        assert g is not None, f"no gradient for {v.name}"
        t["grad/" + key(v)] = np.array(tf.convert_to_tensor(g).numpy(), order="C")
    updated = 0
    for v in loaded.variables:
        if key(v) not in trainable_names:
            assert "updated/" + key(v) not in t, f"duplicate variable name {v.name}"
            t["updated/" + key(v)] = v.numpy()
            updated += int(not np.array_equal(v.numpy(), before[v.name]))
    assert len(t) == 2 + len(loaded.variables), "variable names are not unique"
    save_file(t, os.path.join(out, "training.safetensors"))
    p = os.path.join(out, "expected.json")
    with open(p) as f:
        doc = json.load(f)
    doc["training_reference"] = {
        "file": "training.safetensors",
        "loss": "loss = sum(output_training * loss_weights), output_training = __call__(input, training=True)",
        "grad": "grad/<SavedVariable.name>: d loss / d variable, every trainable variable",
        "updated": "updated/<SavedVariable.name>: every non-trainable variable after that one training call "
                   "(batch-norm moving statistics: moving = moving * momentum + batch statistic * (1 - momentum), "
                   "the variance one Bessel-corrected)",
        "trainable": len(train), "non_trainable_changed": updated}
    with open(p, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"  training reference: loss {float(loss):.4g}, {len(train)} gradients, {updated} updated statistics")


def export_network(name, full, out_root):
    spec = NETS[name]
    rng = rng_for(name)
    tf.random.set_seed(zlib.crc32(name.encode()) % (2**31))
    keras.backend.clear_session()
    model, pre, pre_text, hw, in_shape = spec["builder"](full)
    randomise_model(model, rng, extra={"cls": lambda sh: rng.normal(0, 0.5, sh),
                                       "pos_embedding": lambda sh: rng.normal(0, 0.5, sh)})
    calibrate_batch_norms(model, pre(images(rng, [4] + in_shape[1:])), rng)
    obj = tf.__internal__.tracking.AutoTrackable()
    obj.variables = list(model.variables)
    obj.trainable_variables = list(model.trainable_variables)
    obj.regularization_losses = []

    def call(images, training=False):
        return model(pre(images), training=training)

    call.__name__ = "__call__"
    obj.__call__ = tf.function(call)
    ts = tf.TensorSpec([None] + list(hw) + [3], tf.float32, name="images")
    serving = obj.__call__.get_concrete_function(ts, training=False)
    obj.__call__.get_concrete_function(ts, training=True)
    x = images(rng, in_shape)
    meta = {"kind": "network", "architecture": spec["architecture"], "task": spec["task"], "tol": 1e-4,
            "preprocessing": f"input images in [0, 1]; {pre_text}", "description": spec["description"]
            + (" (full size)" if full else "")}
    write_fixture(out_root, name, obj, serving, {"images": x}, meta, saver=full, training=True)
    if name in TRAINING_REFERENCE:
        write_training_reference(os.path.join(out_root, name), x, rng)


@net("slim_inception_v3_small", "inception-v3", "image-classification", "TF-Slim Inception-v3 of "
     "tools/make_inception_fixture.py (depth_multiplier 0.05, min_depth 4, 11 classes, its seed-0 weights: the "
     "same as tests/fixtures/inception_v3/small) with a serving function; batch norm is inference-only (slim "
     "is_training=False) and exported with the serving signature only (no `__call__`, no output_training); input = "
     "tests/fixtures/inception_v3/small a/input_u8 / 255, so the output equals its a/logits", full_ok=False)
def _(full):
    raise NotImplementedError  # exported by export_slim


def export_slim(name, out_root):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import make_inception_fixture as mif

    cfg = dict(num_classes=11, depth_multiplier=0.05, min_depth=4)
    model, tmpl = mif.build(**cfg, with_function=False)
    mif.randomise(model.all_variables)
    obj = tf.__internal__.tracking.AutoTrackable()
    obj.tmpl = tmpl
    obj.variables = list(tmpl.variables)
    obj.trainable_variables = list(tmpl.trainable_variables)
    obj.regularization_losses = []

    def serve(images):
        logits, _ = tmpl(images)  # make_inception_fixture's net does x * 2 - 1 inside
        return logits

    # A serving signature only, no `__call__` attribute (like the many hub models that have just
    # one of the two): the library then holds one copy of the body (a `__call__` is retraced by
    # tf.saved_model.save, which would double the 0.8 MB body); slim's batch norms are
    # inference-only anyway. A fixed size: slim sizes the final AvgPool from the static shape (a
    # [None, None] input gets the 8x8 kernel of 299x299 inputs).
    serving = tf.function(serve, input_signature=[tf.TensorSpec([None, 91, 107, 3], tf.float32, name="images")])
    # The input of case "a" of the hand-written Inception-v3's fixture, so the logits can be compared.
    from safetensors.numpy import load_file

    ref = load_file(os.path.join(ROOT, "tests", "fixtures", "inception_v3", "small", "expected.safetensors"))
    x = ref["a/input_u8"].astype(np.float32) / np.float32(255.0)
    spec = NETS[name]
    meta = {"kind": "network", "architecture": "inception-v3", "task": "image-classification", "tol": 1e-4,
            "preprocessing": "input images in [0, 1]; x * 2 - 1", "description": spec["description"],
            # The weights are that fixture's (moving statistics not calibrated): its two images'
            # logits differ by only 0.7% of their magnitude.
            "min_row_gap": 0.005}
    write_fixture(out_root, name, obj, serving, {"images": x}, meta, saver=False, training=False)
    got = load_file(os.path.join(out_root, name, "expected.safetensors"))["output"]
    gap = float(np.abs(got - ref["a/logits"]).max() / np.abs(ref["a/logits"]).max())
    print(f"  {name}: logits vs tests/fixtures/inception_v3/small a/logits: rel max diff {gap:.3g}")
    assert gap < 1e-5, "not the same weights as the inception_v3 fixture"


@net("tiny_cnn_no_signature", None, "image-feature-vector", "a tiny reusable SavedModel with NO signature "
     "(like the TF Hub /4 image models, NNLM/Swivel TF2): only `__call__` (training False / True), whose body "
     "calls two nested tf.functions (StatefulPartitionedCall into __inference_block_* functions, variables "
     "passed down as resource arguments): block_conv1 = Conv2D(8, 3x3, stride 2, SAME, no bias) + "
     "BatchNormalization + Relu6, block_dw2 = DepthwiseConv2D(3x3, SAME, no bias) + BatchNormalization + Relu, "
     "then Conv2D(12, 1x1, bias) and the spatial mean; any input size", full_ok=False)
def _(full):
    raise NotImplementedError  # exported by export_no_signature


def export_no_signature(name, out_root):
    from safetensors.numpy import save_file

    rng = rng_for(name)
    tf.random.set_seed(zlib.crc32(name.encode()) % (2**31))
    keras.backend.clear_session()
    L = keras.layers
    conv1 = build_layer(L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv1"), [None, None, None, 3], rng)
    bn1 = build_layer(L.BatchNormalization(name="bn1"), [None, None, None, 8], rng)
    dw2 = build_layer(L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw2"), [None, None, None, 8], rng)
    bn2 = build_layer(L.BatchNormalization(name="bn2"), [None, None, None, 8], rng)
    conv3 = build_layer(L.Conv2D(12, 1, name="conv3"), [None, None, None, 8], rng)
    layers = [conv1, bn1, dw2, bn2, conv3]

    def block(conv, bn, act):
        def f(x, training):
            return act(bn(conv(x), training=training))

        f.__name__ = f"block_{conv.name}"
        return tf.function(f)

    b1, b2 = block(conv1, bn1, tf.nn.relu6), block(dw2, bn2, tf.nn.relu)

    def call(images, training=False):
        x = b2(b1(images * 2.0 - 1.0, training), training)
        return tf.reduce_mean(conv3(x), axis=[1, 2])

    call.__name__ = "__call__"
    obj = tf.__internal__.tracking.AutoTrackable()
    obj.variables = [v for l in layers for v in l.variables]
    obj.trainable_variables = [v for l in layers for v in l.trainable_variables]
    obj.regularization_losses = []
    obj.__call__ = tf.function(call)
    ts = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
    obj.__call__.get_concrete_function(ts, training=False)
    obj.__call__.get_concrete_function(ts, training=True)
    out = os.path.join(out_root, name)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    sm = os.path.join(out, "saved_model")
    tf.saved_model.save(obj, sm)  # no signatures
    x = images(rng, [2, 33, 29, 3])
    loaded = tf.saved_model.load(sm)
    assert not loaded.signatures, "tf.saved_model.save added a signature"
    y = loaded.__call__(tf.constant(x), training=False).numpy()
    yt = loaded.__call__(tf.constant(x), training=True).numpy()
    gap = float(np.abs(y[0] - y[1]).max() / np.abs(y).max())
    print(f"  {name}: output rows differ by {gap:.3f} of max|output| ({np.abs(y).max():.3g})")
    assert gap > 0.05
    save_file({"input": x, "output": y, "output_training": yt}, os.path.join(out, "expected.safetensors"))
    io = {"dtype": "float32", "signature_shape": None}
    doc = {"name": name, "kind": "network", "architecture": None, "task": "image-feature-vector",
           "signature": None,
           "inputs": [{"name": "images", "tensor": "input", "dtype": "float32", "shape": list(x.shape),
                       "signature_shape": [None, None, None, 3]}],
           "outputs": [{"name": "__call__(training=False)", "tensor": "output", "shape": list(y.shape), **io},
                       {"name": "__call__(training=True)", "tensor": "output_training", "shape": list(yt.shape), **io}],
           "preprocessing": "input images in [0, 1]; x * 2 - 1", "tolerance": {"rel": 1e-4},
           "ops": reachable_ops(os.path.join(sm, "saved_model.pb")), "saver": True,
           "description": NETS[name]["description"], "output_row_gap": gap}
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    check_fixture(out)
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    print(f"  wrote {name} ({size / 1024:.0f} KiB, {len(doc['ops'])} op types)")


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------

def all_names(full):
    if full:
        return [n for n, s in NETS.items() if s["full_ok"]]
    return sorted(OPS) + [n for n, s in NETS.items() if s["small_ok"]]


def worker(names, full):
    out_root = OUT_FULL if full else OUT_SMALL
    os.makedirs(out_root, exist_ok=True)
    for n in names:
        print(f"{n}:", flush=True)
        if n in OPS:
            builder, desc, tol = OPS[n]
            export_op(n, builder, desc, tol, out_root)
        elif n == "slim_inception_v3_small":
            export_slim(n, out_root)
        elif n == "tiny_cnn_no_signature":
            export_no_signature(n, out_root)
        else:
            export_network(n, full, out_root)


def write_index(out_root):
    items = []
    for d in sorted(os.listdir(out_root)):
        p = os.path.join(out_root, d, "expected.json")
        if os.path.isfile(p):
            with open(p) as f:
                doc = json.load(f)
            items.append({k: doc[k] for k in ("name", "kind", "architecture", "task")})
    with open(os.path.join(out_root, "index.json"), "w") as f:
        json.dump(items, f, indent=1)
        f.write("\n")
    return items


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="fixtures to (re)write")
    ap.add_argument("--full", action="store_true", help="full-size networks into tools/out/tfgraph/")
    ap.add_argument("--list", action="store_true", help="print the fixture names and exit")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    _import()
    define_op_cases()
    if a.worker:
        worker(a.worker, a.full)
        return
    names = all_names(a.full)
    if a.list:
        print("\n".join(names))
        return
    if a.only:
        unknown = [n for n in a.only if n not in names]
        if unknown:
            sys.exit(f"unknown fixture(s) {unknown} for this mode; --list{' --full' if a.full else ''} shows them")
        names = [n for n in names if n in a.only]
    # One process for the op fixtures, one per network (deterministic function numbering).
    groups = ([[n for n in names if n in OPS]] if any(n in OPS for n in names) else []) + \
             [[n] for n in names if n not in OPS]
    for g in groups:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", *g] + (["--full"] if a.full else [])
        r = subprocess.run(cmd)
        if r.returncode != 0:
            sys.exit(f"failed: {' '.join(g[:3])}{' ...' if len(g) > 3 else ''}")
    out_root = OUT_FULL if a.full else OUT_SMALL
    items = write_index(out_root)
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out_root) for f in fs)
    print(f"{len(items)} fixtures in {out_root}, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
