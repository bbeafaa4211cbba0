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
                    (a progressive file whose coefficients are incomplete). "damaged": files made from those by one splice
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


# --- A small baseline JPEG encoder, for the samplings and layouts no library here writes ------
# (4:4:0, 4:1:1, 3:1, mixed factors, one scan per component, RGB colour space, ...). Its own
# quality does not matter: TF's decoding of what it writes is the ground truth.
ZIGZAG = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41,
          34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30,
          37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63]
QLUM = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24,
                 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77,
                 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95,
                 98, 112, 100, 103, 99], dtype=np.float64).reshape(8, 8)
_C = np.array([[(np.sqrt(1 / 8) if u == 0 else np.sqrt(2 / 8)) * np.cos((2 * x + 1) * u * np.pi / 16)
                for x in range(8)] for u in range(8)])


def segment(marker, body):
    return bytes([0xFF, marker]) + (len(body) + 2).to_bytes(2, "big") + bytes(body)


def mini_jpeg(rgb, samp, color="ycc", scans="interleaved", restart=0, ids=None, jfif=True,
              adobe=None, qscale=1.0):
    """Baseline JPEG of `rgb` [h, w, 3] with sampling factors `samp` [(h, v), ...]."""
    H, W, _ = rgb.shape
    x = rgb.astype(np.float64)
    if color == "ycc":
        r, g, b = x[..., 0], x[..., 1], x[..., 2]
        planes = [0.299 * r + 0.587 * g + 0.114 * b,
                  -0.168736 * r - 0.331264 * g + 0.5 * b + 128,
                  0.5 * r - 0.418688 * g - 0.081312 * b + 128]
    elif color == "rgb":
        planes = [x[..., 0], x[..., 1], x[..., 2]]
    else:
        planes = [0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]]
    nc = len(planes)
    ids = ids or list(range(1, nc + 1))
    hmax, vmax = max(s[0] for s in samp), max(s[1] for s in samp)
    mcux, mcuy = -(-W // (8 * hmax)), -(-H // (8 * vmax))
    q = np.clip(np.round(QLUM * qscale), 1, 255)
    coefs = []
    for p, (h, v) in zip(planes, samp):
        full = np.pad(p, ((0, mcuy * 8 * vmax - H), (0, mcux * 8 * hmax - W)), mode="edge")
        fy, fx = vmax // v, hmax // h
        ds = full.reshape(full.shape[0] // fy, fy, full.shape[1] // fx, fx).mean(axis=(1, 3))
        by, bx = ds.shape[0] // 8, ds.shape[1] // 8
        blocks = (ds - 128).reshape(by, 8, bx, 8).transpose(0, 2, 1, 3)
        f = np.einsum("ux,abxy,vy->abuv", _C, blocks, _C)
        coefs.append(np.clip(np.round(f / q), -1023, 1023).astype(int))
    # Scans: lists of (component, [(block row, block col), ...] per MCU).
    def mcus(cs):
        if len(cs) == 1:
            c = cs[0]
            h, v = samp[c]
            wib, hib = -(-W * h // (hmax * 8)), -(-H * v // (vmax * 8))
            return [[(c, y, x)] for y in range(hib) for x in range(wib)]
        return [[(c, my * samp[c][1] + j, mx * samp[c][0] + i) for c in cs
                 for j in range(samp[c][1]) for i in range(samp[c][0])]
                for my in range(mcuy) for mx in range(mcux)]
    scan_list = [list(range(nc))] if scans == "interleaved" else [[c] for c in range(nc)]
    # Symbols and extra bits per scan, restart boundaries marked with None.
    def symbols(cs):
        out, pred = [], {c: 0 for c in cs}
        for i, mcu in enumerate(mcus(cs)):
            if restart and i and i % restart == 0:
                out.append(None)
                pred = {c: 0 for c in cs}
            for c, by, bx in mcu:
                zz = coefs[c][by, bx].reshape(64)[ZIGZAG]
                d = int(zz[0]) - pred[c]
                pred[c] = int(zz[0])
                out.append(("dc", d))
                run = 0
                for k in range(1, 64):
                    a = int(zz[k])
                    if a == 0:
                        run += 1
                        continue
                    while run > 15:
                        out.append(("ac", 0xF0, 0, 0))
                        run -= 16
                    s = abs(a).bit_length()
                    out.append(("ac", (run << 4) | s, a, s))
                    run = 0
                if run:
                    out.append(("ac", 0x00, 0, 0))
        return out
    streams = [symbols(cs) for cs in scan_list]
    dcs = sorted({abs(e[1]).bit_length() for st in streams for e in st if e and e[0] == "dc"})
    acs = sorted({e[1] for st in streams for e in st if e and e[0] == "ac"})
    # Every code 8 bits long (canonical, so code i is i): valid and simple.
    dcode = {sym: i for i, sym in enumerate(dcs)}
    acode = {sym: i for i, sym in enumerate(acs)}
    out = bytearray(b"\xff\xd8")
    if jfif:
        out += segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    if adobe is not None:
        out += segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00" + bytes([adobe]))
    out += segment(0xDB, [0] + [int(q.reshape(64)[z]) for z in ZIGZAG])
    sof = [8] + list(H.to_bytes(2, "big")) + list(W.to_bytes(2, "big")) + [nc]
    for c in range(nc):
        sof += [ids[c], (samp[c][0] << 4) | samp[c][1], 0]
    out += segment(0xC0, sof)
    out += segment(0xC4, [0x00] + [0] * 7 + [len(dcs)] + [0] * 8 + dcs)
    out += segment(0xC4, [0x10] + [0] * 7 + [len(acs)] + [0] * 8 + acs)
    if restart:
        out += segment(0xDD, restart.to_bytes(2, "big"))
    for cs, st in zip(scan_list, streams):
        body = [len(cs)]
        for c in cs:
            body += [ids[c], 0x00]
        out += segment(0xDA, body + [0, 63, 0])
        acc, nbits, rst = 0, 0, 0
        data = bytearray()
        def put(v, n):
            nonlocal acc, nbits
            acc = (acc << n) | (v & ((1 << n) - 1))
            nbits += n
            while nbits >= 8:
                byte = (acc >> (nbits - 8)) & 0xFF
                data.append(byte)
                if byte == 0xFF:
                    data.append(0)
                nbits -= 8
        for e in st:
            if e is None:
                if nbits % 8:
                    put(0x7F, 8 - nbits % 8)
                data.extend([0xFF, 0xD0 + rst])
                rst = (rst + 1) % 8
            elif e[0] == "dc":
                d = e[1]
                s = abs(d).bit_length()
                put(dcode[s], 8)
                if s:
                    put(d if d > 0 else d - 1, s)
            else:
                put(acode[e[1]], 8)
                if e[3]:
                    put(e[2] if e[2] > 0 else e[2] - 1, e[3])
        if nbits % 8:
            put(0x7F, 8 - nbits % 8)
        out += data
    out += b"\xff\xd9"
    return bytes(out)


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
        "tf_444_q100_80x60.jpg": tf_jpeg(face[:60, :80], quality=100, chroma_downsampling=False),
        "tf_gray_q80_157x123.jpg": tf_jpeg(gray, quality=80),
        "tf_420_q90_3x5.jpg": tf_jpeg(tiny, quality=90),
        "pil_422_q85_37x23.jpg": pil_jpeg(odd, quality=85, subsampling="4:2:2"),
        "pil_422_q70_3x5.jpg": pil_jpeg(tiny, quality=70, subsampling="4:2:2"),
        "pil_420_q60_rst3_157x123.jpg": pil_jpeg(face, quality=60, subsampling="4:2:0",
                                                 restart_marker_blocks=3),
        "pil_444_q90_rstrow_37x23.jpg": pil_jpeg(odd, quality=90, subsampling="4:4:4",
                                                 restart_marker_rows=1),
        "tf_progressive_q75_37x23.jpg": tf_jpeg(odd, quality=75, progressive=True),
        "tf_progressive_444_q95_80x60.jpg": tf_jpeg(face[:60, :80], quality=95,
                                                    progressive=True, chroma_downsampling=False),
        "pil_progressive_420_q80_157x123.jpg": pil_jpeg(face, quality=80, progressive=True),
        "pil_progressive_422_q60_rst2_37x23.jpg": pil_jpeg(odd, quality=60, progressive=True,
                                                           subsampling="4:2:2",
                                                           restart_marker_blocks=2),
        "pil_progressive_gray_q90_37x23.jpg": pil_jpeg(np.ascontiguousarray(odd[..., 0]),
                                                       quality=90, progressive=True),
        "pil_progressive_3x5.jpg": pil_jpeg(tiny, quality=85, progressive=True),
        # The small encoder above: other samplings, scan layouts and colour spaces.
        "mini_440_37x23.jpg": mini_jpeg(odd, [(1, 2), (1, 1), (1, 1)]),
        "mini_411_37x23.jpg": mini_jpeg(odd, [(4, 1), (1, 1), (1, 1)]),
        "mini_31_37x23.jpg": mini_jpeg(odd, [(3, 1), (1, 1), (1, 1)]),
        "mini_22_12_12_37x23.jpg": mini_jpeg(odd, [(2, 2), (1, 2), (1, 2)]),
        "mini_22_21_21_37x23.jpg": mini_jpeg(odd, [(2, 2), (2, 1), (2, 1)]),
        "mini_22_11_22_37x23.jpg": mini_jpeg(odd, [(2, 2), (1, 1), (2, 2)]),
        "mini_41_21_11_45x37.jpg": mini_jpeg(wave[30:67, 60:105], [(4, 1), (2, 1), (1, 1)]),
        "mini_440_3x5.jpg": mini_jpeg(tiny, [(1, 2), (1, 1), (1, 1)]),
        "mini_420_2x2.jpg": mini_jpeg(np.ascontiguousarray(tiny[:2, :2]), [(2, 2), (1, 1), (1, 1)]),
        "mini_420_scans_rst2_37x23.jpg": mini_jpeg(odd, [(2, 2), (1, 1), (1, 1)],
                                                   scans="separate", restart=2),
        "mini_420_rst1_37x23.jpg": mini_jpeg(odd, [(2, 2), (1, 1), (1, 1)], restart=1),
        "mini_rgb_adobe_37x23.jpg": mini_jpeg(odd, [(1, 1)] * 3, color="rgb", jfif=False,
                                              adobe=0),
        "mini_rgb_ids_37x23.jpg": mini_jpeg(odd, [(2, 1), (1, 1), (1, 1)], color="rgb",
                                            jfif=False, ids=[82, 71, 66]),
        "mini_ycc_adobe1_37x23.jpg": mini_jpeg(odd, [(2, 1), (1, 1), (1, 1)], jfif=False,
                                               adobe=1),
        "mini_ycc_noids_37x23.jpg": mini_jpeg(odd, [(1, 1)] * 3, jfif=False, ids=[7, 8, 9]),
        "mini_gray_22_37x23.jpg": mini_jpeg(odd, [(2, 2)], color="gray"),
        "mini_q1_37x23.jpg": mini_jpeg(odd, [(1, 1)] * 3, qscale=0.01),
    }
    # A progressive file cut after its third scan (EOI appended): its coefficients are
    # incomplete, so libjpeg-turbo smooths the blocks (do_block_smoothing), which jpeg-tf
    # leaves to the fallback decoder.
    prog = files["pil_progressive_420_q80_157x123.jpg"]
    sos = [i for i in range(len(prog) - 1) if prog[i] == 0xFF and prog[i + 1] == 0xDA]
    files["pil_progressive_cut3_157x123.jpg"] = prog[:sos[3]] + b"\xff\xd9"
    meta = {}
    for name, data in files.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        d = decode(data)
        meta[name] = {
            "file": f"tests/fixtures/jpeg/{name}",
            "shape": list(d.shape),
            "sha256": hashlib.sha256(d.tobytes()).hexdigest(),
            "exact": "cut3" not in name,
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
