"""Training convolutions, tfhub-rs' kernels against TensorFlow's (oneDNN) layer by layer (issue 13):
the forward pass, input gradient and filter gradient of the dense layers of
`cargo bench -p cpu-kernels --bench train_conv` (Inception-v3 at 299x299 and MobileNetV2 at
224x224, batch 12 by default), the two sides alternating round after round on the same
machine, the best time of each reported (this shared machine's memory speed moves by up to 2x
within minutes; compute does not, so the best of several rounds is the comparable figure).

TensorFlow runs `tf.nn.conv2d`, `Conv2DBackpropInput` and `Conv2DBackpropFilter` under
`tf.function` with its intra-op pool at `--threads` and one inter-op thread; tfhub-rs runs the
`train_conv` bench with `RAYON_NUM_THREADS` the same. `--threads 1` compares the kernels core
against core: in a fine-tuning step TensorFlow runs two operations at a time, each on about one
core, while tfhub-rs runs each on both.

Set-up: `tools/setup-python.sh --bench`. Usage:
    tools/.venv/bin/python tools/compare_train_conv.py [--threads 1] [--rounds 3] [--batch 12]
        [--only <label part>] [--json tools/out/compare_train_conv.json]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# (label as the bench prints it, input side, cin, cout, kh, kw, stride, padding): the bench's
# dense layers (its depthwise ones are left out).
LAYERS = [
    ("Conv2d_2a_3x3", 149, 32, 32, 3, 3, 1, "VALID"),
    ("Conv2d_2b_3x3", 147, 32, 64, 3, 3, 1, "SAME"),
    ("Conv2d_3b_1x1", 73, 64, 80, 1, 1, 1, "VALID"),
    ("Conv2d_4a_3x3", 73, 80, 192, 3, 3, 1, "VALID"),
    ("5b 1x1 192-64", 35, 192, 64, 1, 1, 1, "VALID"),
    ("5b 5x5 48-64", 35, 48, 64, 5, 5, 1, "SAME"),
    ("5b 3x3 64-96", 35, 64, 96, 3, 3, 1, "SAME"),
    ("6a 3x3/2 288-384", 35, 288, 384, 3, 3, 2, "VALID"),
    ("6b 1x1 768-192", 17, 768, 192, 1, 1, 1, "VALID"),
    ("6b 1x7 128-128", 17, 128, 128, 1, 7, 1, "SAME"),
    ("6e 7x1 192-192", 17, 192, 192, 7, 1, 1, "SAME"),
    ("7b 1x1 1280-320", 8, 1280, 320, 1, 1, 1, "VALID"),
    ("7c 1x1 2048-448", 8, 2048, 448, 1, 1, 1, "VALID"),
    ("7b 3x3 448-384", 8, 448, 384, 3, 3, 1, "SAME"),
    ("MNv2 3x3/2 3-32", 224, 3, 32, 3, 3, 2, "VALID"),
    ("MNv2 1x1 16-96", 112, 16, 96, 1, 1, 1, "VALID"),
    ("MNv2 1x1 24-144", 56, 24, 144, 1, 1, 1, "VALID"),
    ("MNv2 1x1 144-24", 56, 144, 24, 1, 1, 1, "VALID"),
    ("MNv2 1x1 96-576", 14, 96, 576, 1, 1, 1, "VALID"),
]

ROW = re.compile(r"^(.+?)\s{2,}[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+\(([\d.]+) / ([\d.]+) / ([\d.]+) / [\d.]+ ms\)")


def bench_binary():
    """Builds the train_conv bench (release) and returns its executable."""
    out = subprocess.run(
        ["cargo", "bench", "-p", "cpu-kernels", "--bench", "train_conv", "--no-run"],
        cwd=ROOT, capture_output=True, text=True, check=True)
    m = re.search(r"Executable .*\((.+?)\)", out.stderr + out.stdout)
    if not m:
        raise SystemExit("could not find the train_conv executable in cargo's output")
    return os.path.join(ROOT, m.group(1))


def rust_round(binary, threads, batch, only):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    cmd = [binary, "--batch", str(batch)] + (["--only", only] if only else [])
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    times = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            times[m.group(1).strip()] = [float(m.group(i)) for i in (2, 3, 4)]
    return times


def tf_round(threads, batch, only):
    """One round of TensorFlow's timings, in a child process (its thread pools are fixed at
    start-up)."""
    code = f"""
import json, time, numpy as np, tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads({threads})
tf.config.threading.set_inter_op_parallelism_threads(1)
out = {{}}
for label, side, ci, co, kh, kw, s, pad in {LAYERS!r}:
    if {only!r} and {only!r} not in label:
        continue
    rng = np.random.default_rng(1)
    x = tf.constant(rng.random(({batch}, side, side, ci), dtype=np.float32))
    w = tf.constant(rng.random((kh, kw, ci, co), dtype=np.float32) - 0.5)
    st = [1, s, s, 1]
    f = tf.function(lambda x, w: tf.nn.conv2d(x, w, st, pad))
    y = f(x, w)
    dy = tf.constant(rng.random(y.shape, dtype=np.float32))
    fi = tf.function(lambda dy, w: tf.raw_ops.Conv2DBackpropInput(
        input_sizes=x.shape, filter=w, out_backprop=dy, strides=st, padding=pad))
    ff = tf.function(lambda x, dy: tf.raw_ops.Conv2DBackpropFilter(
        input=x, filter_sizes=w.shape, out_backprop=dy, strides=st, padding=pad))
    ms = []
    for g, a in ((f, (x, w)), (fi, (dy, w)), (ff, (x, dy))):
        g(*a).numpy()
        best = 1e9
        for _ in range(3):
            t = time.perf_counter()
            g(*a).numpy()
            best = min(best, time.perf_counter() - t)
        ms.append(best * 1e3)
    out[label] = ms
print("JSON" + json.dumps(out))
"""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("JSON"))
    return json.loads(line[4:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--only", default="")
    ap.add_argument("--json", default=os.path.join(HERE, "out", "compare_train_conv.json"))
    a = ap.parse_args()
    binary = bench_binary()
    best = {"tensorflow": {}, "tfhub_rs": {}}

    def keep(side, times):
        for label, ms in times.items():
            old = best[side].get(label)
            best[side][label] = ms if old is None else [min(p, q) for p, q in zip(old, ms)]

    for r in range(a.rounds):
        t = time.perf_counter()
        keep("tensorflow", tf_round(a.threads, a.batch, a.only))
        keep("tfhub_rs", rust_round(binary, a.threads, a.batch, a.only))
        print(f"round {r + 1}/{a.rounds}: {time.perf_counter() - t:.0f} s", flush=True)
    print(f"{a.threads} thread(s), batch {a.batch}, best of {a.rounds} rounds, ms "
          f"(tfhub-rs / TensorFlow; below 1 tfhub-rs is faster)")
    print(f"{'layer':<18} {'fwd':>17} {'dx':>17} {'dw':>17}")
    totals = [[0.0, 0.0] for _ in range(3)]
    for label, *_ in LAYERS:
        ours, theirs = best["tfhub_rs"].get(label), best["tensorflow"].get(label)
        if ours is None or theirs is None:
            continue
        cells = []
        for i in range(3):
            totals[i][0] += ours[i]
            totals[i][1] += theirs[i]
            cells.append(f"{ours[i]:6.1f}/{theirs[i]:6.1f} {ours[i] / theirs[i]:4.2f}")
        print(f"{label:<18} " + " ".join(f"{c:>17}" for c in cells))
    print(f"{'total':<18} " + " ".join(
        f"{o:6.0f}/{t:6.0f} {o / t:4.2f}".rjust(17) for o, t in totals))
    os.makedirs(os.path.dirname(a.json), exist_ok=True)
    with open(a.json, "w") as fh:
        json.dump({"threads": a.threads, "batch": a.batch, "rounds": a.rounds, **best}, fh, indent=1)


if __name__ == "__main__":
    main()
