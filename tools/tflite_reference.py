"""TF Lite ground truth for the `tflite` reader and the Magenta TF Lite stylization port.

Usage (from the repository root):

    tools/.venv/bin/python tools/tflite_reference.py fixtures
        Writes tests/fixtures/stylization_tflite/tiny_{f16,int8}.tflite (two tiny
        conv models made with the TF Lite converter: float16 weights behind a
        DEQUANTIZE op, and full-integer int8 with per-channel weight scales) and
        tiny_expected.json: every constant tensor's name, dtype, shape,
        quantization and values as the TF Lite interpreter dequantizes them, plus
        each model's input and interpreter output (the tflite crate's tests read it).

    tools/.venv/bin/python tools/tflite_reference.py magenta [--data ../shared/data]
        Runs tf.lite.Interpreter on the shared Magenta files
        (style_predict_quantized_256.tflite, style_transfer_{f16,quantized}_384.tflite)
        with the shared images, preprocessed like the TF Lite Magenta example
        (central square crop, bilinear resize: style 256x256, content 384x384,
        values in [0,1]; no blur). Writes tests/fixtures/stylization_tflite/:
          magenta_reference.json: bottleneck_<style> [100] (interpreter, int8
          predictor), content_sum / style_sum_<style> (sums of the preprocessed
          float inputs, so the Rust side can check its preprocessing matches);
          out_<style>_<f16|int8>.u8: raw uint8 [96,96,3] = the 384x384 interpreter
          output for content tuebingen, 4x4 average-pooled then rounded to 8 bits
          (small, still a faithful picture of the output for a PSNR check).
        Full-size interpreter outputs go to tools/out/tflite_<style>_<kind>.npy.

    tools/.venv/bin/python tools/tflite_reference.py demo
        README's first command (`stylize` with no arguments) through tf.lite.Interpreter: the
        bundled examples/stylize files, Grace Hopper as content (central square, 384, no
        blur) and the Great Wave as style (central square, 256, then `tf.nn.avg_pool` 3x3
        SAME: the blur `stylize` applies by default), both decoded by `tf.io.decode_image`
        (TF's default JPEG decoding). Writes tests/fixtures/stylization_tflite/demo.safetensors:
          content_sub, style_sub: the preprocessed inputs at every 6th row and column;
          bottleneck [100]: the int8 predictor's output;
          stylized_sub: the f16 transfer network's [384, 384, 3] output (fed that
          bottleneck) at every 4th row and column, full-resolution values;
        and demo.json (shapes, strides, norms).
        To make the interpreter see exactly our inputs the Rust tests feed the
        same decoded images; the preprocessing here is numpy + TF (tf.io.decode_jpeg,
        crop, TF bilinear resize with antialias=False, half-pixel centers).
"""

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "stylization_tflite")


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    return tf


def tensor_record(interp, d):
    q = d["quantization_parameters"]
    try:
        v = interp.get_tensor(d["index"])
    except ValueError:
        return None
    rec = {
        "name": d["name"],
        "dtype": np.dtype(d["dtype"]).name,
        "shape": [int(x) for x in d["shape"]],
        "scales": [float(x) for x in q["scales"]],
        "zero_points": [int(x) for x in q["zero_points"]],
        "quantized_dimension": int(q["quantized_dimension"]),
        "raw": v.astype(np.float64).ravel().tolist(),
    }
    if len(q["scales"]) > 0:
        sc = np.asarray(q["scales"], np.float64)
        zp = np.asarray(q["zero_points"], np.float64)
        if len(sc) == 1:
            deq = (v.astype(np.float64) - zp[0]) * sc[0]
        else:
            ax = int(q["quantized_dimension"])
            shp = [1] * v.ndim
            shp[ax] = -1
            deq = (v.astype(np.float64) - zp.reshape(shp)) * sc.reshape(shp)
        rec["dequantized"] = deq.ravel().tolist()
    elif v.dtype in (np.float16, np.float32):
        rec["dequantized"] = v.astype(np.float64).ravel().tolist()
    return rec


def fixtures():
    tf = _tf()
    os.makedirs(FIX, exist_ok=True)
    rng = np.random.default_rng(0)
    inp = tf.keras.Input((8, 8, 3), batch_size=1, name="image")
    x = tf.keras.layers.Conv2D(4, 3, padding="same", activation="relu6", name="conv")(inp)
    x = tf.keras.layers.DepthwiseConv2D(3, strides=2, padding="same", name="dw")(x)
    x = tf.keras.layers.GlobalAveragePooling2D(keepdims=True, name="mean")(x)
    model = tf.keras.Model(inp, x)
    model.get_layer("conv").set_weights([rng.normal(size=(3, 3, 3, 4)).astype(np.float32) * 0.5,
                                         rng.normal(size=(4,)).astype(np.float32) * 0.1])
    model.get_layer("dw").set_weights([rng.normal(size=(3, 3, 4, 1)).astype(np.float32) * 0.5,
                                       rng.normal(size=(4,)).astype(np.float32) * 0.1])
    x_in = rng.uniform(0, 1, size=(1, 8, 8, 3)).astype(np.float32)
    out = {"input": x_in.ravel().tolist(), "models": {}}
    for kind in ["f16", "int8"]:
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if kind == "f16":
            conv.target_spec.supported_types = [tf.float16]
        else:
            def rep():
                for _ in range(8):
                    yield [rng.uniform(0, 1, size=(1, 8, 8, 3)).astype(np.float32)]
            conv.representative_dataset = rep
        data = conv.convert()
        path = os.path.join(FIX, f"tiny_{kind}.tflite")
        with open(path, "wb") as f:
            f.write(data)
        it = tf.lite.Interpreter(model_content=data, experimental_preserve_all_tensors=True)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x_in)
        it.invoke()
        y = it.get_tensor(it.get_output_details()[0]["index"])
        recs = []
        for d in it.get_tensor_details():
            r = tensor_record(it, d)
            if r is not None and np.all(np.isfinite(r["raw"])) and d["name"] and ("conv" in d["name"] or "dw" in d["name"]) and r["shape"] and len(r["raw"]) < 200:
                recs.append(r)
        ops = [o["op_name"] for o in it._get_ops_details()]
        out["models"][kind] = {"file": f"tiny_{kind}.tflite", "ops": ops, "tensors": recs,
                               "output": y.astype(np.float64).ravel().tolist(),
                               "float_output": model(x_in).numpy().astype(np.float64).ravel().tolist()}
        print(kind, len(data), "bytes, ops", ops)
    with open(os.path.join(FIX, "tiny_expected.json"), "w") as f:
        json.dump(out, f)


# ---------------------------------------------------------------- Magenta

def load_rgb(path):
    tf = _tf()
    # TF's default decoding (INTEGER_FAST, fancy upsampling): the Rust side's `jpeg-tf` gives
    # these bytes exactly.
    img = tf.io.decode_jpeg(tf.io.read_file(path), channels=3).numpy()
    return img.astype(np.float32) / 255.0


def central_crop(img):
    h, w, _ = img.shape
    s = min(h, w)
    y, x = (h - s) // 2, (w - s) // 2
    return img[y:y + s, x:x + s]


def resize(img, size):
    tf = _tf()
    return tf.image.resize(img[None], (size, size), method="bilinear", antialias=False).numpy()[0]


def preprocess(path, size):
    return resize(central_crop(load_rgb(path)), size).astype(np.float32)


def run(interp_path, inputs):
    tf = _tf()
    it = tf.lite.Interpreter(model_path=interp_path)
    it.allocate_tensors()
    dets = it.get_input_details()
    for d in dets:
        # Match inputs by shape: images end in 3 channels, the bottleneck in 100.
        key = "bottleneck" if int(d["shape"][-1]) == 100 else "image"
        it.set_tensor(d["index"], inputs[key].reshape(d["shape"]).astype(np.float32))
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def magenta(data):
    mdir = os.path.join(data, "magenta-tflite")
    idir = os.path.join(data, "images")
    styles = ["starry_night", "kandinsky", "The_Great_Wave_off_Kanagawa"]
    res = {}
    content = preprocess(os.path.join(idir, "tuebingen.jpg"), 384)
    res["content_sum"] = np.float64(content.sum())
    for s in styles:
        style = preprocess(os.path.join(idir, s + ".jpg"), 256)
        res[f"style_sum_{s}"] = np.float64(style.sum())
        b = run(os.path.join(mdir, "style_predict_quantized_256.tflite"), {"image": style[None]})
        res[f"bottleneck_{s}"] = b.reshape(-1).astype(np.float32)
        for kind, fname in [("f16", "style_transfer_f16_384.tflite"), ("int8", "style_transfer_quantized_384.tflite")]:
            y = run(os.path.join(mdir, fname), {"image": content[None], "bottleneck": b})
            y = y.reshape(384, 384, 3)
            small = y.reshape(96, 4, 96, 4, 3).mean(axis=(1, 3))
            res[f"out_{s}_{kind}"] = np.clip(np.round(small * 255.0), 0, 255).astype(np.uint8)
            full = os.path.join(ROOT, "tools", "out", f"tflite_{s}_{kind}.npy")
            os.makedirs(os.path.dirname(full), exist_ok=True)
            np.save(full, y.astype(np.float32))
        print(s, "bottleneck norm", float(np.linalg.norm(b)))
    meta = {}
    for k, v in res.items():
        if k.startswith("out_"):
            v.tofile(os.path.join(FIX, k + ".u8"))
        else:
            meta[k] = np.asarray(v).astype(np.float64).tolist()
    meta["styles"] = styles
    with open(os.path.join(FIX, "magenta_reference.json"), "w") as f:
        json.dump(meta, f)
    print("wrote", os.path.join(FIX, "magenta_reference.json"), "and out_*.u8")


def demo():
    tf = _tf()
    from safetensors.numpy import save_file
    ex = os.path.join(ROOT, "examples", "stylize")

    def prepare(path, size, blur):
        img = tf.image.convert_image_dtype(
            tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False), tf.float32)
        img = central_crop(img.numpy())
        img = resize(img, size)  # a square: resize_to_fit == resize to (size, size)
        if blur:
            img = tf.nn.avg_pool(img[None], ksize=3, strides=1, padding="SAME").numpy()[0]
        return img.astype(np.float32)

    content = prepare(os.path.join(ex, "grace_hopper.jpg"), 384, False)
    style = prepare(os.path.join(ex, "great_wave.jpg"), 256, True)
    b = run(os.path.join(ex, "style_predict_quantized_256.tflite"), {"image": style[None]}).reshape(-1)
    y = run(os.path.join(ex, "style_transfer_f16_384.tflite"),
            {"image": content[None], "bottleneck": b.reshape(1, 1, 1, 100)}).reshape(384, 384, 3)
    out = {
        "content_sub": np.ascontiguousarray(content[::6, ::6]),
        "style_sub": np.ascontiguousarray(style[::6, ::6]),
        "bottleneck": b.astype(np.float32),
        "stylized_sub": np.ascontiguousarray(y[::4, ::4]).astype(np.float32),
    }
    save_file(out, os.path.join(FIX, "demo.safetensors"))
    meta = {"content": list(content.shape), "style": list(style.shape), "stylized": list(y.shape),
            "strides": {"content_sub": 6, "style_sub": 6, "stylized_sub": 4},
            "bottleneck_norm": float(np.linalg.norm(b))}
    with open(os.path.join(FIX, "demo.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(meta)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["fixtures", "magenta", "demo"])
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    a = ap.parse_args()
    if a.what == "fixtures":
        fixtures()
    elif a.what == "demo":
        demo()
    else:
        magenta(a.data)


if __name__ == "__main__":
    sys.exit(main())
