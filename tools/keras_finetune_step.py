"""Keras' fine-tuning steps on a TF Hub feature-vector SavedModel, as the blog does it:
`hub.KerasLayer(saved_model, trainable=True)` + `Dense(n)` (logits), sparse categorical
cross-entropy from logits (mean over the batch), tf_keras' Adam (lr 1e-3, the default; every weight moves
visibly, epsilon 1e-7). Two Adam steps on one fixed batch from saved initial head weights, in
both batch-norm modes:

  frozen  the layer is called with training=False: the inference trace, batch norms use (and
          keep) their moving statistics; every trainable variable is updated.
  batch   training=True (what `model.fit` does): the training trace, batch norms normalise
          with the batch's statistics and their moving averages are updated by the trace's own
          assignments (momentum as exported).

Usage:  tools/.venv/bin/python tools/keras_finetune_step.py [MODEL_DIR] [OUT_DIR] [SIDE]
        (default MODEL_DIR tests/fixtures/tfgraph/mobilenet_v2_fv_small/saved_model,
         OUT_DIR tests/fixtures/keras_step/mobilenet_v2_fv_small)

Writes OUT_DIR/expected.safetensors:
  images [N,H,W,3], labels [N] (as float32), head_kernel_init [F,C], head_bias_init [C],
  and for each mode M in (frozen, batch): "M/loss_1", "M/loss_2" [1]; "M/grad_1/<name>" the
  first step's gradient of every trainable variable (by its SavedModel name, e.g.
  `Conv1/kernel`; the head as `head/kernel`, `head/bias`); "M/1/<name>" the non-trainable
  variables (moving statistics) after step 1; "M/2/<name>" every variable after step 2.
and OUT_DIR/meta.json: {"model": MODEL_DIR relative to the repo, "lr", "epsilon", "classes",
  "trainable": [names], "non_trainable": [names], "tf": version, "tf_keras": version}.
"""

import json
import os
import sys

import numpy as np
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
args = sys.argv[1:]
MODEL = args[0] if args else os.path.join(ROOT, "tests/fixtures/tfgraph/mobilenet_v2_fv_small/saved_model")
OUT = args[1] if len(args) > 1 else os.path.join(ROOT, "tests/fixtures/keras_step/mobilenet_v2_fv_small")
LR, EPS, CLASSES, N = 1e-3, 1e-7, 3, 4
SIDE = int(args[2]) if len(args) > 2 else 64


def name_of(v):
    return v.name[:-2] if v.name.endswith(":0") else v.name


def run(mode, images, labels, head_k, head_b):
    layer = hub.KerasLayer(MODEL, trainable=True)
    head = tf_keras.layers.Dense(CLASSES)
    x = tf_keras.Input(shape=images.shape[1:])
    model = tf_keras.Model(x, head(layer(x)))
    head.set_weights([head_k, head_b])
    opt = tf_keras.optimizers.Adam(learning_rate=LR, epsilon=EPS)
    lossf = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    out = {}
    for step in (1, 2):
        with tf.GradientTape() as tape:
            logits = model(images, training=(mode == "batch"))
            loss = lossf(labels, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        if step == 1:
            for v, g in zip(model.trainable_variables, grads):
                key = "head/" + name_of(v).split("/")[-1] if v is head.kernel or v is head.bias \
                    else name_of(v)
                out[f"{mode}/grad_1/{key}"] = g.numpy().astype(np.float32)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        out[f"{mode}/loss_{step}"] = np.array([loss.numpy()], dtype=np.float32)
        for v in layer.variables:
            if step == 2 or not v.trainable:
                out[f"{mode}/{step}/{name_of(v)}"] = v.numpy().astype(np.float32)
        if step == 2:
            out[f"{mode}/{step}/head/kernel"] = head.kernel.numpy()
            out[f"{mode}/{step}/head/bias"] = head.bias.numpy()
    trainable = [name_of(v) for v in layer.trainable_variables]
    frozen = [name_of(v) for v in layer.non_trainable_variables]
    return out, trainable, frozen


def main():
    rng = np.random.default_rng(11)
    images = rng.uniform(0, 1, size=(N, SIDE, SIDE, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 1], dtype=np.int64)
    probe = hub.KerasLayer(MODEL)(images)
    feat = probe.shape[-1]
    lim = np.sqrt(6 / (feat + CLASSES))
    head_k = rng.uniform(-lim, lim, size=(feat, CLASSES)).astype(np.float32)
    head_b = rng.uniform(-0.1, 0.1, size=(CLASSES,)).astype(np.float32)
    tensors = {"images": images, "labels": labels.astype(np.float32),
               "head_kernel_init": head_k, "head_bias_init": head_b}
    meta = {"model": os.path.relpath(MODEL, ROOT), "lr": LR, "epsilon": EPS, "classes": CLASSES,
            "tf": tf.__version__, "tf_keras": tf_keras.__version__}
    for mode in ("frozen", "batch"):
        out, trainable, frozen = run(mode, images, labels, head_k, head_b)
        tensors.update(out)
        meta["trainable"], meta["non_trainable"] = trainable, frozen
        stats = [n for n in frozen if not np.array_equal(out[f"{mode}/1/{n}"], out[f"{mode}/2/{n}"])]
        zero = [n for n in trainable if not np.any(out[f"{mode}/grad_1/{n}"])]
        print(f"{mode}: loss {out[f'{mode}/loss_1'][0]:.6f} -> {out[f'{mode}/loss_2'][0]:.6f}; "
              f"{len(trainable) - len(zero)}/{len(trainable)} trainable variables with a gradient, "
              f"{len(stats)}/{len(frozen)} moving statistics changed in step 2")
    os.makedirs(OUT, exist_ok=True)
    save_file(tensors, os.path.join(OUT, "expected.safetensors"))
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print("wrote", OUT, os.path.getsize(os.path.join(OUT, "expected.safetensors")), "bytes")


if __name__ == "__main__":
    main()
