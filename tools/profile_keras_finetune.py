"""Where Keras' fine-tuning step goes, by TensorFlow's own profiler (issue 13): trains
`hub.KerasLayer(SavedModel, trainable=True)` + `Dense(10)` as `tools/bench_finetune.py` does
(Adam 1e-3, random images and labels), one epoch to warm up, then traces one more epoch with
`tf.profiler.experimental` and sums the operations' times from the trace by operation type,
and by phase (forward, gradients, update).

Set-up: `tools/setup-python.sh --bench`. Usage:
    tools/.venv/bin/python tools/profile_keras_finetune.py [--model DIR] [--size 299]
        [--batch 12] [--steps 6] [--mode frozen|whole] [--by-name 20]

`frozen` calls the trainable layer with training=False (the batch norms on their moving
statistics, `finetune --train-backbone`'s default); `whole` with batch statistics. Times are
summed over TensorFlow's inter-op threads (`tf_Compute`), which run two operations at a time on
a 2-vCPU machine, so "per step, both threads halved" is comparable to a wall-clock phase of a
tfhub-rs step. The profiler itself slows the step by ~15 %. That halving holds where two
operations run side by side; an operation alone in the graph (the stem's convolutions in the
forward pass) runs on both threads of TensorFlow's intra-op pool. `--by-name N` lists the N
longest operations by name (layer) with their milliseconds per call, which tells the two apart
against TensorFlow's isolated one- and two-thread times (`tools/compare_train_conv.py`).
"""

import argparse
import collections
import glob
import os
import shutil
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

# Operation types of the forward pass and of the Keras Adam update; the rest are gradients.
FORWARD = {"_MklNativeConv2D", "_MklNativeFusedBatchNormEx", "_MklNativeFusedBatchNormV3",
           "FusedBatchNormV3", "Conv2D", "_MklNativeAvgPool", "_MklNativeMaxPool", "AvgPool",
           "MaxPool", "ConcatV2", "Mean", "_MklNativeFusedMatMul", "Relu", "Relu6"}
UPDATE = {"Sub", "Mul", "Square", "Sqrt", "RealDiv", "AddV2", "AssignAddVariableOp",
          "AssignSubVariableOp", "Pow", "Cast", "ReadVariableOp"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(HERE, "out/inception_v3_hub_fv/saved_model"))
    ap.add_argument("--size", type=int, default=299)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--mode", choices=["frozen", "whole"], default="frozen")
    ap.add_argument("--by-name", type=int, default=0, metavar="N")
    a = ap.parse_args()

    import tensorflow as tf
    import tensorflow_hub as hub
    import tf_keras
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    tf_keras.utils.set_random_seed(1)
    n = a.batch * a.steps
    x = np.random.rand(n, a.size, a.size, 3).astype(np.float32)
    y = np.random.randint(0, 10, n)
    inp = tf_keras.Input(shape=x.shape[1:])
    layer = hub.KerasLayer(a.model, trainable=True)
    f = layer(inp, training=False) if a.mode == "frozen" else layer(inp)
    model = tf_keras.Model(inp, tf_keras.layers.Dense(10)(f))
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-3),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=a.batch, epochs=1, verbose=0)
    logdir = tempfile.mkdtemp(prefix="keras-profile-")
    try:
        tf.profiler.experimental.start(logdir)
        t = time.perf_counter()
        model.fit(x, y, batch_size=a.batch, epochs=1, verbose=0)
        wall = time.perf_counter() - t
        tf.profiler.experimental.stop()
        path = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0]
        space = xplane_pb2.XSpace()
        with open(path, "rb") as fh:
            space.ParseFromString(fh.read())
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
    plane = next(p for p in space.planes if p.name == "/host:CPU")
    names = plane.event_metadata
    by_type = collections.Counter()
    calls = collections.Counter()
    by_name = collections.Counter()
    name_calls = collections.Counter()
    for line in plane.lines:
        if not line.name.startswith("tf_Compute"):
            continue
        for ev in line.events:
            name = names[ev.metadata_id].display_name or names[ev.metadata_id].name
            if "::" in name:  # executor bookkeeping, not an operation
                continue
            by_type[name] += ev.duration_ps / 1e9
            calls[name] += 1
            full = names[ev.metadata_id].name
            by_name[(name, full)] += ev.duration_ps / 1e9
            name_calls[(name, full)] += 1
    total = sum(by_type.values())
    print(f"{a.mode} batch norms, batch {a.batch}, {a.steps} steps under the profiler: "
          f"{wall:.2f} s, {wall / n:.3f} s per image")
    print(f"operation time over the inter-op threads: {total:.0f} ms")
    for name, ms in by_type.most_common(20):
        print(f"  {ms:9.1f} ms {100 * ms / total:5.1f} %  {calls[name]:6d} calls  {name}")
    if a.by_name:
        print(f"longest {a.by_name} operations by name (ms per call, calls):")
        for (kind, full), ms in by_name.most_common(a.by_name):
            layer = full.split("/module/")[-1] if "/module/" in full else full
            n_calls = name_calls[(kind, full)]
            print(f"  {ms / n_calls:8.1f} ms x {n_calls:3d}  {kind:32s} {layer[:90]}")
    phase = collections.Counter()
    for name, ms in by_type.items():
        phase["forward" if name in FORWARD else "update" if name in UPDATE else "gradients"] += ms
    print("per step, both threads halved (ms): " + ", ".join(
        f"{k} {v / a.steps / 2:.0f}" for k, v in phase.most_common()))


if __name__ == "__main__":
    main()
