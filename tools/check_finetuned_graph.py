"""TensorFlow's view of a `finetune` output folder of kind `graph_classifier`.

Usage: check_finetuned_graph.py OUT SIZE IMAGE...

Loads OUT/backbone (the fine-tuned SavedModel, written by tfhub-rs) with
`tf.saved_model.load`, the Dense head from OUT/head.safetensors, preprocesses each image as
`classify` and the TF Hub image modules do (`tf.io.decode_image`, `convert_image_dtype(float32)`,
`tf.image.resize(SIZE, bilinear)`), and prints one JSON document:
{"labels": [...], "probabilities": [[p_0, ..., p_k-1] per image]}.
The finetune tests compare it with `classify --json` on the same folder.
"""

import json
import struct
import sys

import numpy as np
import tensorflow as tf


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    tensors = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        if v["dtype"] != "F32":
            raise SystemExit(f"{path}: tensor {name} is {v['dtype']}, expected F32")
        start, end = v["data_offsets"]
        raw = data[8 + n + start : 8 + n + end]
        tensors[name] = np.frombuffer(raw, dtype="<f4").reshape(v["shape"])
    return tensors


def main():
    out, size, images = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    head = read_safetensors(f"{out}/head.safetensors")
    model = tf.saved_model.load(f"{out}/backbone")
    batch = []
    for p in images:
        img = tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False)
        img = tf.image.convert_image_dtype(img, tf.float32)
        batch.append(tf.image.resize(img, (size, size), method="bilinear"))
    features = model(tf.stack(batch), training=False).numpy()
    logits = features @ head["weight"] + head["bias"]
    probs = tf.nn.softmax(logits).numpy()
    with open(f"{out}/labels.txt") as f:
        labels = [line.rstrip("\n") for line in f]
    print(json.dumps({"labels": labels, "probabilities": probs.tolist()}))


if __name__ == "__main__":
    main()
