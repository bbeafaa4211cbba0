"""Fine-tuning speed side by side (issue 13, "Benchmarks"): `finetune --model <graph SavedModel>`
against tf_keras + `hub.KerasLayer` on the same SavedModel, the same images, in one run.

Set-up: `tools/setup-python.sh --bench` (tensorflow-hub for the Keras side).
Usage:
    tools/.venv/bin/python tools/bench_finetune.py --finetune BIN [--model DIR] [--classes 10]
        [--per-class 6] [--size 224] [--batch 12] [--epochs 3] [--modes head,whole]
        [--repeat 1] [--json tools/out/bench_finetune.json]

Model: by default the full-size MobileNetV2 feature vector (alpha 1.0, 1280 features) that
`tools/make_tfgraph_fixtures.py --full --only mobilenet_v2_fv_small` writes to
tools/out/tfgraph/mobilenet_v2_fv_small/saved_model (random weights, non-trivial batch-norm
statistics, TF Hub's reusable-SavedModel layout with its training=True trace). Inception-v3
(the hand-written path, converted once): `--model tools/out/inception_v3_hub_fv/saved_model
--size 299` after `tools/make_inception_hub_fixture.py --full`.

Data: CLASSES x PER_CLASS synthetic PNGs at SIZE x SIZE (seeded noise with a colour per class),
written once to a temporary folder; both sides read the same decoded pixels in [0, 1].

Modes (the blog's recipe, Adam 1e-3, softmax cross-entropy on logits, no dropout, every image
trained on, shuffled):
  head   hub.KerasLayer(trainable=False) + Dense(CLASSES), `model.fit(epochs=EPOCHS)`: Keras
         runs the network every epoch; `finetune` (head only) computes the features once
         through its CPU engine and trains the head on them. Reported: the whole run's seconds.
  whole  hub.KerasLayer(trainable=True) + Dense: `fit` calls the layer with training=True
         (batch statistics, moving averages updated); `finetune --train-backbone
         --train-batch-norm` the same through the graph's training trace. Reported: seconds per
         training image over the epochs after the first (the first compiles / warms up).
  frozen the whole network with frozen batch-norm statistics (the issue's measurement, and
         `finetune`'s default with --train-backbone): hub.KerasLayer(trainable=True) called with
         training=False (every weight trained, the batch norms on their moving statistics, as
         the Keras transfer-learning guide fine-tunes); `finetune --train-backbone`. Reported
         as `whole`.

Figures are wall-clock on a shared machine: each side runs alternately (Keras, then Rust), and
the one-minute load average is printed beside each measurement. `--repeat N` alternates N
timed runs of each side and reports the medians. Keras is timed from `fit`'s start (its
SavedModel load and model building are left out); tfhub-rs as its whole process. Keras (and the
image writing and decoding, which use TensorFlow) run in child processes, so that no TensorFlow
thread pool lives beside the Rust runs.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def make_images(root, classes, per_class, size):
    import tensorflow as tf

    rng = np.random.default_rng(7)
    for c in range(classes):
        d = os.path.join(root, f"class_{c:02d}")
        os.makedirs(d, exist_ok=True)
        colour = rng.uniform(0, 255, size=3)
        for i in range(per_class):
            noise = rng.normal(0, 40, size=(size, size, 3))
            px = np.clip(colour + noise, 0, 255).astype(np.uint8)
            tf.io.write_file(os.path.join(d, f"{i}.png"), tf.io.encode_png(px))


def load_images(root, size):
    import tensorflow as tf

    xs, ys = [], []
    for c, name in enumerate(sorted(os.listdir(root))):
        for f in sorted(os.listdir(os.path.join(root, name))):
            img = tf.io.decode_png(tf.io.read_file(os.path.join(root, name, f)), channels=3)
            img = tf.image.convert_image_dtype(img, tf.float32)
            xs.append(tf.image.resize(img, (size, size)).numpy())
            ys.append(c)
    return np.stack(xs), np.array(ys)


def keras_run(model_dir, x, y, classes, batch, epochs, trainable, frozen_bn=False):
    import tensorflow_hub as hub
    import tf_keras

    tf_keras.utils.set_random_seed(1)
    if frozen_bn:
        # Every weight trained, the batch norms in inference mode (moving statistics).
        inp = tf_keras.Input(shape=x.shape[1:])
        features = hub.KerasLayer(model_dir, trainable=True)(inp, training=False)
        model = tf_keras.Model(inp, tf_keras.layers.Dense(classes)(features))
    else:
        model = tf_keras.Sequential([
            tf_keras.Input(shape=x.shape[1:]),
            hub.KerasLayer(model_dir, trainable=trainable),
            tf_keras.layers.Dense(classes),
        ])
    model.compile(optimizer=tf_keras.optimizers.Adam(1e-3),
                  loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    times = []

    class Timer(tf_keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    t0 = time.perf_counter()
    hist = model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=True, verbose=0, callbacks=[Timer()])
    total = time.perf_counter() - t0
    return {"total_s": total, "epoch_s": times, "loss": hist.history["loss"],
            "accuracy": hist.history["accuracy"]}


def child(job, **kw):
    """Runs `job` ("images" or "keras") in a fresh Python process and returns its JSON result:
    TensorFlow never lives in this process, so its thread pools cannot take CPU from the Rust
    runs that follow (in-process, the head-only Rust run took 6.2-6.4 s right after a Keras
    run against 4.4-4.6 s on its own)."""
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", json.dumps({"job": job, **kw})],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{job} child failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_child(spec):
    job = spec.pop("job")
    if job == "images":
        make_images(spec["data"], spec["classes"], spec["per_class"], spec["size"])
        out = {}
    else:
        x, y = load_images(spec["data"], spec["size"])
        out = keras_run(spec["model"], x, y, spec["classes"], spec["batch"], spec["epochs"],
                        spec["trainable"], spec.get("frozen_bn", False))
        out["images"] = int(len(y))
    print(json.dumps(out))


def rust_run(binary, model_dir, data, size, batch, epochs, whole, cache, frozen_bn=False):
    out = tempfile.mkdtemp(prefix="bench-finetune-")
    shutil.rmtree(out)
    cmd = [binary, "--model", model_dir, "--data", data, "--image-size", str(size), "--batch-size",
           str(batch), "--epochs", str(epochs), "--validation-fraction", "0", "--dropout", "0",
           "--out", out]
    if whole:
        cmd += ["--train-backbone"] if frozen_bn else ["--train-backbone", "--train-batch-norm"]
    env = dict(os.environ, TFHUB_CACHE_DIR=cache)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    total = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"finetune failed:\n{r.stderr[-3000:]}")
    with open(os.path.join(out, "metrics.json")) as f:
        m = json.load(f)
    shutil.rmtree(out, ignore_errors=True)
    return {"total_s": total, "epoch_s": [e["seconds"] for e in m["epochs"]],
            "loss": [e["loss"] for e in m["epochs"]], "accuracy": [e["accuracy"] for e in m["epochs"]]}


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        return run_child(json.loads(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--finetune", required=True, help="release build of the finetune program")
    ap.add_argument("--model", default=os.path.join(ROOT, "tools/out/tfgraph/mobilenet_v2_fv_small/saved_model"))
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--per-class", type=int, default=6)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--modes", default="head,whole")
    ap.add_argument("--repeat", type=int, default=1,
                    help="timed runs of each side, alternating (medians reported)")
    ap.add_argument("--json", default=os.path.join(ROOT, "tools/out/bench_finetune.json"))
    a = ap.parse_args()
    if not os.path.isfile(os.path.join(a.model, "saved_model.pb")):
        raise SystemExit(f"{a.model}: no SavedModel; run tools/make_tfgraph_fixtures.py --full "
                         "--only mobilenet_v2_fv_small first")
    data = tempfile.mkdtemp(prefix="bench-finetune-data-")
    child("images", data=data, classes=a.classes, per_class=a.per_class, size=a.size)
    n = a.classes * a.per_class
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} logical CPUs; {n} images {a.size}x{a.size}, "
          f"{a.classes} classes, batch {a.batch}, {a.epochs} epochs")
    results = {"images": n, "size": a.size, "batch": a.batch, "epochs": a.epochs, "cpu": cpu}
    # One model cache for the Rust runs: the first run converts a SavedModel that a
    # hand-written model recognises (Inception-v3) into it, as a user's first run does; it is
    # timed and reported on its own ("first use"), the timed runs find the conversion cached
    # (as Keras finds the model in TF Hub's cache).
    cache = tempfile.mkdtemp(prefix="bench-finetune-cache-")
    first = rust_run(a.finetune, a.model, data, a.size, a.batch, 1, False, cache)
    results["first_use_1_epoch_head_s"] = first["total_s"]
    print(f"tfhub-rs first use (conversion into the cache, if any, and 1 epoch head only): "
          f"{first['total_s']:.1f} s")
    med = lambda v: float(np.median(v))
    for mode in a.modes.split(","):
        if mode not in ("head", "whole", "frozen"):
            raise SystemExit(f"unknown mode {mode!r} (head, whole, frozen)")
        frozen = mode == "frozen"
        whole = mode in ("whole", "frozen")
        ks, rs = [], []
        for _ in range(a.repeat):
            load = os.getloadavg()[0]
            k = child("keras", data=data, size=a.size, model=a.model, classes=a.classes,
                      batch=a.batch, epochs=a.epochs, trainable=whole, frozen_bn=frozen)
            k["load"] = load
            load = os.getloadavg()[0]
            r = rust_run(a.finetune, a.model, data, a.size, a.batch, a.epochs, whole, cache,
                         frozen)
            r["load"] = load
            ks.append(k)
            rs.append(r)
        results[mode] = {"keras": ks, "tfhub_rs": rs}
        loads = f"load {med([k['load'] for k in ks]):.2f} / {med([r['load'] for r in rs]):.2f}"
        if whole:
            per = lambda e: sum(e[1:]) / max(1, len(e) - 1) / n
            kt = med([per(k["epoch_s"]) for k in ks])
            rt = med([per(r["epoch_s"]) for r in rs])
            what = "whole network, frozen batch-norm statistics" if frozen else "whole network"
            print(f"{what}: Keras {kt:.3f} s/image, tfhub-rs {rt:.3f} s/image ({loads}, "
                  f"medians of {a.repeat}): {kt / rt:.2f}x")
        else:
            kt = med([k["total_s"] for k in ks])
            rt = med([r["total_s"] for r in rs])
            print(f"head only, {a.epochs} epochs: Keras fit {kt:.1f} s, tfhub-rs {rt:.1f} s including "
                  f"its process start and model load ({loads}, medians of {a.repeat}): {kt / rt:.2f}x")
        print(f"  final loss: Keras {ks[-1]['loss'][-1]:.4f}, tfhub-rs {rs[-1]['loss'][-1]:.4f}")
    os.makedirs(os.path.dirname(a.json), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(results, f, indent=1)
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
