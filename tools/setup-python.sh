#!/usr/bin/env bash
# Creates tools/.venv with the pinned TensorFlow used to make reference fixtures.
# Only needed to regenerate fixtures or run the TensorFlow side of benchmarks;
# `cargo test` uses the committed fixtures and needs no Python.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/.venv/bin/python" ]; then
  python3 -m venv "$here/.venv"
fi
"$here/.venv/bin/pip" install -q -r "$here/requirements.txt"
echo "$here/.venv/bin/python"
