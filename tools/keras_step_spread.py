"""How far TensorFlow's fine-tuning steps differ from themselves (issue 13, step parity):
`tools/keras_finetune_step.py` run twice on the same SavedModel, batch and start, once with
oneDNN's kernels (TF's default on x86) and once with Eigen's (TF_ENABLE_ONEDNN_OPTS=0), then
compared with the measures `crates/training/tests/keras_layer_step.rs` applies to tfhub-rs:
each step's loss (relative), the first step's gradients and every variable after two steps
(largest difference over the largest magnitude of the tensor).

With batch statistics over a 4-image batch, values that sit within rounding of a ReLU edge
fall on either side depending on the summation order, and Adam turns tiny gradient
differences into steps of up to `lr`: TF's two kernel sets disagree there by far more than
1e-5, which bounds what any other implementation can be held to.

Usage: tools/.venv/bin/python tools/keras_step_spread.py [MODEL_DIR] [SIDE]
       (default: the MobileNetV2 feature-vector fixture at 64 px; the Inception-v3 one:
       tests/fixtures/inception_v3/hub_fv_small/saved_model 139)
"""

import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(model, side, onednn, out):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1" if onednn else "0", TF_CPP_MIN_LOG_LEVEL="2")
    r = subprocess.run([sys.executable, os.path.join(HERE, "keras_finetune_step.py"), model, out, str(side)],
                       env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-3000:])
    return load_file(os.path.join(out, "expected.safetensors"))


def rel(got, want):
    scale = max(1e-3, float(np.abs(want).max()))
    return float(np.abs(got.astype(np.float64) - want).max()) / scale


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        ROOT, "tests/fixtures/tfgraph/mobilenet_v2_fv_small/saved_model")
    side = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    with tempfile.TemporaryDirectory() as tmp:
        a = run(model, side, True, os.path.join(tmp, "onednn"))
        b = run(model, side, False, os.path.join(tmp, "eigen"))
    print(f"{model} at {side} px: oneDNN against Eigen kernels (TF's own spread)")
    for mode in ("frozen", "batch"):
        for step in (1, 2):
            k = f"{mode}/loss_{step}"
            print(f"  {mode} step {step}: loss {float(a[k][0]):.6f} vs {float(b[k][0]):.6f}, "
                  f"rel. {abs(float(a[k][0]) - float(b[k][0])) / abs(float(a[k][0])):.2e}")
        g = max((rel(b[k], a[k]), k) for k in a if k.startswith(f"{mode}/grad_1/"))
        v = max((rel(b[k], a[k]), k) for k in a if k.startswith(f"{mode}/2/"))
        h = rel(b[f"{mode}/2/head/kernel"], a[f"{mode}/2/head/kernel"])
        print(f"  {mode}: step-1 gradients within {g[0]:.2e} ({g[1].split('/', 2)[2]}), variables "
              f"after two steps within {v[0]:.2e} ({v[1].split('/', 2)[2]}), head kernel {h:.2e}")


if __name__ == "__main__":
    main()
