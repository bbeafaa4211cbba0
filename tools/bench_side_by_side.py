"""tfhub-rs against TensorFlow in one run, alternating, on this machine.

Usage:
  tools/.venv/bin/python tools/bench_side_by_side.py inception   [--rounds 3] [--iters 10]
  tools/.venv/bin/python tools/bench_side_by_side.py stylization [--rounds 3] [--iters 10]

Builds the Rust benchmark once (`cargo bench --no-run`, release), then runs `rounds` rounds of
(TensorFlow measurement, Rust measurement) back to back, so that both sides see the same machine
load, and prints the median of each side over the rounds and the ratio (> 1: tfhub-rs faster).

- inception: TF-Slim Inception-v3, full width, 299x299, batch 1 and 16, images/s. TF side:
  `bench_inception_tf.py` (the slim network as a tf.function); Rust side:
  `cargo bench -p benches --bench inception` (models::cpu::InceptionV3Cpu, what `classify` runs).
- stylization: the Magenta SavedModel at full width, 384x384 content + 256x256 style, ms per
  call. TF side: `bench_stylization_tf.py` (the SavedModel for the total, Magenta's graph in a
  session for the halves); Rust side: `cargo bench -p benches --bench stylization`. Needs
  tools/out/stylization_full (`make_magenta_fixture.py --full`).
"""

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def machine():
    cpu = platform.processor() or "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.2f}"


def cargo_bench(package, bench):
    """Builds the bench and returns the path of its executable."""
    r = subprocess.run(
        ["cargo", "bench", "-p", package, "--bench", bench, "--no-run", "--message-format=json"],
        cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr[-4000:])
    exe = None
    for line in r.stdout.splitlines():
        m = re.search(r'"executable":"([^"]+)"', line)
        if m and f'"name":"{bench}"' in line:
            exe = m.group(1)
    if not exe:
        sys.exit(f"no executable for bench {bench}")
    return exe


def run(cmd):
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr[-4000:]}")
    return r.stdout


def parse(out, pattern):
    return {m.group(1): float(m.group(2)) for m in re.finditer(pattern, out)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=["inception", "stylization"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    a = ap.parse_args()
    py = sys.executable
    if a.model == "inception":
        exe = cargo_bench("benches", "inception")
        rust_cmd = [exe, "--iters", str(a.iters)]
        tf_cmd = [py, os.path.join(HERE, "bench_inception_tf.py"), "--iters", str(a.iters)]
        pat = r"batch\s+(\d+):\s+([\d.]+) img/s"
        unit, higher_better = "img/s", True
        label = lambda k: f"batch {k}"
    else:
        exe = cargo_bench("benches", "stylization")
        rust_cmd = [exe, "--iters", str(a.iters)]
        tf_cmd = [py, os.path.join(HERE, "bench_stylization_tf.py"), "--iters", str(a.iters)]
        unit, higher_better = "ms", False
        label = lambda k: k
    tf_runs, rust_runs = [], []
    print(f"machine: {machine()}")
    for i in range(a.rounds):
        tf_out = run(tf_cmd)
        rust_out = run(rust_cmd)
        if a.model == "inception":
            tf = parse(tf_out, pat)
            rs = parse(rust_out, pat)
        else:
            t = parse(tf_out, r"TF (\w+)_ms: ([\d.]+) ms")
            tf = {"predictor": t["predictor"], "transformer": t["transformer"], "total": t["total"]}
            rs = parse(rust_out, r"(?m)^(predictor|transformer|total): ([\d.]+) ms")
        print(f"round {i + 1}: TF {tf}  tfhub-rs {rs}")
        tf_runs.append(tf)
        rust_runs.append(rs)
    print(f"\nmedian over {a.rounds} rounds ({unit}; ratio > 1 means tfhub-rs is faster):")
    for k in tf_runs[0]:
        t = statistics.median(r[k] for r in tf_runs)
        r = statistics.median(x[k] for x in rust_runs)
        ratio = r / t if higher_better else t / r
        print(f"  {label(k):12} TensorFlow {t:8.2f}  tfhub-rs {r:8.2f}  ratio {ratio:5.2f}x")
    print(f"machine after: {machine()}")


if __name__ == "__main__":
    main()
