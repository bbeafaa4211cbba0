"""Ground truth for the `jpeg-tf` decoder: small JPEGs in the samplings and modes it handles,
and the SHA-256 of TensorFlow's `tf.io.decode_image(channels=3)` bytes for each (libjpeg-turbo,
`dct_method` INTEGER_FAST, fancy upsampling: TF's defaults).

Usage (from the repository root):
    tools/.venv/bin/python tools/make_jpeg_fixture.py      (needs tensorflow and pillow)

Writes tests/fixtures/jpeg/:
    *.jpg           the test files, cut from examples/stylize/{grace_hopper,great_wave}.jpg
                    and encoded by TF (`tf.io.encode_jpeg`) or Pillow (4:2:2, restart markers)
    expected.json   per file: shape, SHA-256 of TF's decoded bytes, and whether the
                    decoder is expected to handle it ("exact") or leave it to the fallback
                    (progressive). "damaged": files made from those by one splice
                    (`[offset, bytes removed, hex inserted]`: a cut, a stray EOI or RST, a
                    changed byte, a removed or renumbered restart marker) with TF's SHA-256,
                    or "error" where TF fails (the data ends before EOI).
The committed examples/stylize/grace_hopper.jpg is listed too (not copied).
"""

import hashlib
import io
import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests/fixtures/jpeg")


def decode(data):
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()


def tf_jpeg(rgb, **kw):
    return tf.io.encode_jpeg(np.ascontiguousarray(rgb), **kw).numpy()


def pil_jpeg(rgb, **kw):
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="JPEG", **kw)
    return buf.getvalue()


def main():
    os.makedirs(OUT, exist_ok=True)
    read = lambda p: tf.io.read_file(os.path.join(ROOT, p))
    hopper = decode(read("examples/stylize/grace_hopper.jpg"))
    wave = decode(read("examples/stylize/great_wave.jpg"))
    face = hopper[60:183, 200:357]        # 123 x 157, a detailed region
    odd = wave[100:123, 150:187]           # 23 x 37
    tiny = wave[200:205, 100:103]          # 5 x 3: downsampled width <= 2 (box upsampling)
    gray = np.ascontiguousarray(face[..., :1])
    files = {
        "tf_420_q50_37x23.jpg": tf_jpeg(odd, quality=50, chroma_downsampling=True),
        "tf_444_q95_37x23.jpg": tf_jpeg(odd, quality=95, chroma_downsampling=False),
        "tf_420_q75_157x123.jpg": tf_jpeg(face, quality=75),
        "tf_444_q100_157x123.jpg": tf_jpeg(face, quality=100, chroma_downsampling=False),
        "tf_gray_q80_157x123.jpg": tf_jpeg(gray, quality=80),
        "tf_420_q90_3x5.jpg": tf_jpeg(tiny, quality=90),
        "pil_422_q85_37x23.jpg": pil_jpeg(odd, quality=85, subsampling="4:2:2"),
        "pil_422_q70_3x5.jpg": pil_jpeg(tiny, quality=70, subsampling="4:2:2"),
        "pil_420_q60_rst3_157x123.jpg": pil_jpeg(face, quality=60, subsampling="4:2:0",
                                                 restart_marker_blocks=3),
        "pil_444_q90_rstrow_37x23.jpg": pil_jpeg(odd, quality=90, subsampling="4:4:4",
                                                 restart_marker_rows=1),
        "tf_progressive_q75_37x23.jpg": tf_jpeg(odd, quality=75, progressive=True),
    }
    meta = {}
    for name, data in files.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        d = decode(data)
        meta[name] = {
            "file": f"tests/fixtures/jpeg/{name}",
            "shape": list(d.shape),
            "sha256": hashlib.sha256(d.tobytes()).hexdigest(),
            "exact": "progressive" not in name,
        }
    d = decode(read("examples/stylize/grace_hopper.jpg"))
    meta["grace_hopper.jpg"] = {
        "file": "examples/stylize/grace_hopper.jpg",
        "shape": list(d.shape),
        "sha256": hashlib.sha256(d.tobytes()).hexdigest(),
        "exact": True,
    }
    for name in meta:
        # TF's decode is deterministic: the same bytes again (and from decode_jpeg).
        data = read(meta[name]["file"])
        again = tf.io.decode_jpeg(data, channels=3).numpy()
        assert hashlib.sha256(again.tobytes()).hexdigest() == meta[name]["sha256"], name
    damaged = {}
    base = "tf_420_q75_157x123.jpg"
    d = files[base]
    mid = (d.find(b"\xff\xda") + len(d)) // 2
    rst = files["pil_420_q60_rst3_157x123.jpg"]
    rsts = [i for i in range(len(rst) - 1) if rst[i] == 0xFF and 0xD0 <= rst[i + 1] <= 0xD7]
    recipes = {
        "eoi_in_data": (base, [mid, len(d) - mid, "ffd9"]),
        "rst_in_data": (base, [mid, 0, "ffd0"]),
        "byte_changed": (base, [mid, 1, "%02x" % (d[mid] ^ 0x5A)]),
        "cut_in_data": (base, [mid, len(d) - mid, ""]),
        "no_eoi": (base, [len(d) - 2, 2, ""]),
        "rst_removed": ("pil_420_q60_rst3_157x123.jpg", [rsts[5], 2, ""]),
        "rst_renumbered": ("pil_420_q60_rst3_157x123.jpg",
                           [rsts[5] + 1, 1, "%02x" % (0xD0 + (rst[rsts[5] + 1] + 3) % 8)]),
        "rst_skipped_one": ("pil_420_q60_rst3_157x123.jpg",
                            [rsts[5] + 1, 1, "%02x" % (0xD0 + (rst[rsts[5] + 1] + 1) % 8)]),
    }
    for name, (src, (off, rm, ins)) in recipes.items():
        b = files[src]
        b = b[:off] + bytes.fromhex(ins) + b[off + rm:]
        e = {"base": src, "splice": [off, rm, ins]}
        try:
            x = decode(b)
            e["sha256"] = hashlib.sha256(x.tobytes()).hexdigest()
        except tf.errors.InvalidArgumentError:
            e["error"] = True
        damaged[name] = e
    meta = {"files": meta, "damaged": damaged}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    print(json.dumps(meta, indent=1))
    print("total bytes:", sum(len(v) for v in files.values()))


if __name__ == "__main__":
    main()
