"""Builds Magenta's arbitrary image stylization SavedModel with Magenta's own code and records TF outputs.

The reference is not a transcription: the network is built by the `magenta` package from PyPI
(`magenta.models.arbitrary_image_stylization.arbitrary_image_stylization_build_model.build_model`)
and exported exactly as `magenta/models/arbitrary_image_stylization/export_hub.py` does
(`tf.compat.v1.wrap_function` + `tf.saved_model.save`, object-based checkpoint keys), by calling
`export_hub.main` itself on a TF1 checkpoint holding random, non-trivial values for every variable
(batch-norm moving means/betas nonzero, moving variances positive and not 1).

`magenta` is installed without its dependencies (`pip install --no-deps magenta`, done by this script
when missing). Its top-level `magenta/__init__.py` imports music libraries the model never uses
(tensorflow_probability, note_seq, ...), so this script registers `magenta` as a bare package (its
real folder as `__path__`, without running that `__init__`); the model code itself is untouched.

Usage:
  tools/.venv/bin/python tools/make_magenta_fixture.py            # small fixture (committed)
  tools/.venv/bin/python tools/make_magenta_fixture.py --full     # real widths -> tools/out/stylization_full

Small fixture (default OUT = tests/fixtures/stylization): honest size reduction through arguments the
Magenta / slim code already has: slim `inception_v3_base(depth_multiplier=0.0625, min_depth=4)`
(Magenta's `style_prediction` calls `inception_v3.inception_v3_base`; the call is wrapped to pass these
two keyword arguments) and `nza_model.transform(alpha=0.25)` + `style_normalization_activations(alpha=0.25)`
(the width multiplier Magenta's own mobile/TF Lite variant uses). Bottleneck stays 100, end point Mixed_6e.
Full mode: depth_multiplier=1, min_depth=16, alpha=1 (the published architecture).

Writes, under OUT:
  saved_model/                the exported SavedModel (saved_model.pb + variables/); for the small
                              fixture packed as saved_model.tar.gz (holding saved_model/)
  cases.json                  list of cases: {"name", "content": file, "style": file,
                              "stylized": file, "bottleneck": file, "content_shape", "style_shape",
                              "stylized_shape"}; plus "config": the build parameters used
  <case>_content.npy, <case>_style.npy   uint8 NHWC inputs [1,H,W,3]; the network is fed value/255
                              as float32 (what a decoded 8-bit image gives)
  <case>_stylized.npy         float32 NHWC output of the *loaded SavedModel* (TF2 `tf.saved_model.load`)
  <case>_bottleneck.npy       float32 [1,100] style bottleneck (same weights, TF1 graph: not a signature output)
In --full mode the TF1 name-based checkpoint the export was made from is kept as tf1_ckpt/model.ckpt
(for tools/bench_stylization_tf.py), and the inputs are the shared images (../shared/data/images) when present: content
resized to 384x384 and style to 256x256 by TF bilinear resize, quantized to uint8 and saved as PNG too
(<case>_content.png, <case>_style.png) so a program reading images sees exactly the same values.
"""

import argparse
import functools
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SMALL = dict(depth_multiplier=0.0625, min_depth=4, alpha=0.25, bottleneck=100, end_point="Mixed_6e")
FULL = dict(depth_multiplier=1.0, min_depth=16, alpha=1.0, bottleneck=100, end_point="Mixed_6e")


def ensure_magenta():
    if importlib.util.find_spec("magenta") is None:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--no-deps", "magenta==2.1.4"])
    # tf_slim's batch_norm builds `tf.compat.v1.layers.BatchNormalization`, which TF 2.21 lazily imports
    # from `tf_keras.legacy_tf_layers.normalization`; tf-keras 2.21 ships that module as
    # `tf_keras.src.legacy_tf_layers.normalization`, so register it under the expected name.
    if "tf_keras.legacy_tf_layers" not in sys.modules:
        if importlib.util.find_spec("tf_keras") is None:
            subprocess.check_call([sys.executable, "-m", "pip", "install", "--no-deps", "tf-keras==2.21.0"])
        import tf_keras.src.legacy_tf_layers as legacy
        import tf_keras.src.legacy_tf_layers.normalization as legacy_norm
        sys.modules["tf_keras.legacy_tf_layers"] = legacy
        sys.modules["tf_keras.legacy_tf_layers.normalization"] = legacy_norm
    spec = importlib.util.find_spec("magenta")
    if "magenta" not in sys.modules:
        pkg = types.ModuleType("magenta")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["magenta"] = pkg


def patched_build_model_module(cfg):
    """Magenta's build_model module, with its `inception_v3` and `transformer_model` references
    wrapped to pass the width arguments of `cfg` (identity for the full model)."""
    ensure_magenta()
    from magenta.models.arbitrary_image_stylization import arbitrary_image_stylization_build_model as bm
    from magenta.models.arbitrary_image_stylization import nza_model
    from tf_slim.nets import inception_v3

    bm.inception_v3 = types.SimpleNamespace(inception_v3_base=functools.partial(
        inception_v3.inception_v3_base, depth_multiplier=cfg["depth_multiplier"], min_depth=cfg["min_depth"]))
    bm.transformer_model = types.SimpleNamespace(
        transform=functools.partial(nza_model.transform, alpha=cfg["alpha"]),
        style_normalization_activations=functools.partial(
            nza_model.style_normalization_activations, alpha=cfg["alpha"]))
    orig = bm.build_model
    if not getattr(orig, "_patched", False):
        def build_model(*a, **k):
            k.setdefault("inception_end_point", cfg["end_point"])
            k.setdefault("style_prediction_bottleneck", cfg["bottleneck"])
            return orig(*a, **k)
        build_model._patched = True
        bm.build_model = build_model
    return bm


def random_value(name, shape, rng):
    """Random, non-trivial values. They lie on a 1/256 grid (exact in float32) so the committed
    archive compresses; the positions are random, so any layout error still changes the output."""
    import numpy as np
    shape = tuple(int(s) for s in shape)
    if name.endswith("moving_variance"):
        v = rng.uniform(0.3, 1.7, shape)
    elif name.endswith("moving_mean"):
        v = rng.normal(0.0, 0.3, shape)
    elif name.endswith("beta"):
        v = rng.normal(0.1, 0.2, shape)
    elif name.endswith("biases"):
        # style_params/<N>/Conv_1 = gamma: keep it around 1 so the network stays well conditioned.
        v = (1.0 if "/Conv_1/" in name else 0.0) + rng.normal(0.0, 0.2, shape)
    elif name.endswith("weights"):
        fan_in = int(np.prod(shape[:-1]))
        v = rng.normal(0.0, 1.0 / np.sqrt(fan_in), shape)
    else:
        raise ValueError(f"unexpected variable {name} {shape}")
    v = np.round(v * 256.0) / 256.0
    if name.endswith("moving_variance"):
        v = np.maximum(v, 0.25)
    return v.astype(np.float32)


def stage_checkpoint(cfg, out, cases):
    """TF1 graph: build_model, random values, save a name-based checkpoint, record bottlenecks."""
    import numpy as np
    import tensorflow.compat.v1 as tf
    tf.disable_v2_behavior()
    bm = patched_build_model_module(cfg)
    rng = np.random.default_rng(20261125)
    g = tf.Graph()
    with g.as_default():
        content = tf.placeholder(tf.float32, (None, None, None, 3))
        style = tf.placeholder(tf.float32, (None, None, None, 3))
        stylized, _, _, bottleneck = bm.build_model(content, style, trainable=False, is_training=False,
                                                    adds_losses=False)
        variables = tf.global_variables()
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for v in variables:
                v.load(random_value(v.op.name, v.shape, rng), sess)
            tf.train.Saver(variables).save(sess, os.path.join(out, "tmp_ckpt", "model.ckpt"))
            for c in cases:
                x = load_input(os.path.join(out, c["content"]))
                s = load_input(os.path.join(out, c["style"]))
                y, b = sess.run([stylized, bottleneck], {content: x, style: s})
                np.save(os.path.join(out, c["bottleneck"]), b.reshape(b.shape[0], -1).astype(np.float32))
                np.save(os.path.join(out, "tmp_ckpt", c["name"] + "_tf1.npy"), y)
        n_params = sum(int(np.prod(v.shape)) for v in variables)
    print(f"{len(variables)} variables, {n_params} parameters")


def stage_export(cfg, out):
    """Magenta's export_hub.main on the random checkpoint."""
    import tensorflow.compat.v1 as tf
    tf.disable_v2_behavior()
    patched_build_model_module(cfg)
    from absl import flags
    from magenta.models.arbitrary_image_stylization import export_hub
    flags.FLAGS([sys.argv[0]])
    flags.FLAGS.checkpoint = os.path.join(out, "tmp_ckpt", "model.ckpt")
    flags.FLAGS.export_path = os.path.join(out, "saved_model")
    export_hub.main()


def stage_run(out, cases):
    """TF2: load the SavedModel like a TF-Hub user and record its outputs."""
    import numpy as np
    import tensorflow as tf
    m = tf.saved_model.load(os.path.join(out, "saved_model"))
    worst = 0.0
    for c in cases:
        x = load_input(os.path.join(out, c["content"]))
        s = load_input(os.path.join(out, c["style"]))
        y = m(tf.constant(x), tf.constant(s))[0].numpy()
        tf1 = np.load(os.path.join(out, "tmp_ckpt", c["name"] + "_tf1.npy"))
        worst = max(worst, float(np.abs(y - tf1).max()))
        np.save(os.path.join(out, c["stylized"]), y.astype(np.float32))
        c["stylized_shape"] = list(y.shape)
        print(f"{c['name']}: content {x.shape} style {s.shape} -> {y.shape}, range [{y.min():.4f}, {y.max():.4f}], "
              f"std {y.std():.4f}")
    print(f"SavedModel vs TF1 graph max abs diff: {worst:.3g}")


def synthetic(h, w, seed):
    import numpy as np
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    img = np.stack([0.5 + 0.4 * np.sin(6 * xx + 3 * yy + seed), yy * 0.8 + 0.1, 0.5 + 0.3 * np.cos(9 * xx * yy)], -1)
    img = np.clip(img + rng.normal(0, 0.08, img.shape), 0, 1)
    return np.round(img[None] * 255.0).astype(np.uint8)


def load_input(path):
    """Inputs are stored as uint8 [1,H,W,3]; the network gets them as float32 value/255 (like a decoded image)."""
    import numpy as np
    return np.load(path).astype(np.float32) / np.float32(255.0)


def make_inputs(full, out):
    import numpy as np
    cases = []
    if not full:
        for name, cs, ss, seed in [("square", (64, 64), (96, 96), 1), ("odd", (67, 61), (80, 86), 2)]:
            cases.append(dict(name=name, content_shape=[1, *cs, 3], style_shape=[1, *ss, 3]))
            np.save(os.path.join(out, f"{name}_content.npy"), synthetic(*cs, seed))
            np.save(os.path.join(out, f"{name}_style.npy"), synthetic(*ss, seed + 10))
    else:
        import tensorflow as tf
        img_dir = os.path.join(ROOT, "..", "shared", "data", "images")
        pairs = [("tuebingen.jpg", "starry_night.jpg"), ("grace_hopper.jpg", "The_Great_Wave_off_Kanagawa.jpg"),
                 ("YellowLabradorLooking_new.jpg", "kandinsky.jpg")]
        if not os.path.isdir(img_dir):
            print(f"{img_dir} is absent: using synthetic images")
            pairs = []
            for i in range(2):
                cases.append(dict(name=f"synthetic{i}", content_shape=[1, 384, 384, 3], style_shape=[1, 256, 256, 3]))
                np.save(os.path.join(out, f"synthetic{i}_content.npy"), synthetic(384, 384, i))
                np.save(os.path.join(out, f"synthetic{i}_style.npy"), synthetic(256, 256, i + 10))
        for ci, si in pairs:
            name = os.path.splitext(ci)[0] + "__" + os.path.splitext(si)[0]
            for role, fname, size in [("content", ci, 384), ("style", si, 256)]:
                raw = tf.io.decode_image(tf.io.read_file(os.path.join(img_dir, fname)), channels=3, expand_animations=False)
                img = tf.image.resize(tf.cast(raw, tf.float32), (size, size), method="bilinear")
                u8 = tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)
                tf.io.write_file(os.path.join(out, f"{name}_{role}.png"), tf.io.encode_png(u8))
                np.save(os.path.join(out, f"{name}_{role}.npy"), u8.numpy()[None])
            cases.append(dict(name=name, content_shape=[1, 384, 384, 3], style_shape=[1, 256, 256, 3],
                              content_png=f"{name}_content.png", style_png=f"{name}_style.png"))
    for c in cases:
        c.update(content=f"{c['name']}_content.npy", style=f"{c['name']}_style.npy",
                 stylized=f"{c['name']}_stylized.npy", bottleneck=f"{c['name']}_bottleneck.npy")
    return cases


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="real widths, 384 content / 256 style, to tools/out/")
    ap.add_argument("--out", help="output folder")
    ap.add_argument("--stage", choices=["checkpoint", "export", "run"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    cfg = FULL if args.full else SMALL
    out = args.out or (os.path.join(HERE, "out", "stylization_full") if args.full
                       else os.path.join(ROOT, "tests", "fixtures", "stylization"))
    if args.stage:
        meta = json.load(open(os.path.join(out, "cases.json")))
        if args.stage == "checkpoint":
            stage_checkpoint(cfg, out, meta["cases"])
        elif args.stage == "export":
            stage_export(cfg, out)
        else:
            stage_run(out, meta["cases"])
            tmp = os.path.join(out, "cases.json.tmp")
            with open(tmp, "w") as f:
                json.dump(meta, f, indent=1)
            os.replace(tmp, os.path.join(out, "cases.json"))
        return
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)
    cases = make_inputs(args.full, out)
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump({"config": cfg, "cases": cases}, f, indent=1)
    # Each stage in its own process: the TF1 stages need tf.disable_v2_behavior(), the last one TF2.
    for stage in ["checkpoint", "export", "run"]:
        subprocess.check_call([sys.executable, os.path.abspath(__file__), "--out", out, "--stage", stage]
                              + (["--full"] if args.full else []))
    if args.full:
        # Kept for tools/bench_stylization_tf.py (per-half TF timings need the TF1 graph).
        os.replace(os.path.join(out, "tmp_ckpt"), os.path.join(out, "tf1_ckpt"))
    else:
        shutil.rmtree(os.path.join(out, "tmp_ckpt"))
    if not args.full:
        # The graph (saved_model.pb, ~1.4 MB) compresses well; commit it as a gzipped tar.
        import tarfile
        tmp = os.path.join(out, "saved_model.tar.gz.tmp")
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(os.path.join(out, "saved_model"), arcname="saved_model")
        os.replace(tmp, os.path.join(out, "saved_model.tar.gz"))
        shutil.rmtree(os.path.join(out, "saved_model"))
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(out, "**"), recursive=True) if os.path.isfile(p))
    print(f"wrote {out} ({total} bytes)")


if __name__ == "__main__":
    main()
