"""Full-size exactness check of the Magenta stylization SavedModel: TensorFlow vs our Burn port.

Usage:  tools/.venv/bin/python tools/check_stylization_full.py [--regenerate] [--release] [--cli]

1. Unless tools/out/stylization_full exists (or --regenerate): runs
   `tools/make_magenta_fixture.py --full`, which builds the published architecture with Magenta's own
   code (Inception-v3 depth multiplier 1 up to Mixed_6e, transformer alpha 1), random weights, exports it
   with Magenta's export_hub.py, and records what TensorFlow outputs for 384x384 content / 256x256 style
   images made from ../shared/data/images (synthetic images when absent).
2. Runs the Rust end-to-end test `cargo test -p convert --test stylization_full -- --nocapture`
   (savedmodel::read -> convert::kinds::stylization -> models::stylization on flex), which reports the
   max abs difference of the bottleneck and of the stylized image per case and fails above 1e-4.
3. With --cli, also converts with the `convert` program and stylizes each case with the `stylize` program
   (`--content-size 0 --style-size 0 --no-crop --no-blur`, PNG inputs = the same uint8 values TF got,
   `.npy` output), and reports the max abs difference to TF's output.

Writes only under tools/out/stylization_full (weights_cli/, <case>_rust.npy for --cli).
Prints one line per case and a final summary; exits non-zero when a check fails.
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(HERE, "out", "stylization_full")


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regenerate", action="store_true", help="rebuild the TF reference even if present")
    ap.add_argument("--release", action="store_true", help="build the Rust side in release mode")
    ap.add_argument("--cli", action="store_true", help="also check the convert + stylize programs")
    args = ap.parse_args()

    if args.regenerate or not os.path.isfile(os.path.join(OUT, "cases.json")):
        r = run([sys.executable, os.path.join(HERE, "make_magenta_fixture.py"), "--full"])
        if r.returncode != 0:
            sys.exit("make_magenta_fixture.py --full failed")

    profile = ["--release"] if args.release else []
    r = run(["cargo", "test", "-p", "convert", *profile, "--test", "stylization_full", "--", "--nocapture"],
            capture_output=True, text=True)
    lines = [l for l in r.stdout.splitlines() if "diff" in l or "SKIPPED" in l or "panicked" in l]
    print("\n".join(lines))
    ok = r.returncode == 0
    if not ok:
        print(r.stdout[-4000:], r.stderr[-4000:], sep="\n")

    if args.cli:
        import numpy as np
        meta = json.load(open(os.path.join(OUT, "cases.json")))
        weights = os.path.join(OUT, "weights_cli")
        r = run(["cargo", "run", "-q", "-p", "convert", *profile, "--", os.path.join(OUT, "saved_model"),
                 "--out", weights])
        if r.returncode != 0:
            sys.exit("convert failed")
        worst = 0.0
        for c in meta["cases"]:
            if "content_png" not in c:
                continue
            out_npy = os.path.join(OUT, c["name"] + "_rust.npy")
            r = run(["cargo", "run", "-q", "-p", "stylize", *profile, "--", "--model", weights,
                     "--content", os.path.join(OUT, c["content_png"]), "--style", os.path.join(OUT, c["style_png"]),
                     "--content-size", "0", "--style-size", "0", "--no-crop", "--no-blur", "-o", out_npy])
            if r.returncode != 0:
                ok = False
                continue
            ours = np.load(out_npy)
            tf = np.load(os.path.join(OUT, c["stylized"]))[0]
            d = float(np.abs(ours - tf).max()) if ours.shape == tf.shape else float("inf")
            worst = max(worst, d)
            print(f"cli {c['name']}: max abs diff {d:.3e}")
        print(f"cli worst max abs diff {worst:.3e}")
        ok = ok and worst <= 1e-4

    print("OK" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
