"""Full-size Inception-v3 check: Rust (convert + models + classify CLI) against TensorFlow on every
image of ../shared/data/images, with the full network (depth 1.0, 1001 classes, 299x299, random weights).

Usage: tools/.venv/bin/python tools/check_inception_full.py [--backend flex|ndarray|wgpu]

Steps: (1) tools/make_inception_fixture.py --full if tools/out/inception_v3_full/ is missing;
(2) `cargo test -p convert --test inception_full`: converts the SavedModel with the Rust reader and
mapping, writes tools/out/inception_v3_full/converted/, and checks the logits on TF-preprocessed
inputs (every image and a batch of 4) to 1e-4; (3) runs `classify --features` on the image files
(Rust JPEG decoding + TF-style bilinear resize) and compares its logits and top-5 with TensorFlow's
(TF decode + tf.image.resize): (3a) on PNG copies of TensorFlow's decoded pixels (must match to 1e-4,
same top-5), (3b) on the JPEG files themselves (JPEG decoders differ: TF's libjpeg-turbo default uses
the fast integer IDCT; bound 2e-2, same top-1). Writes tools/out/inception_v3_full/{png/,*.npy}.
Exit 1 on failure.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
from safetensors.numpy import load_file

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "tools", "out", "inception_v3_full")
IMAGES = os.path.join(ROOT, "..", "shared", "data", "images")

ap = argparse.ArgumentParser()
ap.add_argument("--backend", default="flex")
a = ap.parse_args()
if not os.path.isdir(IMAGES):
    sys.exit(f"SKIP: {IMAGES} not found")
if not os.path.isfile(os.path.join(OUT, "expected.safetensors")):
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "make_inception_fixture.py"), "--full"], check=True)
subprocess.run(["cargo", "test", "-q", "-p", "convert", "--test", "inception_full", "--", "--nocapture"], cwd=ROOT, check=True)

meta = json.load(open(os.path.join(OUT, "expected.json")))
exp = load_file(os.path.join(OUT, "expected.safetensors"))
files = [os.path.join(IMAGES, f) for f in meta["images"]]


def classify(paths, npy):
    subprocess.run(["cargo", "run", "-q", "-p", "classify", "--", "--model", os.path.join(OUT, "converted"),
                    "--backend", a.backend, "--batch", "4", "--features", npy, "--json", *paths],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return np.load(npy)


# (3a) lossless: TensorFlow's decoded pixels as PNG -> classify must match TF to 1e-4 (resize + network).
import tensorflow as tf  # noqa: E402

png_dir = os.path.join(OUT, "png")
os.makedirs(png_dir, exist_ok=True)
pngs = []
for f in files:
    img = tf.io.decode_image(tf.io.read_file(f), channels=3, expand_animations=False)
    pngs.append(os.path.join(png_dir, os.path.basename(f) + ".png"))
    tf.io.write_file(pngs[-1], tf.io.encode_png(img))
# (3b) the JPEG files themselves: Rust's decoder (image crate, accurate IDCT) vs TF's libjpeg-turbo
# default (fast integer IDCT) differ by a grey level here and there: reported, looser bound.
ok = True
for label, paths, npy, tol, need_top5 in [("png (TF pixels)", pngs, "classify_png.npy", 1e-4, True),
                                          ("jpeg files", files, "classify_logits.npy", 2e-2, False)]:
    got = classify(paths, os.path.join(OUT, npy))
    print(f"-- {label}")
    for i, f in enumerate(meta["images"]):
        want = exp[f"img{i}/logits"][0]
        rel = float(np.abs(got[i] - want).max() / np.abs(want).max())
        top_r = [int(t) for t in np.argsort(-got[i], kind="stable")[:5]]
        top_t = meta["top5"][f]
        same = top_r == top_t
        ok &= rel < tol and (same or not need_top5) and top_r[0] == top_t[0]
        print(f"{f:40s} rel err {rel:.2e}  top-5 {'same' if same else f'differs: rust {top_r} tf {top_t}'}")
print("OK" if ok else "FAILED")
sys.exit(0 if ok else 1)
