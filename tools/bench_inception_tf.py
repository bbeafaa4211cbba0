"""TensorFlow side of the Inception-v3 speed comparison (CPU, full width, 299x299).

Usage: tools/.venv/bin/python tools/bench_inception_tf.py [--iters 5]
Prints images/s at batch 1 and 16 for TF-Slim inception_v3 (random weights; speed does not
depend on the values) run as a tf.function, the way a TF Hub model runs. Writes nothing.
Compare with `cargo bench -p benches --bench inception`.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from make_inception_fixture import build, randomise  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--iters", type=int, default=5)
a = ap.parse_args()
model, tmpl = build(num_classes=1001, depth_multiplier=1.0, min_depth=16, with_function=False)
randomise(model.all_variables)
fn = tf.function(lambda x: tmpl(x)[0])
print(f"TF {tf.__version__}, intra-op threads {tf.config.threading.get_intra_op_parallelism_threads()} (0 = all cores)")
for batch, iters in [(1, a.iters), (16, max(1, a.iters // 4))]:
    x = tf.constant(np.random.default_rng(0).uniform(0, 1, [batch, 299, 299, 3]).astype(np.float32))
    fn(x).numpy()  # trace + warm-up
    t0 = time.perf_counter()
    for _ in range(iters):
        fn(x).numpy()
    dt = time.perf_counter() - t0
    print(f"batch {batch:2}: {batch * iters / dt:6.2f} img/s")
