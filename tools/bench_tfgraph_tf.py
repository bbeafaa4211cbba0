"""Times TensorFlow's `serving_default` on the SavedModels the tfgraph speed test uses.

Usage: tools/.venv/bin/python tools/bench_tfgraph_tf.py tools/out/tfgraph
Prints images/s at batch 1 and 16 per network (median of 5 runs after a warm-up), the same
protocol as `speed_of_full_size_networks_on_flex` in crates/tfgraph/tests/tf_parity.rs.
"""
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf
from safetensors.numpy import load_file


def main(root):
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        meta_path = os.path.join(d, "expected.json")
        if not os.path.exists(meta_path):
            continue
        meta = json.load(open(meta_path))
        if meta["kind"] != "network":
            continue
        x = load_file(os.path.join(d, "expected.safetensors"))["input"]
        fn = tf.saved_model.load(os.path.join(d, "saved_model")).signatures["serving_default"]
        key = list(fn.structured_input_signature[1].keys())[0]
        line = f"{name:28}"
        for batch in (1, 16):
            inp = tf.constant(np.repeat(x[:1], batch, axis=0))
            fn(**{key: inp})
            times = []
            for _ in range(5):
                t = time.perf_counter()
                out = fn(**{key: inp})
                [v.numpy() for v in out.values()]
                times.append(time.perf_counter() - t)
            times.sort()
            line += f"  batch {batch}: {batch / times[2]:7.1f} img/s"
        print(line, flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tools/out/tfgraph")
