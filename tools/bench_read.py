"""Times reading a SavedModel's variables: Rust `savedmodel` vs TensorFlow.

Usage: tools/.venv/bin/python tools/bench_read.py [SAVED_MODEL_DIR]
       (default: tools/out/inception_v3_full/saved_model, made by tools/make_inception_fixture.py)

Runs `cargo run --release -p savedmodel --example read_all -- DIR` (open + decode + CRC-check every
variable; pass --debug to use the dev profile instead) and, in TensorFlow,
(a) `tf.train.load_checkpoint(DIR/variables/variables)` + reading every tensor, and
(b) `tf.saved_model.load(DIR)` (graph + variable restore). Prints one JSON object with the seconds
of each (best of 3 runs). Writes nothing.
"""

import json
import os
import subprocess
import sys
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
args = [a for a in sys.argv[1:] if not a.startswith("--")]
DIR = os.path.abspath(args[0] if args else os.path.join(ROOT, "tools/out/inception_v3_full/saved_model"))
profile = [] if "--debug" in sys.argv else ["--release"]


def best(f, n=3):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def rust():
    out = subprocess.run(["cargo", "run", "-q", *profile, "-p", "savedmodel", "--example", "read_all", "--", DIR],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


rust()  # build + warm the page cache
rust_runs = [rust() for _ in range(3)]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402


def tf_ckpt():
    r = tf.train.load_checkpoint(os.path.join(DIR, "variables", "variables"))
    for k in r.get_variable_to_shape_map():
        r.get_tensor(k)


print(json.dumps({
    "dir": DIR,
    "rust_profile": "release" if profile else "dev",
    "rust_read_all_s": min(r["total_s"] for r in rust_runs),
    "rust_open_s": min(r["open_s"] for r in rust_runs),
    "variables": rust_runs[0]["variables"],
    "tf_load_checkpoint_s": best(tf_ckpt),
    "tf_saved_model_load_s": best(lambda: tf.saved_model.load(DIR)),
}, indent=1))
