"""Builds TF-Slim Inception-v3 with random, non-trivial weights, exports it the way TF2 hub
models are exported, and records what TensorFlow computes. Ground truth for `models::InceptionV3`.

Usage:
    tools/.venv/bin/python tools/make_inception_fixture.py           # small committed fixture
    tools/.venv/bin/python tools/make_inception_fixture.py --full    # full size, to tools/out/

Network: `tf_slim.nets.inception_v3.inception_v3` under `inception_v3_arg_scope()` (batch norm
eps 1e-3, beta only), built inside `tf.compat.v1.make_template("module", ...)` so the variables
have slim names with a `module/` prefix (like TF1 hub modules: `module/InceptionV3/...`), and saved
with `tf.saved_model.save` (object-based checkpoint keys; SavedVariable.name = slim names).
The serving function takes hub-convention input `[B, H, W, 3]` in [0, 1] and computes
`x * 2 - 1` inside, like the TF Hub image modules.

Random weights (numpy seed 0): conv weights N(0, 2/fan_in), BatchNorm beta U(-0.2, 0.2),
moving_mean U(-0.2, 0.2), moving_variance U(0.5, 2), logits weights N(0, 1/fan_in),
biases U(-0.1, 0.1).

Small mode writes tests/fixtures/inception_v3/small/ (depth_multiplier 0.05, min_depth 4,
num_classes 11):
    saved_model/                 the SavedModel (saved_model.pb, variables/); to keep it small it holds
                                 the variables and object graph only (no serving function)
    expected.safetensors         inputs and TensorFlow's outputs:
        a/input_u8 [2, 91, 107, 3] (uint8; the network input is input_u8 / 255 as float32), a/logits [2, 11], a/features [2, C] (global mean of Mixed_7c),
        a/Mixed_5b, a/Mixed_6e, a/Mixed_7c (NHWC end points),
        b/input_u8 [1, 75, 75, 3], b/logits, b/features,
        m/input_u8 [2, 83, 83, 3], m/Mixed_6e: the same weights run as Magenta's style backbone
        (ReLU6 everywhere, final_endpoint Mixed_6e) for `InceptionV3Config::magenta_style_backbone`,
        fed the raw network input (input_u8 / 255 * 2 - 1) * 10 (so that ReLU6 clips).
    expected.json                config + shapes + top-5 per image.

Full mode writes tools/out/inception_v3_full/ (depth 1.0, min_depth 16, 1001 classes):
    saved_model/ (with a serving_default signature), variables_tf.safetensors (the variables by
    TF name, `module/InceptionV3/...`),
    expected.safetensors: for every image of ../shared/data/images (sorted) `img<i>/input`
        [1, 299, 299, 3] (decode, float [0,1], tf.image.resize bilinear 299x299, antialias off),
        `img<i>/logits` [1, 1001], `img<i>/features` [1, 2048]; and `batch/input` [4, 299, 299, 3]
        (the first four images), `batch/logits`, `batch/features`,
    expected.json: image file names + top-5.
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import ops as _ops

if not hasattr(_ops, "Tensor"):  # tf_slim 1.1.0 still refers to ops.Tensor (removed in TF 2.21)
    _ops.Tensor = tf.Tensor

import tf_slim as slim  # noqa: E402
from tf_slim.nets import inception_v3 as iv3  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def build(num_classes, depth_multiplier, min_depth, with_function=True, final_endpoint=None):
    def net(x, activation=tf.nn.relu, final_endpoint=None, raw=False, is_training=False):
        # updates_collections=None selects slim's fused batch norm (the keras path is not
        # importable with TF 2.21); identical inference arithmetic.
        with slim.arg_scope(iv3.inception_v3_arg_scope(updates_collections=None)):
            with slim.arg_scope([slim.conv2d], activation_fn=activation):
                if not raw:  # raw: x is already the network's input (no hub rescale)
                    x = x * 2.0 - 1.0
                if final_endpoint is not None:
                    # inception_v3() sets is_training on batch_norm itself; the bare base needs
                    # it here (slim's default is batch statistics). is_training=True: batch
                    # statistics, moving averages updated in place (decay 0.9997).
                    with slim.arg_scope([slim.batch_norm], is_training=is_training):
                        _, eps = iv3.inception_v3_base(x, final_endpoint=final_endpoint, min_depth=min_depth,
                                                       depth_multiplier=depth_multiplier, scope="InceptionV3")
                    return None, eps
                logits, eps = iv3.inception_v3(x, num_classes=num_classes, is_training=False,
                                               depth_multiplier=depth_multiplier, min_depth=min_depth,
                                               create_aux_logits=False)
                return logits, eps

    tmpl = tf.compat.v1.make_template("module", net)

    class Model(tf.Module):
        def __init__(self):
            super().__init__()
            self.tmpl = tmpl
            tmpl(tf.zeros([1, 299, 299, 3]))
            self.all_variables = list(tmpl.variables)

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def serve(self, images):
            logits, eps = self.tmpl(images)
            return {"logits": logits, "features": tf.reduce_mean(eps["Mixed_7c"], axis=[1, 2])}

    class VariablesOnly(tf.Module):
        def __init__(self):
            super().__init__()
            self.tmpl = tmpl
            # Built up to final_endpoint (None: the whole network): only those variables exist.
            tmpl(tf.zeros([1, 299, 299, 3]), final_endpoint=final_endpoint)
            self.all_variables = list(tmpl.variables)

    return (Model() if with_function else VariablesOnly()), tmpl


def randomise(variables, seed=0):
    rng = np.random.default_rng(seed)
    for v in variables:
        shape = v.shape.as_list()
        name = v.name
        if name.endswith("weights:0"):
            fan_in = int(np.prod(shape[:3]))
            std = np.sqrt((1.0 if "Logits" in name else 2.0) / fan_in)
            val = rng.normal(0.0, std, shape)
        elif name.endswith("biases:0"):
            val = rng.uniform(-0.1, 0.1, shape)
        elif name.endswith("beta:0") or name.endswith("moving_mean:0"):
            val = rng.uniform(-0.2, 0.2, shape)
        elif name.endswith("moving_variance:0"):
            val = rng.uniform(0.5, 2.0, shape)
        else:
            raise SystemExit(f"unexpected variable {name}")
        v.assign(val.astype(np.float32))


def run(tmpl, x, **kw):
    """Runs the template in a tf.function (an eager template call after tracing returns
    symbolic tensors) and returns (logits or None, {end point: numpy array})."""
    logits, eps = tf.function(lambda t: tmpl(t, **kw))(tf.constant(x))
    return (None if logits is None else logits.numpy()), {k: v.numpy() for k, v in eps.items()}


def top5(logits):
    return [[int(i) for i in np.argsort(-row, kind="stable")[:5]] for row in logits]


def save_model(model, out, safetensors_copy):
    sm = os.path.join(out, "saved_model")
    if os.path.exists(sm):
        shutil.rmtree(sm)
    if hasattr(model, "serve"):
        tf.saved_model.save(model, sm, signatures={"serving_default": model.serve})
    else:
        # No functions at all (not even the traced save/restore functions) to keep the
        # committed saved_model.pb small; the checkpoint is still object-based.
        tf.saved_model.save(model, sm, options=tf.saved_model.SaveOptions(experimental_skip_saver=True))
    tensors = {v.name[:-2]: v.numpy() for v in model.all_variables}
    if safetensors_copy:
        save_file(tensors, os.path.join(out, "variables_tf.safetensors"))
    return tensors


def atomic_json(obj, path):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def small(out):
    cfg = dict(num_classes=11, depth_multiplier=0.05, min_depth=4)
    model, tmpl = build(**cfg, with_function=False)
    randomise(model.all_variables)
    tensors = save_model(model, out, safetensors_copy=False)
    rng = np.random.default_rng(1)
    exp, meta = {}, {"config": cfg, "cases": {}}

    def image(shape):
        # Distinct smooth-ish pictures (coarse noise upsampled, per-image brightness), stored
        # as uint8 so the fixture stays small: the network input is u8 / 255 (float32).
        b, h, w, _ = shape
        out = []
        for i in range(b):
            coarse = rng.uniform(0, 1, [1, h // 8 + 1, w // 8 + 1, 3])
            up = tf.image.resize(coarse, [h, w], method="bilinear").numpy()[0]
            fine = rng.uniform(-0.15, 0.15, [h, w, 3])
            out.append(np.clip(0.6 * up + fine + (0.35 if i % 2 else -0.1), 0, 1))
        u8 = np.round(np.stack(out) * 255).astype(np.uint8)
        return u8, (u8.astype(np.float32) / np.float32(255.0))

    for case, shape in [("a", [2, 91, 107, 3]), ("b", [1, 75, 75, 3])]:
        u8, x = image(shape)
        logits, eps = run(tmpl, x)
        exp[f"{case}/input_u8"] = u8
        exp[f"{case}/logits"] = logits
        exp[f"{case}/features"] = eps["Mixed_7c"].mean(axis=(1, 2))
        if case == "a":
            for e in ["Mixed_5b", "Mixed_6e", "Mixed_7c"]:
                exp[f"a/{e}"] = eps[e]
        meta["cases"][case] = {"input": shape, "top5": top5(logits)}
    # Magenta-style backbone from the same variables: ReLU6, final_endpoint Mixed_6e.
    u8, x = image([2, 83, 83, 3])
    # Fed raw (NCHW in Rust: forward_base) with a x10 range so that ReLU6 actually clips.
    xr = (x * np.float32(2.0) - np.float32(1.0)) * np.float32(10.0)
    _, eps = run(tmpl, xr, activation=tf.nn.relu6, final_endpoint="Mixed_6e", raw=True)
    _, eps_relu = run(tmpl, xr, activation=tf.nn.relu, final_endpoint="Mixed_6e", raw=True)
    gap = float(np.abs(eps["Mixed_6e"] - eps_relu["Mixed_6e"]).max() / np.abs(eps["Mixed_6e"]).max())
    assert gap > 0.05, f"ReLU6 makes no difference ({gap}); the case would not test it"
    exp["m/input_u8"] = u8
    exp["m/Mixed_6e"] = eps["Mixed_6e"]
    meta["cases"]["m"] = {"input": list(x.shape), "activation": "relu6", "final_endpoint": "Mixed_6e",
                          "raw_input": "(input_u8 / 255 * 2 - 1) * 10, fed without the hub rescale",
                          "relu_vs_relu6_rel_gap": gap}
    # The SavedModel must restore the same variables (checks the export).
    loaded = tf.saved_model.load(os.path.join(out, "saved_model"))
    got = {v.name[:-2]: v.numpy() for v in loaded.all_variables}
    assert len(got) == len(tensors) and all(np.array_equal(got[k], tensors[k]) for k in tensors), "reload differs"
    save_file(exp, os.path.join(out, "expected.safetensors"))
    for k, v in exp.items():
        meta.setdefault("shapes", {})[k] = list(v.shape)
    atomic_json(meta, os.path.join(out, "expected.json"))


def winograd(out):
    """A wider, cut network whose 3x3 stride-1 convolutions have >= 16 input channels, so that
    the CPU engine runs them by Winograd F(2x2, 3x3): depth_multiplier 0.25, min_depth 16, up to
    Mixed_5d. Writes variables.safetensors (TF names, `module/InceptionV3/...`) and
    expected.safetensors: input_u8 [2, 91, 107, 3], Conv2d_4a_3x3, Mixed_5b, Mixed_5d (NHWC)."""
    cfg = dict(num_classes=11, depth_multiplier=0.25, min_depth=16)
    model, tmpl = build(**cfg, with_function=False, final_endpoint="Mixed_5d")
    randomise(model.all_variables, seed=3)
    save_file({v.name[:-2]: v.numpy() for v in model.all_variables},
              os.path.join(out, "variables.safetensors"))
    rng = np.random.default_rng(4)
    imgs = []
    for i in range(2):
        coarse = rng.uniform(0, 1, [1, 13, 15, 3])
        up = tf.image.resize(coarse, [91, 107], method="bilinear").numpy()[0]
        imgs.append(np.clip(0.6 * up + rng.uniform(-0.15, 0.15, [91, 107, 3]) + 0.2 * i, 0, 1))
    u8 = np.round(np.stack(imgs) * 255).astype(np.uint8)
    x = u8.astype(np.float32) / np.float32(255.0)
    _, eps = run(tmpl, x, final_endpoint="Mixed_5d")
    exp = {"input_u8": u8}
    for e in ["Conv2d_4a_3x3", "Mixed_5b", "Mixed_5d"]:
        exp[e] = eps[e]
    save_file(exp, os.path.join(out, "expected.safetensors"))
    atomic_json({"config": dict(cfg, final_endpoint="Mixed_5d"),
                 "shapes": {k: list(v.shape) for k, v in exp.items()}},
                os.path.join(out, "expected.json"))


def load_image(path):
    img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    img = tf.image.convert_image_dtype(img, tf.float32)
    return tf.image.resize(img, [299, 299], method="bilinear", antialias=False).numpy()


def full(out, images_dir):
    cfg = dict(num_classes=1001, depth_multiplier=1.0, min_depth=16)
    model, tmpl = build(**cfg)
    randomise(model.all_variables)
    save_model(model, out, safetensors_copy=True)
    files = sorted(f for f in os.listdir(images_dir) if f.lower().endswith((".jpg", ".jpeg", ".png")))
    exp, meta = {}, {"config": cfg, "images": files, "top5": {}}
    for i, f in enumerate(files):
        x = load_image(os.path.join(images_dir, f))[None]
        logits, eps = run(tmpl, x)
        exp[f"img{i}/input"] = x
        exp[f"img{i}/logits"] = logits
        exp[f"img{i}/features"] = eps["Mixed_7c"].mean(axis=(1, 2))
        meta["top5"][f] = top5(logits)[0]
    xb = np.concatenate([exp[f"img{i}/input"] for i in range(min(4, len(files)))])
    logits, eps = run(tmpl, xb)
    exp["batch/input"] = xb
    exp["batch/logits"] = logits
    exp["batch/features"] = eps["Mixed_7c"].mean(axis=(1, 2))
    save_file(exp, os.path.join(out, "expected.safetensors"))
    atomic_json(meta, os.path.join(out, "expected.json"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="full-size model into tools/out/inception_v3_full")
    ap.add_argument("--winograd", action="store_true",
                    help="the cut, wider fixture into tests/fixtures/inception_v3/winograd")
    ap.add_argument("--out", help="output folder (default depends on the mode)")
    ap.add_argument("--images", default=os.path.join(ROOT, "..", "shared", "data", "images"))
    a = ap.parse_args()
    if a.winograd:
        out = a.out or os.path.join(ROOT, "tests", "fixtures", "inception_v3", "winograd")
        os.makedirs(out, exist_ok=True)
        winograd(out)
    elif a.full:
        out = a.out or os.path.join(ROOT, "tools", "out", "inception_v3_full")
        os.makedirs(out, exist_ok=True)
        if not os.path.isdir(a.images):
            sys.exit(f"{a.images}: image folder not found")
        full(out, a.images)
    else:
        out = a.out or os.path.join(ROOT, "tests", "fixtures", "inception_v3", "small")
        os.makedirs(out, exist_ok=True)
        small(out)
    print(out)


if __name__ == "__main__":
    main()
