"""Text speed side by side (issue 14, "Speed"): `embed` throughput (sentences/s) and `train-imdb` s/epoch
against TensorFlow / tf_keras, in one run, on full-size text SavedModels.

Usage:
    tools/.venv/bin/python tools/bench_text.py --embed BIN --train-imdb BIN
        [--imdb ../shared/data/aclImdb_v1_labeled.tar.gz] [--only embed|train] [--runs 3]
        [--batch 1024] [--epochs 20] [--embedding-epochs 5] [--reexport] [--json tools/out/bench_text.json]

Models (tools/out/text_bench/, made once and reused unless --reexport; export_v2 pattern through
tools/make_text_graph_fixtures.py's TextGraphModel: tf.saved_model.save of a tf.train.Checkpoint
subclass, `__call__` and `_tokenize` tf.functions over [None] strings, a tokens.txt asset,
index_table_from_file + FastHashSpec OOV buckets, sqrtn bag):
  nnlm128_f32   NNLM-en-dim128-like: 200,000 tokens (the most frequent IMDB training tokens after `\\pP`
                removal and splitting on " ", ties by bytes, then synthetic filler `zzfill000000`...),
                1 OOV bucket, 128 dims, float32 table (uniform [-0.1, 0.1), seed 1), `\\pP` removal +
                StringSplitV2 " ". The hand-written text embedding claims it (converted once into the cache).
  nnlm128_f64   the same table as float64 (export_v2.py's np.array default).
  dan512        a DAN-style encoder: the same vocabulary and float32 table, TF1 StringSplit (empty tokens
                dropped, no punctuation removal, as USE's tokenization), sqrtn bag, dense1 Dense(512, relu),
                dense2 Dense(128). Not the hand-written pattern: runs through the graph executor.

Inputs: the 25,000 IMDB test reviews ("long", ~230 tokens; `\\n` / `\\r` replaced by spaces so that one
review is one line for `embed`) and the first sentence of each ("short": `<br />` removed, split after
[.!?] + whitespace). TF and `embed` get the same bytes.

Protocol (wall clock, as noisy as the machine; the 1-minute load average is recorded per measurement):
  - TensorFlow: `m = tf.saved_model.load(dir)` (its time reported as load), then `m(tf.constant(batch))
    .numpy()` over batches of --batch (a warm-up pass over all sentences, then --runs timed passes; the
    figure is sentences / median pass time); batch 1 on the first 200 sentences the same way. Default
    thread settings.
  - tfhub-rs: `embed --model DIR --input FILE -o out.npy --batch B` (release binary) with TFHUB_CACHE_DIR
    a fresh temp folder: one untimed run (converts into the cache), then --runs timed runs of the whole
    input and --runs runs of an empty input (the model's load time); reported: sentences / median(process)
    and sentences / (median(process) - median(empty)). Batch 1: the first 200 sentences, `--batch 1`.
  - agreement: max |embed - TF| over the first 1,000 sentences (TF's float64 output for nnlm128_f64, embed
    writes float32), and the same relative to max |TF|.
  - training: tools/keras_text_classifier.py --dataset imdb --seeds 42 --rust TRAIN_IMDB (tf_keras +
    hub.KerasLayer(trainable=True) vs `train-imdb --from-scratch`, 15,000 training reviews, 10,000
    validation reviews, batch 512), then the same with `--embedding nnlm128_f32` on both sides
    (hub.KerasLayer(trainable=True) on the 200,001 x 128 table vs `train-imdb --embedding`), --epochs and
    --embedding-epochs epochs. Each in its own process; train-imdb is called through a small wrapper that
    keeps its metrics.json and stderr. s/epoch: each side's median over epochs 2..N. Keras' epoch time
    (callback on_epoch_begin..on_epoch_end) includes the validation pass and the in-graph tokenization of
    every batch; train-imdb's is given with the validation pass ("seconds", the like-for-like figure) and
    without it ("train_seconds"); train-imdb tokenizes the reviews once before the first epoch (its
    "read and tokenized in" time is reported). Whole run: the wall time of train-imdb's process, and of
    keras_text_classifier.py's process minus train-imdb's (Python and TF start-up, reading the archive, the
    vocabulary, the export, fit, predict).

Writes --json (default tools/out/bench_text.json) and prints a markdown table.
"""
import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from keras_imdb import build_vocab, read_imdb  # noqa: E402
from make_text_graph_fixtures import TextGraphModel, make_layers  # noqa: E402

IMDB = os.path.join(ROOT, "..", "shared", "data", "aclImdb_v1_labeled.tar.gz")
OUT = os.path.join(HERE, "out", "text_bench")
VOCAB_SIZE = 200_000
DIM = 128

MODELS = {
    # name: (table dtype, pattern, split, dense layer sizes, what it mirrors)
    "nnlm128_f32": (np.float32, r"\pP", "v2_keep_empty", [],
                    "NNLM-en-dim128-like, float32, \\pP removal, split ' ' (hand-written path)"),
    "nnlm128_f64": (np.float64, r"\pP", "v2_keep_empty", [],
                    "the same, float64 table"),
    "dan512": (np.float32, None, "v1_skip_empty", [(DIM, 512, "relu"), (512, 128, None)],
               "DAN: TF1 StringSplit, bag, Dense(512, relu), Dense(128) (graph executor)"),
}


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def machine():
    info = {"machine": platform.machine(), "os_cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "python": platform.python_version(), "tf_version": tf.__version__}
    for cmd, key in ((["lscpu"], "lscpu"), (["nproc"], "nproc")):
        try:
            info[key] = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as e:
            info[key] = f"unavailable: {e}"
    info["lscpu_head"] = "\n".join(info["lscpu"].splitlines()[:10])
    for line in info["lscpu"].splitlines():
        if line.startswith("Model name:"):
            info["model"] = line.split(":", 1)[1].strip()
    info["nice"] = os.nice(0)
    return info


# ---------------------------------------------------------------- data and models

def first_sentence(text):
    text = text.replace(b"<br />", b" ").replace(b"<br/>", b" ")
    for s in re.split(rb"(?<=[.!?])\s+", text):
        s = s.strip()
        if s:
            return s
    return text.strip()


def one_line(s):
    return s.replace(b"\r", b" ").replace(b"\n", b" ")


def load_inputs(imdb):
    train, test = read_imdb(imdb)
    long_ = [one_line(r[1]) for r in test]
    short = [one_line(first_sentence(r[1])) for r in test]
    return train, {"long": long_, "short": short}


def make_vocab(train):
    vocab = build_vocab([r[1] for r in train], VOCAB_SIZE)
    n_imdb = len(vocab)
    vocab += [b"zzfill%06d" % i for i in range(VOCAB_SIZE - n_imdb)]
    assert len(set(vocab)) == VOCAB_SIZE
    return vocab, n_imdb


def export_all(train, reexport):
    """Exports the MODELS under OUT (skipped when a model's stamp matches). Returns {name: info}."""
    os.makedirs(OUT, exist_ok=True)
    stamp_path = os.path.join(OUT, "models.json")
    want = {name: {"dtype": str(np.dtype(spec[0])), "pattern": spec[1], "split": spec[2],
                   "layers": [list(l) for l in spec[3]], "vocab_size": VOCAB_SIZE, "dim": DIM, "oov_buckets": 1,
                   "about": spec[4]} for name, spec in MODELS.items()}
    have = {}
    if os.path.isfile(stamp_path):
        with open(stamp_path) as f:
            have = json.load(f)
    todo = [n for n in MODELS if reexport or not os.path.isfile(os.path.join(OUT, n, "saved_model.pb"))
            or {k: v for k, v in have.get(n, {}).items() if k in want[n]} != want[n]]
    if not todo:
        return have
    t0 = time.time()
    vocab, n_imdb = make_vocab(train)
    tmp = tempfile.mkdtemp(prefix="bench_text_vocab_")
    vpath = os.path.join(tmp, "tokens.txt")
    with open(vpath, "wb") as f:
        f.write(b"".join(t + b"\n" for t in vocab))
    table = np.random.default_rng(1).uniform(-0.1, 0.1, size=(VOCAB_SIZE + 1, DIM)).astype(np.float32)
    for name in todo:
        dtype, pattern, split, sizes, _ = MODELS[name]
        layers = make_layers(sizes, dtype, 7)
        module = TextGraphModel(vpath, table.astype(dtype), 1, pattern, False, split, "sqrtn", layers)
        path = os.path.join(OUT, name)
        shutil.rmtree(path, ignore_errors=True)
        tf.saved_model.save(module, path)
        have[name] = dict(want[name], imdb_tokens=n_imdb, filler_tokens=VOCAB_SIZE - n_imdb)
        print(f"exported {path} ({n_imdb} IMDB tokens + {VOCAB_SIZE - n_imdb} filler)", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    with open(stamp_path, "w") as f:
        json.dump(have, f, indent=1)
    print(f"exports: {time.time() - t0:.1f} s", flush=True)
    return have


# ---------------------------------------------------------------- embed: TensorFlow

def tf_embed(path, sentences, batch, runs):
    t = time.perf_counter()
    m = tf.saved_model.load(path)
    load_s = time.perf_counter() - t

    def one_pass(rows, b):
        outs = []
        for i in range(0, len(rows), b):
            outs.append(m(tf.constant(rows[i:i + b])).numpy())
        return np.concatenate(outs)

    res = {"load_s": load_s}
    for label, rows, b in (("batch", sentences, batch), ("batch1", sentences[:200], 1)):
        la = loadavg()
        out = one_pass(rows, b)  # warm-up
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            one_pass(rows, b)
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        res[label] = {"sentences": len(rows), "batch": b, "times_s": times, "median_s": med,
                      "sentences_per_s": len(rows) / med, "loadavg_before": la, "loadavg_after": loadavg()}
        if label == "batch":
            res["_out"] = out[:1000]
            res["output_dtype"] = str(out.dtype)
    return res


# ---------------------------------------------------------------- embed: tfhub-rs

def rs_embed(binary, path, sentences, batch, runs, work):
    cache = tempfile.mkdtemp(prefix="cache_", dir=work)
    env = dict(os.environ, TFHUB_CACHE_DIR=cache)
    files = {}
    for label, rows in (("all", sentences), ("first200", sentences[:200]), ("empty", [])):
        files[label] = os.path.join(work, f"{label}.txt")
        with open(files[label], "wb") as f:
            f.write(b"".join(s + b"\n" for s in rows))
    out_npy = os.path.join(work, "out.npy")

    def run(label, b):
        if os.path.exists(out_npy):
            os.remove(out_npy)
        cmd = [binary, "--model", path, "--input", files[label], "-o", out_npy, "--batch", str(b)]
        t = time.perf_counter()
        p = subprocess.run(cmd, env=env, capture_output=True)
        dt = time.perf_counter() - t
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.decode(errors='replace')[-2000:]}")
        return dt, p.stderr.decode(errors="replace")

    first_s, first_log = run("empty", batch)  # converts into the cache (or opens the graph)
    res = {"first_run_s": first_s, "first_run_stderr": first_log.strip()[-1000:]}
    empties = [run("empty", batch)[0] for _ in range(runs)]
    load = statistics.median(empties)
    res["load_s"] = load
    res["empty_times_s"] = empties
    run("all", batch)  # warm (page cache)
    out = np.load(out_npy)
    res["_out"] = out[:1000]
    for label, fl, b in (("batch", "all", batch), ("batch1", "first200", 1)):
        n = len(sentences) if fl == "all" else min(200, len(sentences))
        la = loadavg()
        times = [run(fl, b)[0] for _ in range(runs)]
        med = statistics.median(times)
        res[label] = {"sentences": n, "batch": b, "times_s": times, "median_s": med,
                      "sentences_per_s_process": n / med,
                      "sentences_per_s_minus_load": n / (med - load) if med > load else None,
                      "loadavg_before": la, "loadavg_after": loadavg()}
    res["cache_entries"] = sorted(os.listdir(cache))
    shutil.rmtree(cache, ignore_errors=True)
    return res


def bench_embed(args, inputs, report):
    rows = []
    for name in MODELS:
        path = os.path.abspath(os.path.join(OUT, name))
        for kind, sentences in inputs.items():
            print(f"embed {name} {kind}: TensorFlow ...", flush=True)
            t = tf_embed(path, sentences, args.batch, args.runs)
            print(f"embed {name} {kind}: tfhub-rs ...", flush=True)
            work = tempfile.mkdtemp(prefix="bench_text_embed_")
            try:
                r = rs_embed(args.embed, path, sentences, args.batch, args.runs, work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            want, got = t.pop("_out").astype(np.float64), r.pop("_out").astype(np.float64)
            if want.shape != got.shape:
                diff = {"max_abs_diff": None, "shape_tf": list(want.shape), "shape_rs": list(got.shape)}
            else:
                d = float(np.abs(want - got).max())
                diff = {"max_abs_diff": d, "max_rel_diff": d / max(float(np.abs(want).max()), 1e-30)}
            tokens = sum(len(s.split()) for s in sentences) / len(sentences)
            row = {"model": name, "input": kind, "sentences": len(sentences),
                   "mean_whitespace_tokens": tokens, "tf": t, "rs": r, "agreement_first_1000": diff}
            rows.append(row)
            report["embed"] = rows
            write_json(args.json, report)
            print(f"  TF {t['batch']['sentences_per_s']:.0f}/s (load {t['load_s']:.2f} s), tfhub-rs "
                  f"{r['batch']['sentences_per_s_process']:.0f}/s process, "
                  f"{fmt(r['batch']['sentences_per_s_minus_load'], 0)}/s minus load (load {r['load_s']:.2f} s); "
                  f"max |diff| {fmt(diff.get('max_abs_diff'), 'e')}", flush=True)


# ---------------------------------------------------------------- training

WRAPPER = """import os, re, shutil, subprocess, sys
p = subprocess.run([{binary!r}] + sys.argv[1:], stderr=subprocess.PIPE)
sys.stderr.buffer.write(p.stderr)
out = sys.argv[sys.argv.index("--out") + 1]
if p.returncode == 0:
    shutil.copy(os.path.join(out, "metrics.json"), {dest!r})
with open({dest!r} + ".stderr", "wb") as f:
    f.write(p.stderr)
sys.exit(p.returncode)
"""


def rust_details(path):
    """train-imdb's own figures (metrics.json + stderr, kept by the wrapper): per-epoch seconds with and
    without the validation pass, and the one-off read + tokenize time."""
    with open(path) as f:
        m = json.load(f)
    with open(path + ".stderr", "rb") as f:
        err = f.read().decode(errors="replace")
    tok = re.search(r"read and tokenized in ([0-9.]+)s", err)
    with_val = [e["seconds"] for e in m["epochs"]]
    train_only = [e.get("train_seconds") or e["seconds"] for e in m["epochs"]]
    return {"epoch_s_with_validation": with_val, "epoch_s_train_only": train_only,
            "s_per_epoch_with_validation": float(np.median(with_val[1:] if len(with_val) > 1 else with_val)),
            "s_per_epoch_train_only": float(np.median(train_only[1:] if len(train_only) > 1 else train_only)),
            "read_and_tokenize_s": float(tok.group(1)) if tok else None, "backend": m.get("backend")}


def bench_train(args, report):
    report["train"] = []
    wrap_dir = tempfile.mkdtemp(prefix="bench_text_train_")
    runs = [("from scratch (20,000 x 20 table)", [], args.epochs),
            ("--embedding nnlm128_f32 (200,001 x 128 table)", ["--embedding", os.path.abspath(
                os.path.join(OUT, "nnlm128_f32"))], args.embedding_epochs)]
    for label, extra, epochs in runs:
        tag = "scratch" if not extra else "nnlm128"
        out = os.path.join(OUT, f"train_{tag}.json")
        metrics = os.path.join(OUT, f"train_{tag}_rust_metrics.json")
        wrapper = os.path.join(wrap_dir, f"train_imdb_{tag}.py")
        with open(wrapper, "w") as f:
            f.write(f"#!{sys.executable}\n" + WRAPPER.format(binary=os.path.abspath(args.train_imdb), dest=metrics))
        os.chmod(wrapper, 0o755)
        cmd = [sys.executable, os.path.join(HERE, "keras_text_classifier.py"), "--dataset", "imdb",
               "--imdb", args.imdb, "--seeds", "42", "--epochs", str(epochs), "--rust", wrapper,
               "--out", out, *extra]
        print(f"train {label}: {' '.join(cmd)}", flush=True)
        la = loadavg()
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.time() - t0
        if p.returncode != 0:
            report["train"].append({"run": label, "error": p.stderr[-3000:]})
            print(p.stdout[-2000:], p.stderr[-3000:], flush=True)
            continue
        with open(out) as f:
            doc = json.load(f)
        k, r = doc["keras"][0], doc["rust"][0]
        entry = {"run": label, "epochs": epochs, "wall_s": wall, "loadavg_before": la, "loadavg_after": loadavg(),
                 "keras_s_per_epoch": k["seconds_per_epoch"], "keras_first_epoch_s": k["first_epoch_seconds"],
                 "keras_epoch_s": [e["seconds"] for e in k["epochs"]],
                 "keras_whole_s": wall - r["total_seconds"],
                 "keras_test_accuracy": k["test_accuracy"],
                 "rust_s_per_epoch": r["seconds_per_epoch"], "rust_total_s": r["total_seconds"],
                 "rust_test_accuracy": r["test_accuracy"], "train_examples": k["train_examples"],
                 "validation_examples": k["validation_examples"], "details": out}
        entry.update({f"rust_{k}": v for k, v in rust_details(metrics).items()})
        report["train"].append(entry)
        write_json(args.json, report)
        print(f"  Keras {entry['keras_s_per_epoch']:.2f} s/epoch (acc {entry['keras_test_accuracy']:.4f}), "
              f"train-imdb {entry['rust_s_per_epoch_with_validation']:.2f} s/epoch with validation, "
              f"{entry['rust_s_per_epoch_train_only']:.2f} training only (acc {entry['rust_test_accuracy']:.4f})",
              flush=True)
    shutil.rmtree(wrap_dir, ignore_errors=True)


# ---------------------------------------------------------------- output

def fmt(v, spec):
    if v is None:
        return "-"
    if spec == "e":
        return f"{v:.1e}"
    return f"{v:,.{spec}f}"


def write_json(path, report):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=1)
    os.replace(path + ".tmp", path)


def markdown(report):
    lines = []
    m = report["machine"]
    lines.append(f"Machine: {m.get('model', m['machine'])}, nproc {m['nproc']}, TF {m['tf_version']}, "
                 f"nice {m['nice']}")
    if report.get("embed"):
        lines += ["", "| model | input (sentences, mean tokens) | TF sent/s b1024 | tfhub-rs sent/s process | "
                  "tfhub-rs sent/s minus load | ratio rs/TF (minus load) | TF b1 sent/s | tfhub-rs b1 sent/s "
                  "minus load | TF load s | tfhub-rs load s (first run) | max abs diff (rel) |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in report["embed"]:
            t, r, d = row["tf"], row["rs"], row["agreement_first_1000"]
            ml = r["batch"]["sentences_per_s_minus_load"]
            ratio = ml / t["batch"]["sentences_per_s"] if ml else None
            lines.append(
                f"| {row['model']} | {row['input']} ({row['sentences']:,}, {row['mean_whitespace_tokens']:.0f}) | "
                f"{fmt(t['batch']['sentences_per_s'], 0)} | {fmt(r['batch']['sentences_per_s_process'], 0)} | "
                f"{fmt(ml, 0)} | {fmt(ratio, 2)} | {fmt(t['batch1']['sentences_per_s'], 0)} | "
                f"{fmt(r['batch1']['sentences_per_s_minus_load'], 0)} | {t['load_s']:.2f} | "
                f"{r['load_s']:.2f} ({r['first_run_s']:.1f}) | {fmt(d.get('max_abs_diff'), 'e')} "
                f"({fmt(d.get('max_rel_diff'), 'e')}) |")
    if report.get("train"):
        lines += ["", "| train-imdb vs tf_keras (IMDB, 15,000 train + 10,000 validation, batch 512) | epochs | "
                  "Keras s/epoch (with validation) | train-imdb s/epoch with validation (training only) | "
                  "ratio Keras/rs | train-imdb one-off read+tokenize s | Keras / train-imdb whole run s | "
                  "Keras test acc | train-imdb test acc |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for e in report["train"]:
            if "error" in e:
                lines.append(f"| {e['run']} | error | | | | | | | |")
                continue
            rv = e["rust_s_per_epoch_with_validation"]
            lines.append(f"| {e['run']} | {e['epochs']} | {e['keras_s_per_epoch']:.2f} | {rv:.2f} "
                         f"({e['rust_s_per_epoch_train_only']:.2f}) | {e['keras_s_per_epoch'] / rv:.2f} | "
                         f"{fmt(e['rust_read_and_tokenize_s'], 1)} | {e['keras_whole_s']:.0f} / {e['rust_total_s']:.0f} | "
                         f"{e['keras_test_accuracy']:.4f} | {e['rust_test_accuracy']:.4f} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--embed", help="the embed binary (release)")
    p.add_argument("--train-imdb", help="the train-imdb binary (release)")
    p.add_argument("--imdb", default=IMDB)
    p.add_argument("--only", choices=["embed", "train"])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--embedding-epochs", type=int, default=5)
    p.add_argument("--reexport", action="store_true")
    p.add_argument("--json", default=os.path.join(HERE, "out", "bench_text.json"))
    args = p.parse_args()
    do_embed, do_train = args.only in (None, "embed"), args.only in (None, "train")
    if do_embed and not args.embed or do_train and not args.train_imdb:
        p.error("--embed BIN and --train-imdb BIN are needed (or --only)")
    args.imdb = os.path.abspath(args.imdb)
    report = {"machine": machine(), "protocol": {"runs": args.runs, "batch": args.batch, "epochs": args.epochs,
                                                  "embedding_epochs": args.embedding_epochs},
              "binaries": {"embed": args.embed, "train_imdb": args.train_imdb}, "started": time.ctime()}
    print(report["machine"]["lscpu_head"], "\nnproc", report["machine"]["nproc"], flush=True)
    train, inputs = load_inputs(args.imdb)
    report["models"] = export_all(train, args.reexport)
    del train
    if do_embed:
        bench_embed(args, inputs, report)
    if do_train:
        bench_train(args, report)
    report["finished"] = time.ctime()
    report["markdown"] = markdown(report)
    write_json(args.json, report)
    print()
    print(report["markdown"])
    print(args.json)


if __name__ == "__main__":
    main()
