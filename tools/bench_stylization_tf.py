"""TensorFlow timings of the Magenta stylization SavedModel (384x384 content, 256x256 style).

Usage:  tools/.venv/bin/python tools/bench_stylization_tf.py [--iters N] [--json OUT.json]

Needs tools/out/stylization_full (tools/make_magenta_fixture.py --full). Measures, on the CPU with TF's
default threading, after 2 warm-up calls, the median over N runs of:
  - "total":       the exported SavedModel (`tf.saved_model.load(...)(content, style)`), what a TF Hub user runs;
  - "predictor":   the style prediction half alone (style image -> bottleneck), and
  - "transformer": the transformer half alone (content + bottleneck -> image),
the two halves in a TF1 session over the graph Magenta's `build_model` builds, with the same weights
(the checkpoint the export was made from, tf1_ckpt/), fetching the bottleneck tensor for the first and
feeding it for the second.
Prints one line per measurement and, with --json, writes {"total_ms", "predictor_ms", "transformer_ms", ...}.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out", "stylization_full")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def median_ms(fn, iters):
    fn()
    fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000.0)
    times.sort()
    return times[len(times) // 2]


def inputs():
    import numpy as np
    meta = json.load(open(os.path.join(OUT, "cases.json")))
    c = meta["cases"][0]
    load = lambda f: np.load(os.path.join(OUT, f)).astype(np.float32) / np.float32(255.0)
    return load(c["content"]), load(c["style"])


def bench_saved_model(iters):
    import tensorflow as tf
    content, style = inputs()
    m = tf.saved_model.load(os.path.join(OUT, "saved_model"))
    c, s = tf.constant(content), tf.constant(style)
    return median_ms(lambda: m(c, s)[0].numpy(), iters)


def bench_halves(iters):
    sys.path.insert(0, HERE)
    import make_magenta_fixture as mf
    import tensorflow.compat.v1 as tf
    tf.disable_v2_behavior()
    bm = mf.patched_build_model_module(mf.FULL)
    content, style = inputs()
    g = tf.Graph()
    with g.as_default():
        ci = tf.placeholder(tf.float32, (None, None, None, 3))
        si = tf.placeholder(tf.float32, (None, None, None, 3))
        stylized, _, _, bottleneck = bm.build_model(ci, si, trainable=False, is_training=False, adds_losses=False)
        with tf.Session() as sess:
            tf.train.Saver().restore(sess, os.path.join(OUT, "tf1_ckpt", "model.ckpt"))
            b = sess.run(bottleneck, {si: style})
            pred = median_ms(lambda: sess.run(bottleneck, {si: style}), iters)
            # Feeding the bottleneck tensor cuts the predictor off: only the transformer runs.
            trans = median_ms(lambda: sess.run(stylized, {ci: content, bottleneck: b}), iters)
            both = median_ms(lambda: sess.run(stylized, {ci: content, si: style}), iters)
    return pred, trans, both


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--json", help="write the numbers to this file")
    ap.add_argument("--part", choices=["saved_model", "halves"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not os.path.isfile(os.path.join(OUT, "cases.json")):
        sys.exit(f"{OUT} is absent: run tools/make_magenta_fixture.py --full first")
    if args.part == "saved_model":
        print(json.dumps({"total_ms": bench_saved_model(args.iters)}))
        return
    if args.part == "halves":
        p, t, b = bench_halves(args.iters)
        print(json.dumps({"predictor_ms": p, "transformer_ms": t, "tf1_graph_total_ms": b}))
        return
    # TF2 (SavedModel) and TF1 (session) in separate processes: disable_v2_behavior is global.
    res = {}
    for part in ["saved_model", "halves"]:
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--part", part, "--iters", str(args.iters)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(r.stderr[-3000:])
        res.update(json.loads(r.stdout.strip().splitlines()[-1]))
    import tensorflow as tf
    res["tensorflow"] = tf.__version__
    res["iters"] = args.iters
    for k, v in res.items():
        print(f"TF {k}: {v:.1f} ms" if isinstance(v, float) else f"TF {k}: {v}")
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(res, f, indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
