#!/usr/bin/env bash
# Creates tools/.venv with the pinned TensorFlow used to make reference fixtures.
# Only needed to regenerate fixtures or run the TensorFlow side of benchmarks;
# `cargo test` uses the committed fixtures and needs no Python.
# `tools/setup-python.sh --bench` also installs tools/requirements-bench.txt (tf2onnx, ONNX Runtime,
# OpenVINO for tools/bench_tfgraph_peers.py; tensorflow-hub for tools/bench_finetune.py) into the
# same venv; they fit TensorFlow 2.21's pins.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/.venv/bin/python" ]; then
  python3 -m venv "$here/.venv"
fi
"$here/.venv/bin/pip" install -q -r "$here/requirements.txt"
if [ "${1:-}" = "--bench" ]; then
  "$here/.venv/bin/pip" install -q -r "$here/requirements-bench.txt"
  # tools/bench_finetune.py's Keras side (hub.KerasLayer); --no-deps as in requirements-bench.txt.
  "$here/.venv/bin/pip" install -q --no-deps tensorflow-hub==0.16.1
  "$here/.venv/bin/pip" check
fi
echo "$here/.venv/bin/python"
