"""Side-by-side CPU speed of TensorFlow, ONNX Runtime and OpenVINO (and optionally the Rust graph
executor) on the SavedModels of tools/make_tfgraph_fixtures.py (issue 12, "Speed").

Usage:
    tools/.venv/bin/python tools/bench_tfgraph_peers.py [ROOT] [--only NAME...] [--json out.json]
        [--runtimes tf ort ov] [--batches 1 16] [--runs 5] [--runs1 11] [--warmup 2]
        [--rust 'CMD with {model} {batch}'] [--rust-timeout S] [--reconvert]

ROOT defaults to tools/out/tfgraph (made by `make_tfgraph_fixtures.py --full`); every folder whose
expected.json has "kind": "network" is timed. Set-up: tools/setup-python.sh, then
`tools/.venv/bin/pip install -r tools/requirements-bench.txt` (same venv; see that file).

Protocol (the same for every runtime; each runtime runs in its own subprocess, one after the
other, so no thread pool of one runtime spins while another is timed):
  - input: expected.safetensors "input" (the input tensor of expected.json), its first image
    repeated to the batch (`crates/tfgraph/examples/graph_bench.rs`, the Rust side, makes its
    own deterministic input of the same shape);
  - per batch size: `--warmup` untimed calls, then `--runs` timed calls (`--runs1` at batch 1);
    the figure is batch / median(seconds per call); a call includes handing the input over and
    getting the outputs back as numpy arrays;
  - thread settings: each runtime's defaults, reported in the JSON and printed;
  - TensorFlow: `tf.saved_model.load(dir).signatures["serving_default"]` (TF 2.21, eager call of
    the concrete function);
  - ONNX Runtime: the SavedModel's serving_default converted by tf2onnx (`python -m
    tf2onnx.convert --saved-model DIR --signature_def serving_default --opset 17`), cached as
    tools/out/onnx/<name>.onnx (reconverted when saved_model.pb / variables.index change or with
    --reconvert; the conversion log is tools/out/onnx/<name>.log); CPUExecutionProvider, default
    SessionOptions (graph optimisation level ORT_ENABLE_ALL);
  - OpenVINO: `openvino.convert_model(saved_model dir)` (its TensorFlow frontend reads the
    SavedModel directly), reshaped to the static batch size, compiled for "CPU" with
    INFERENCE_PRECISION_HINT=f32 (on CPUs with bf16 OpenVINO would otherwise run in bf16; whether
    this CPU has bf16 is reported), other properties default (PERFORMANCE_HINT LATENCY, one
    stream); one synchronous infer request, inputs shared (no copy);
  - correctness: every peer's outputs at each batch size are compared with TensorFlow's at the
    same batch size: max|peer - tf| / max|tf|, flagged when above --tol (default 1e-3); TF's own
    batch-1 output is compared with expected.safetensors' first output row;
  - --rust CMD: a shell command template run once per network and batch size after the
    substitution of {model} (absolute path of the saved_model folder), {dir} (the network's
    fixture folder), {name} (the folder name) and {batch}; it must print a JSON object with
    "img_per_s" on its last non-empty stdout line. Its figure goes into the same table with its
    ratio to TF, ORT and OpenVINO (> 1 = Rust faster).

Figures are wall-clock and as noisy as the machine; the 1-minute load average before and after
each network is recorded.
"""
import argparse
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_FIXTURES = os.path.join(HERE, "out", "tfgraph")
ONNX_DIR = os.path.join(HERE, "out", "onnx")
RUNTIMES = {"tf": "TensorFlow", "ort": "ONNX Runtime", "ov": "OpenVINO"}


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------

def load_meta(d):
    with open(os.path.join(d, "expected.json")) as f:
        return json.load(f)


def load_input(d, meta):
    from safetensors.numpy import load_file
    spec = meta["inputs"][0]
    x = load_file(os.path.join(d, "expected.safetensors"))[spec["tensor"]]
    return spec["name"], x


def batched(x, batch):
    import numpy as np
    return np.ascontiguousarray(np.repeat(x[:1], batch, axis=0))


def time_calls(call, batch, warmup, runs):
    """call() must return the outputs as numpy arrays; returns (outputs of the first call, times)."""
    first = call()
    for _ in range(max(0, warmup - 1)):
        call()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return first, times


def rel_diff(got, want):
    import numpy as np
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return float("inf")
    scale = max(float(np.abs(want).max()), 1e-30)
    return float(np.abs(got - want).max()) / scale


def file_sha256(p):
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cpu_info():
    info = {"machine": platform.machine(), "os_cpu_count": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
    try:
        with open("/proc/cpuinfo") as f:
            txt = f.read()
        for line in txt.splitlines():
            if line.startswith("model name"):
                info["model"] = line.split(":", 1)[1].strip()
                break
        for line in txt.splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                info["flags"] = sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")))
                info["bf16"] = bool(flags & {"avx512_bf16", "amx_bf16"})
                break
    except OSError:
        pass
    return info


# --------------------------------------------------------------------------------------------
# Workers (one subprocess per runtime and network)
# --------------------------------------------------------------------------------------------

def worker_tf(d, meta, args):
    import numpy as np
    import tensorflow as tf
    key, x = load_input(d, meta)
    t = time.perf_counter()
    fn = tf.saved_model.load(os.path.join(d, "saved_model")).signatures["serving_default"]
    load_s = time.perf_counter() - t
    res = {"load_s": load_s, "version": tf.__version__,
           "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                       "inter_op": tf.config.threading.get_inter_op_parallelism_threads(),
                       "note": "0 = TensorFlow's default (all logical cores)"},
           "batches": {}}
    outs = {}
    for b in args.batches:
        inp = tf.constant(batched(x, b))

        def call():
            o = fn(**{key: inp})
            return {k: v.numpy() for k, v in o.items()}
        first, times = time_calls(call, b, args.warmup, args.runs1 if b == 1 else args.runs)
        res["batches"][str(b)] = {"times": times}
        for k, v in first.items():
            outs[f"{b}/{k}"] = v
    return res, outs


def convert_onnx(d, name, opset, force, onnx_dir):
    """Converts d/saved_model with tf2onnx into <onnx_dir>/<name>.onnx unless cached."""
    sm = os.path.join(d, "saved_model")
    out = os.path.join(onnx_dir, name + ".onnx")
    stamp_path = out + ".json"
    stamp = {"saved_model.pb": file_sha256(os.path.join(sm, "saved_model.pb")),
             "variables.index": file_sha256(os.path.join(sm, "variables", "variables.index"))
             if os.path.exists(os.path.join(sm, "variables", "variables.index")) else None,
             "opset": opset, "patch_version": 1}
    try:  # not `import tf2onnx`: that imports TensorFlow into the ONNX Runtime worker
        from importlib.metadata import version
        stamp["tf2onnx"] = version("tf2onnx")
    except Exception:  # the conversion below reports a missing tf2onnx
        pass
    if not force and os.path.exists(out) and os.path.exists(stamp_path):
        with open(stamp_path) as f:
            old = json.load(f)
        if {k: old.get(k) for k in stamp} == stamp:
            return {"cached": True, "seconds": old.get("seconds"), "path": out}
    os.makedirs(onnx_dir, exist_ok=True)
    log = out[:-5] + ".log"
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", sm, "--signature_def", "serving_default",
           "--tag", "serve", "--opset", str(opset), "--output", out + ".tmp"]
    t = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=quiet_env())
    secs = time.perf_counter() - t
    if r.returncode != 0 or not os.path.exists(out + ".tmp"):
        with open(log) as f:
            lines = [l.rstrip() for l in f if l.strip()]
        errs = [l for l in lines if "Error" in l or "error" in l or "Unsupported" in l]
        raise RuntimeError(f"tf2onnx failed (exit {r.returncode}, log {log}): " + (errs or lines or ["?"])[-1])
    stamp["patched"] = patch_onnx(out + ".tmp")
    os.replace(out + ".tmp", out)
    stamp["seconds"] = secs
    with open(stamp_path, "w") as f:
        json.dump(stamp, f, indent=1)
    return {"cached": False, "seconds": secs, "path": out}


def patch_onnx(path):
    """tf2onnx 1.17 passes TF's Erfc (in Keras' exact GELU, 0.5 * x * erfc(-x / sqrt(2))) through
    as an op ONNX does not have, so ONNX Runtime rejects the model; rewrite Erfc(x) as 1 - Erf(x)
    (Erf is in every opset). Returns what was rewritten."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper
    m = onnx.load(path)
    done = []

    def fix(graph):
        nodes, n_fixed = [], 0
        for node in graph.node:
            for a in node.attribute:  # sub-graphs (If/Loop bodies)
                if a.type == onnx.AttributeProto.GRAPH:
                    fix(a.g)
                for g in a.graphs:
                    fix(g)
            if node.op_type == "Erfc" and node.domain in ("", "ai.onnx"):
                erf = node.output[0] + "__erf"
                one = node.output[0] + "__one"
                graph.initializer.append(numpy_helper.from_array(np.array(1.0, dtype=np.float32), one))
                nodes.append(helper.make_node("Erf", [node.input[0]], [erf], name=node.name + "__erf"))
                nodes.append(helper.make_node("Sub", [one, erf], [node.output[0]], name=node.name + "__sub"))
                n_fixed += 1
            else:
                nodes.append(node)
        if n_fixed:
            del graph.node[:]
            graph.node.extend(nodes)
            done.append(f"Erfc -> 1 - Erf: {n_fixed} node(s)")

    fix(m.graph)
    if done:
        onnx.save(m, path)
    return done


def worker_ort(d, meta, args):
    import onnxruntime as ort
    name = os.path.basename(os.path.normpath(d))
    key, x = load_input(d, meta)
    conv = convert_onnx(d, name, args.opset, args.reconvert, args.onnx_dir)
    so = ort.SessionOptions()
    t = time.perf_counter()
    sess = ort.InferenceSession(conv["path"], sess_options=so, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t
    in_name = sess.get_inputs()[0].name
    out_names = [o.name for o in sess.get_outputs()]
    res = {"load_s": load_s, "version": ort.__version__, "conversion": conv, "opset": args.opset,
           "providers": sess.get_providers(),
           "threads": {"intra_op_num_threads": so.intra_op_num_threads,
                       "inter_op_num_threads": so.inter_op_num_threads,
                       "execution_mode": str(so.execution_mode),
                       "graph_optimization_level": str(so.graph_optimization_level),
                       "note": "0 = ONNX Runtime's default (intra-op: one thread per physical core)"},
           "batches": {}}
    outs = {}
    for b in args.batches:
        inp = batched(x, b)

        def call():
            return dict(zip(out_names, sess.run(out_names, {in_name: inp})))
        first, times = time_calls(call, b, args.warmup, args.runs1 if b == 1 else args.runs)
        res["batches"][str(b)] = {"times": times}
        for k, v in first.items():
            outs[f"{b}/{k}"] = v
    return res, outs


def worker_ov(d, meta, args):
    import openvino as ov
    key, x = load_input(d, meta)
    core = ov.Core()
    caps = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    t = time.perf_counter()
    model = ov.convert_model(os.path.join(d, "saved_model"))
    convert_s = time.perf_counter() - t
    res = {"convert_s": convert_s, "version": ov.get_version(), "optimization_capabilities": caps,
           "cpu_has_bf16": "BF16" in caps, "full_device_name": core.get_property("CPU", "FULL_DEVICE_NAME"),
           "batches": {}}
    outs = {}
    for b in args.batches:
        m = model.clone()
        m.reshape({m.inputs[0]: [b] + list(x.shape[1:])})
        t = time.perf_counter()
        c = core.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        compile_s = time.perf_counter() - t
        props = {}
        for p in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "PERFORMANCE_HINT", "NUM_STREAMS",
                  "ENABLE_HYPER_THREADING", "ENABLE_CPU_PINNING", "SCHEDULING_CORE_TYPE"):
            try:
                props[p] = str(c.get_property(p))
            except Exception:
                pass
        res["threads"] = props
        req = c.create_infer_request()
        inp = batched(x, b)
        names = [o.get_any_name() for o in c.outputs]

        def call():
            r = req.infer({0: inp}, share_inputs=True)
            return {n: r[o] for n, o in zip(names, c.outputs)}
        first, times = time_calls(call, b, args.warmup, args.runs1 if b == 1 else args.runs)
        res["batches"][str(b)] = {"times": times, "compile_s": compile_s}
        for k, v in first.items():
            outs[f"{b}/{k}"] = v
    return res, outs


WORKERS = {"tf": worker_tf, "ort": worker_ort, "ov": worker_ov}


def run_worker(args):
    import numpy as np
    rt, d, result = args.worker
    meta = load_meta(d)
    try:
        res, outs = WORKERS[rt](d, meta, args)
        np.savez(result + ".npz", **{k.replace("/", "__"): v for k, v in outs.items()})
    except Exception as e:  # reported in the table, the other runtimes go on
        res = {"error": f"{type(e).__name__}: {str(e).strip()}"}
    with open(result, "w") as f:
        json.dump(res, f)


def quiet_env():
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------

def spawn(rt, d, args, tmp):
    result = os.path.join(tmp, f"{rt}.json")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", rt, d, result,
           "--batches", *map(str, args.batches), "--runs", str(args.runs), "--runs1", str(args.runs1),
           "--warmup", str(args.warmup), "--opset", str(args.opset), "--onnx-dir", args.onnx_dir] + (["--reconvert"] if args.reconvert else [])
    r = subprocess.run(cmd, env=quiet_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not os.path.exists(result):
        tail = [l for l in (r.stderr or "").splitlines() if l.strip()][-3:]
        return {"error": f"worker exited {r.returncode}: " + " | ".join(tail)}, {}
    with open(result) as f:
        res = json.load(f)
    outs = {}
    if os.path.exists(result + ".npz"):
        import numpy as np
        with np.load(result + ".npz") as z:
            outs = {k.replace("__", "/"): z[k] for k in z.files}
    return res, outs


def run_rust(template, d, b, timeout):
    subst = {"model": shlex.quote(os.path.abspath(os.path.join(d, "saved_model"))),
             "dir": shlex.quote(os.path.abspath(d)), "name": shlex.quote(os.path.basename(os.path.normpath(d))),
             "batch": str(b)}
    cmd = template
    for k, v in subst.items():
        cmd = cmd.replace("{" + k + "}", v)
    t = time.perf_counter()
    try:
        r = subprocess.run(cmd, shell=True, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"cmd": cmd, "error": f"timed out after {timeout} s"}
    res = {"cmd": cmd, "wall_s": time.perf_counter() - t}
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    if r.returncode != 0:
        tail = [l for l in r.stderr.splitlines() if l.strip()][-2:] or lines[-2:]
        res["error"] = f"exit {r.returncode}: " + " | ".join(tail)
        return res
    try:
        doc = json.loads(lines[-1])
        res["img_per_s"] = float(doc["img_per_s"])
        res["reported"] = doc
    except Exception:
        res["error"] = f"last stdout line is not JSON with img_per_s: {lines[-1][:200] if lines else '(none)'}"
    return res


def fmt(v, w=8):
    if v is None:
        return f"{'-':>{w}}"
    return f"{v:{w}.1f}" if v >= 10 else f"{v:{w}.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.split("\n")[2:]))
    ap.add_argument("root", nargs="?", default=DEFAULT_FIXTURES, help="fixture folder (default tools/out/tfgraph)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="network folders to time")
    ap.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=list(RUNTIMES))
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    ap.add_argument("--runs", type=int, default=5, help="timed calls per batch size (median taken)")
    ap.add_argument("--runs1", type=int, default=11, help="timed calls at batch 1")
    ap.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    ap.add_argument("--opset", type=int, default=17, help="ONNX opset for tf2onnx")
    ap.add_argument("--onnx-dir", default=ONNX_DIR, help="cache of the tf2onnx conversions (default tools/out/onnx)")
    ap.add_argument("--reconvert", action="store_true", help="redo the tf2onnx conversion even if cached")
    ap.add_argument("--tol", type=float, default=1e-3, help="flag peers whose output differs from TF's by more "
                    "than this times max|TF output|")
    ap.add_argument("--rust", metavar="CMD", help="shell command template with {model} {batch} ({dir} {name}) "
                    "printing a JSON line {\"img_per_s\": x}")
    ap.add_argument("--rust-timeout", type=float, default=3600)
    ap.add_argument("--json", metavar="OUT", help="write every figure, time and setting here")
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        run_worker(args)
        return

    nets = []
    for name in sorted(os.listdir(args.root)):
        d = os.path.join(args.root, name)
        if not os.path.isfile(os.path.join(d, "expected.json")):
            continue
        if load_meta(d).get("kind") != "network" or (args.only and name not in args.only):
            continue
        if not os.path.isdir(os.path.join(d, "saved_model")):
            continue
        nets.append((name, d))
    if not nets:
        sys.exit(f"no network fixtures in {args.root} (make them with tools/make_tfgraph_fixtures.py --full)")

    report = {"root": os.path.abspath(args.root), "cpu": cpu_info(), "python": platform.python_version(),
              "protocol": {"batches": args.batches, "runs": args.runs, "runs_batch1": args.runs1,
                           "warmup": args.warmup, "opset": args.opset, "statistic": "median",
                           "tol": args.tol},
              "rust_template": args.rust, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "networks": {}}
    c = report["cpu"]
    print(f"CPU: {c.get('model', '?')}, {c.get('affinity')} usable cores, flags {' '.join(c.get('flags', []))}, "
          f"bf16 {'yes' if c.get('bf16') else 'no'}", flush=True)
    for name, d in nets:
        meta = load_meta(d)
        _, x = load_input(d, meta)
        entry = {"architecture": meta.get("architecture"), "input_shape": [1] + list(x.shape[1:]),
                 "load_before": os.getloadavg()[0], "runtimes": {}}
        print(f"\n{name} ({meta.get('architecture')}, input {list(x.shape[1:])})", flush=True)
        outputs = {}
        with tempfile.TemporaryDirectory(prefix="bench_peers_") as tmp:
            for rt in args.runtimes:
                res, outs = spawn(rt, d, args, tmp)
                for b, br in res.get("batches", {}).items():
                    br["median_s"] = statistics.median(br["times"])
                    br["img_per_s"] = int(b) / br["median_s"]
                entry["runtimes"][rt] = res
                outputs[rt] = outs
        # correctness: peers against TF at the same batch size; TF against the recorded output
        tf_outs = outputs.get("tf", {})
        if tf_outs:
            from safetensors.numpy import load_file
            exp = load_file(os.path.join(d, "expected.safetensors"))
            want = exp.get(meta["outputs"][0]["tensor"])
            got = tf_outs.get(f"1/{meta['outputs'][0]['name']}")
            if want is not None and got is not None:
                entry["runtimes"]["tf"]["vs_expected"] = rel_diff(got[0], want[0])
        for rt in args.runtimes:
            if rt == "tf" or not tf_outs or "error" in entry["runtimes"][rt]:
                continue
            diffs = {}
            for b in args.batches:
                tf_keys = sorted(k for k in tf_outs if k.startswith(f"{b}/"))
                peer_keys = sorted(k for k in outputs[rt] if k.startswith(f"{b}/"))
                pairs = [(k, k) for k in tf_keys if k in outputs[rt]] or list(zip(tf_keys, peer_keys))
                diffs[str(b)] = max((rel_diff(outputs[rt][p], tf_outs[t]) for t, p in pairs), default=None)
            entry["runtimes"][rt]["vs_tf"] = diffs
            entry["runtimes"][rt]["mismatch"] = any(v is None or v > args.tol for v in diffs.values())
        if args.rust:
            entry["rust"] = {str(b): run_rust(args.rust, d, b, args.rust_timeout) for b in args.batches}
        entry["load_after"] = os.getloadavg()[0]
        report["networks"][name] = entry
        print_network(entry, args)
        if args.json:
            write_json(args.json, report)

    print_summary(report, args)
    print_settings(report)
    if args.json:
        write_json(args.json, report)
        print(f"\nwrote {args.json}")


def ips(entry, rt, b):
    if rt == "rust":
        return entry.get("rust", {}).get(str(b), {}).get("img_per_s")
    return entry["runtimes"].get(rt, {}).get("batches", {}).get(str(b), {}).get("img_per_s")


def print_network(entry, args):
    head = f"  {'runtime':14}" + "".join(f"{'batch ' + str(b):>10}" for b in args.batches) + "   img/s; output vs TF"
    print(head)
    for rt in args.runtimes:
        res = entry["runtimes"][rt]
        line = f"  {RUNTIMES[rt]:14}"
        if "error" in res:
            print(line + f"  FAILED: {short_error(res['error'])}")
            continue
        line += "".join(f"{fmt(ips(entry, rt, b), 10)}" for b in args.batches)
        if rt == "tf":
            v = res.get("vs_expected")
            line += f"   (vs expected.safetensors {v:.1e})" if v is not None else ""
        elif "vs_tf" in res:
            line += "   max rel diff " + " / ".join(f"{v:.1e}" if v is not None else "?" for v in res["vs_tf"].values())
            line += "  MISMATCH" if res.get("mismatch") else ""
        print(line)
    if args.rust:
        line = f"  {'Rust (--rust)':14}"
        errs = []
        for b in args.batches:
            r = entry["rust"][str(b)]
            line += fmt(r.get("img_per_s"), 10)
            if "error" in r:
                errs.append(f"batch {b}: {r['error']}")
        ratios = []
        for rt in args.runtimes:
            parts = []
            for b in args.batches:
                a, p = ips(entry, "rust", b), ips(entry, rt, b)
                parts.append(f"{a / p:.2f}" if a and p else "-")
            ratios.append(f"{rt} {'/'.join(parts)}")
        print(line + "   Rust / " + ", ".join(ratios) + ("   " + "; ".join(errs) if errs else ""))
    print(f"  (load average {entry['load_before']:.1f} before, {entry['load_after']:.1f} after)", flush=True)


def short_error(e):
    if "Summary:" in e:  # OpenVINO's unconverted-ops report
        detail = e.split("Failed operations detailed log:")[-1].split("Summary:")[0]
        msg = [l.strip() for l in detail.splitlines() if "Internal error" in l or l.startswith("--")]
        return " ".join(e.split("Summary:")[-1].split()) + " (" + " ".join(msg)[:200] + ")"
    return " ".join(e.split())[:300]


def print_summary(report, args):
    cols = [rt for rt in args.runtimes] + (["rust"] if args.rust else [])
    label = dict(RUNTIMES, rust="Rust")
    bs = " / ".join(map(str, args.batches))
    print(f"\nimages/s at batch {bs} (median), Markdown:\n")
    hdr = "| network | " + " | ".join(f"{label[c]}" for c in cols)
    if args.rust:
        hdr += " | " + " | ".join(f"Rust / {label[c]}" for c in args.runtimes)
    print(hdr + " |")
    print("|" + "---|" * (hdr.count("|")))
    for name, e in report["networks"].items():
        cells = []
        for c in cols:
            if c != "rust" and "error" in e["runtimes"].get(c, {}):
                cells.append("failed")
                continue
            cells.append(" / ".join(fmt(ips(e, c, b), 0).strip() for b in args.batches))
        if args.rust:
            for rt in args.runtimes:
                parts = []
                for b in args.batches:
                    a, p = ips(e, "rust", b), ips(e, rt, b)
                    parts.append(f"{a / p:.2f}" if a and p else "-")
                cells.append(" / ".join(parts))
        print(f"| {name} {e['input_shape'][1:3]} | " + " | ".join(cells) + " |")


def print_settings(report):
    print("\nsettings (runtime defaults):")
    seen = set()
    for e in report["networks"].values():
        for rt, res in e["runtimes"].items():
            if rt in seen or "error" in res:
                continue
            seen.add(rt)
            extra = ""
            if rt == "ov":
                extra = f", CPU capabilities {res['optimization_capabilities']}, bf16 {'yes' if res['cpu_has_bf16'] else 'no'}"
            if rt == "ort":
                extra = f", providers {res['providers']}, opset {res['opset']}"
            print(f"  {RUNTIMES[rt]} {res.get('version')}: {res.get('threads')}{extra}")


def write_json(path, report):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1, default=str)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
