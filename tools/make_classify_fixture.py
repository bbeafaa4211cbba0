"""Ground truth for `classify` end to end: TensorFlow's decoding, central crop and resize of a JPEG
and an RGBA PNG, and the logits of the small TF-Slim Inception-v3 fixture on those pixels.

Usage:
    tools/.venv/bin/python tools/make_classify_fixture.py

Writes tests/fixtures/classify/:
    wave_rgba.png       a 120x90 RGBA PNG cut from examples/stylize/great_wave.jpg (alpha varies)
    expected.safetensors
        <img>/decoded_sub   uint8, TF's `tf.io.decode_image(channels=3)` at every 5th row/column
        <case>/pixels_sub   float32, the network input (decode -> convert_image_dtype -> central_crop
                            -> resize bilinear, antialias off) at every 6th row/column
        <case>/logits       float32 [1, 11], the small Inception-v3 (tests/fixtures/inception_v3/small,
                            rebuilt here from the same seed and checked against its recorded logits)
    expected.json       per image: file, decoded shape, SHA-256 of TF's decoded bytes; per case:
                        image, central crop, size, top-5.
Images: examples/stylize/grace_hopper.jpg (JPEG, committed with its licence) and wave_rgba.png.
"""

import hashlib
import json
import os

import numpy as np
import tensorflow as tf
from safetensors.numpy import load_file, save_file

import make_inception_fixture as mif

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests/fixtures/classify")


def decode(path):
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


def prepare(path, crop, size):
    x = tf.image.convert_image_dtype(decode(path), tf.float32)
    if crop < 1.0:
        x = tf.image.central_crop(x, crop)
    return tf.image.resize(x[None], [size, size], method="bilinear", antialias=False).numpy()[0]


def main():
    os.makedirs(OUT, exist_ok=True)
    # The RGBA PNG: a corner of the Great Wave with a varying alpha (decode_image(channels=3)
    # drops it).
    wave = decode(os.path.join(ROOT, "examples/stylize/great_wave.jpg")).numpy()[40:130, 200:320]
    h, w, _ = wave.shape
    alpha = (np.linspace(0, 255, w)[None, :] * np.ones([h, 1])).astype(np.uint8)[..., None]
    png = tf.io.encode_png(np.concatenate([wave, alpha], axis=2)).numpy()
    with open(os.path.join(OUT, "wave_rgba.png"), "wb") as f:
        f.write(png)

    cfg = dict(num_classes=11, depth_multiplier=0.05, min_depth=4)
    model, tmpl = mif.build(**cfg, with_function=False)
    mif.randomise(model.all_variables)
    # Same weights as the committed small fixture: its recorded logits come out again.
    small = load_file(os.path.join(ROOT, "tests/fixtures/inception_v3/small/expected.safetensors"))
    again, _ = mif.run(tmpl, small["a/input_u8"].astype(np.float32) / np.float32(255.0))
    assert np.abs(again - small["a/logits"]).max() < 1e-5, "the rebuilt model is not the fixture's"

    images = {
        "jpeg": os.path.join(ROOT, "examples/stylize/grace_hopper.jpg"),
        "png": os.path.join(OUT, "wave_rgba.png"),
    }
    cases = {
        "jpeg_full_299": ("jpeg", 1.0, 299),
        "jpeg_crop_299": ("jpeg", 0.875, 299),
        "png_crop_299": ("png", 0.875, 299),
        "png_full_160": ("png", 1.0, 160),
    }
    exp, meta = {}, {"images": {}, "cases": {}}
    for name, path in images.items():
        d = decode(path).numpy()
        exp[f"{name}/decoded_sub"] = np.ascontiguousarray(d[::5, ::5])
        meta["images"][name] = {
            "file": os.path.relpath(path, ROOT),
            "shape": list(d.shape),
            "sha256": hashlib.sha256(d.tobytes()).hexdigest(),
        }
    for case, (img, crop, size) in cases.items():
        x = prepare(images[img], crop, size)
        logits, _ = mif.run(tmpl, x[None])
        exp[f"{case}/pixels_sub"] = np.ascontiguousarray(x[::6, ::6])
        exp[f"{case}/logits"] = logits
        meta["cases"][case] = {"image": img, "central_crop": crop, "size": size,
                               "top5": mif.top5(logits)[0]}
    save_file(exp, os.path.join(OUT, "expected.safetensors"))
    mif.atomic_json(meta, os.path.join(OUT, "expected.json"))
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
