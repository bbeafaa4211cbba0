"""TensorFlow's own spread on a graph fixture's `training=True` output: the fixture's
`__call__(input, training=True)` run once with oneDNN's kernels (TF's default on x86, what the
fixture recorded) and once with Eigen's (TF_ENABLE_ONEDNN_OPTS=0), each in its own process;
prints the largest difference between the two (and each against the fixture) over the largest
|output|, the measure `crates/tfgraph/tests/tf_parity.rs` holds tfhub-rs to.

Batch statistics over a fixture's two images amplify rounding in low-variance channels, so a
full-size network's training output can differ from TensorFlow's by more than the test's 1e-4
while TensorFlow differs from itself by more still: this script says by how much.

Usage:  tools/.venv/bin/python tools/tf_training_spread.py NAME [FIXTURES]
        (FIXTURES default tools/out/tfgraph, made by tools/make_tfgraph_fixtures.py --full)
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))


def run_one(root, out):
    import tensorflow as tf

    x = load_file(os.path.join(root, "expected.safetensors"))["input"]
    model = tf.saved_model.load(os.path.join(root, "saved_model"))
    np.save(out, model.__call__(tf.constant(x), training=True).numpy())


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return run_one(sys.argv[2], sys.argv[3])
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    name = sys.argv[1]
    fixtures = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "out", "tfgraph")
    root = os.path.join(fixtures, name)
    want = load_file(os.path.join(root, "expected.safetensors"))["output_training"]
    scale = float(np.abs(want).max())
    outs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for onednn in ("1", "0"):
            env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="2")
            out = os.path.join(tmp, f"{onednn}.npy")
            subprocess.run([sys.executable, __file__, "--child", root, out], env=env, check=True)
            outs[onednn] = np.load(out)
    rel = lambda a, b: float(np.abs(a - b).max()) / scale
    print(f"{name}: training output, TF oneDNN vs the fixture {rel(outs['1'], want):.3e}, "
          f"Eigen vs the fixture {rel(outs['0'], want):.3e}, "
          f"oneDNN vs Eigen (TF's own spread) {rel(outs['1'], outs['0']):.3e}")


if __name__ == "__main__":
    main()
