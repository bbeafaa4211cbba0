#!/usr/bin/env python3
"""Build crates/catalog/data/catalog.json from the model docs of tensorflow/tfhub.dev.

Usage:
    python3 tools/make_catalog.py SOURCE [--out crates/catalog/data/catalog.json]

SOURCE is either a checkout of https://github.com/tensorflow/tfhub.dev (a folder with
`assets/docs/`) or a bare git directory of it (read with `git ls-tree` / `git show` at HEAD).
Plain Python 3, no dependencies (git on PATH for a bare git directory).

What is read: every `assets/docs/**.md` whose first line is a model heading,
`# Module PUBLISHER/NAME/VERSION` (TF2 or TF1 SavedModel / TF1 hub module, per its `format` tag),
`# Lite ...`, `# Tfjs ...` or `# Coral ...`. Publisher pages, collections and placeholders are
skipped (placeholders only lend their metadata to the deployment formats that name them as
`parent-model`).

One entry per doc, and tfhub.dev has one doc per published version
(`.../classification/5.md` is version 5), so there is one entry per published version and per
deployment format. The handle is the path of the model's tfhub.dev URL:
`google/imagenet/mobilenet_v2_100_224/classification/5` for a Module,
`PUBLISHER/lite-model/NAME/VERSION`, `PUBLISHER/tfjs-model/...`, `PUBLISHER/coral-model/...` for
the deployment formats (tfhub.dev's own URL scheme, see its tools/validator.py).

Fields per model: handle, url, kaggle_url (only where the doc names a
https://www.kaggle.com/models/... URL), publisher, format (`saved_model_2` = TF2 SavedModel,
`hub` = TF1 hub module, `saved_model` = TF1 SavedModel, `lite`, `tfjs`, `coral`), task,
architecture, dataset, language (lists: tfhub.dev allows several values of these four tags),
fine_tunable (true/false, absent when the doc does not say), license (absent when the doc does
not say), asset (the download URL when `asset-path` is a URL), parent (the `parent-model` of a
deployment format), title (the one-line summary under the heading), description (the first
sentence of the Overview), inherited (the tags copied from another doc, see below).

Inheritance, always recorded in `inherited`: a deployment format (Lite/Tfjs/Coral) takes
task/architecture/dataset/language/license from its parent model (or placeholder); a Module that
lacks one of task/architecture/dataset/language takes it from the newest other version of the same
model that has it (older version docs often carry fewer tags).
"""

import argparse
import json
import os
import re
import subprocess
import sys

KINDS = {"Module": None, "Lite": "lite", "Tfjs": "tfjs", "Coral": "coral"}
HEADING = re.compile(
    r"^# (?P<kind>Module|Lite|Tfjs|Coral|Placeholder) "
    r"(?P<publisher>[a-z\d-]+)/(?P<name>[\w.-]+(?:/[\w.-]+)*)/(?P<vers>\d+)\s*$"
)
META = re.compile(r"^<!--(?P<key>[\w\s-]+):(?P<value>.+)-->\s*$")
REPEATED = ("task", "network-architecture", "dataset", "language")
INHERITABLE = ("task", "architecture", "dataset", "language")
KAGGLE = re.compile(r"https://www\.kaggle\.com/models/[\w.-]+/[\w.-]+/[\w.-]+/[\w.-]+/\d+")


def read_docs(source):
    """Yields (path, text) of every assets/docs/**.md, plus (commit, date) or None."""
    if os.path.isdir(os.path.join(source, "assets", "docs")):
        docs = []
        for root, _, files in os.walk(os.path.join(source, "assets", "docs")):
            for f in sorted(files):
                if f.endswith(".md"):
                    p = os.path.join(root, f)
                    with open(p, encoding="utf-8", errors="replace") as fh:
                        docs.append((os.path.relpath(p, source), fh.read()))
        commit = date = None
        try:
            commit, date = git(source, None, "log", "-1", "--format=%H %cI").split()
        except (OSError, subprocess.CalledProcessError, ValueError):
            pass
        return docs, commit, date
    commit, date = git(None, source, "log", "-1", "--format=%H %cI").split()
    names = git(None, source, "ls-tree", "-r", "--name-only", commit, "assets/docs").splitlines()
    names = [n for n in names if n.endswith(".md")]
    # One `git cat-file --batch` for all blobs.
    proc = subprocess.run(
        ["git", "--git-dir", source, "cat-file", "--batch"],
        input="".join(f"{commit}:{n}\n" for n in names).encode(),
        capture_output=True,
        check=True,
    )
    out, pos, docs = proc.stdout, 0, []
    for n in names:
        header_end = out.index(b"\n", pos)
        size = int(out[pos:header_end].split()[2])
        body = out[header_end + 1 : header_end + 1 + size]
        pos = header_end + 1 + size + 1
        docs.append((n, body.decode("utf-8", errors="replace")))
    return docs, commit, date


def git(work_tree, git_dir, *args):
    cmd = ["git"] + (["--git-dir", git_dir] if git_dir else ["-C", work_tree]) + list(args)
    return subprocess.run(cmd, capture_output=True, check=True, text=True).stdout.strip()


def first_sentence(text):
    text = " ".join(text.split())
    m = re.search(r"(?<!\b[A-Z])(?<!\be\.g)(?<!\bi\.e)(?<!\bet al)(?<!\bvs)(?<!a\.k\.a)[.!?](?=\s|$)", text)
    s = text[: m.end()] if m else text
    return s if len(s) <= 300 else s[:297].rstrip() + "..."


def plain(text):
    """Markdown links/emphasis/code reduced to their text."""
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\[(\d+)\]", "", text)
    return text.replace("`", "").replace("**", "").replace("__", "").strip()


def parse(path, text):
    lines = text.splitlines()
    if not lines:
        return None
    m = HEADING.match(lines[0].replace("&zwnj;", "").replace("\u200c", "").strip())
    if not m:
        return None
    meta = {}
    summary, overview = [], []
    section = None  # None until the first metadata line / heading
    in_code = False
    for line in lines[1:]:
        s = line.strip()
        if s.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        mm = META.match(s)
        if mm:
            key, value = mm.group("key").strip(), mm.group("value").strip()
            meta.setdefault(key, []).append(value)
            section = section or "meta"
            continue
        if s.startswith("#"):
            title = s.lstrip("#").strip().lower()
            section = "overview" if title in ("overview", "model description", "description") else "other"
            continue
        if section is None:
            if s:
                summary.append(s)
            elif summary:
                section = "meta"
        elif section == "overview" and s and not s.startswith(("<", "!", "|", "[![")):
            if sum(len(x) for x in overview) < 1500:
                overview.append(s.lstrip("*-+ ") if s[:2] in ("* ", "- ", "+ ") else s)
    kind = m.group("kind")
    publisher = m.group("publisher")
    name = m.group("name")
    vers = m.group("vers")
    if kind in ("Lite", "Tfjs", "Coral"):
        handle = f"{publisher}/{KINDS[kind]}-model/{name}/{vers}"
    else:
        handle = f"{publisher}/{name}/{vers}"
    entry = {
        "handle": handle,
        "url": f"https://tfhub.dev/{handle}",
        "publisher": publisher,
        "kind": kind,
        "doc": path,
    }
    kaggle = KAGGLE.search(text)
    if kaggle:
        entry["kaggle_url"] = kaggle.group(0)
    if kind == "Module":
        entry["format"] = (meta.get("format") or ["unknown"])[0].strip()
    elif kind != "Placeholder":
        entry["format"] = KINDS[kind]
    for key in REPEATED:
        vals = [v.strip().lower() for v in meta.get(key, []) if v.strip()]
        if vals:
            entry["architecture" if key == "network-architecture" else key] = vals
    if "fine-tunable" in meta:
        entry["fine_tunable"] = meta["fine-tunable"][0].strip().lower() == "true"
    if "license" in meta:
        entry["license"] = meta["license"][0].strip().lower()
    asset = (meta.get("asset-path") or [""])[0].strip()
    if asset.startswith(("http://", "https://")):
        entry["asset"] = asset
    if "parent-model" in meta:
        entry["parent"] = meta["parent-model"][0].strip()
    entry["title"] = first_sentence(plain(" ".join(summary)))
    entry["description"] = first_sentence(plain(" ".join(overview)))
    return entry


def model_key(handle):
    """`google/imagenet/x/classification/5` -> `google/imagenet/x/classification`."""
    return handle.rsplit("/", 1)[0]


def build(source):
    docs, commit, date = read_docs(source)
    parsed = [e for e in (parse(p, t) for p, t in docs) if e]
    by_handle = {}
    for e in parsed:
        if e["kind"] in ("Module", "Placeholder"):
            by_handle.setdefault(e["handle"], e)
    # Modules: fill missing tags from the newest other version of the same model.
    versions = {}
    for e in parsed:
        if e["kind"] == "Module":
            versions.setdefault(model_key(e["handle"]), []).append(e)
    for group in versions.values():
        group.sort(key=lambda e: -int(e["handle"].rsplit("/", 1)[1]))
        for e in group:
            for tag in INHERITABLE:
                if tag in e:
                    continue
                donor = next((o for o in group if o is not e and tag in o and not tag in o.get("inherited", [])), None)
                if donor:
                    e[tag] = donor[tag]
                    e.setdefault("inherited", []).append(tag)
    # Deployment formats: tags from the parent model or placeholder.
    for e in parsed:
        if e["kind"] in ("Lite", "Tfjs", "Coral") and e.get("parent") in by_handle:
            p = by_handle[e["parent"]]
            for tag in INHERITABLE + ("license",):
                if tag not in e and tag in p:
                    e[tag] = p[tag]
                    e.setdefault("inherited", []).append(tag)
    order = ["handle", "url", "kaggle_url", "publisher", "format", "task", "architecture",
             "dataset", "language", "fine_tunable", "license", "asset", "parent", "title",
             "description", "inherited"]
    models = []
    for e in parsed:
        if e["kind"] == "Placeholder":
            continue
        models.append({k: e[k] for k in order if k in e and e[k] not in ("", None, [])})
    models.sort(key=lambda m: m["handle"])
    seen = set()
    for m in models:
        if m["handle"] in seen:
            sys.exit(f"duplicate handle {m['handle']}")
        seen.add(m["handle"])
    return {"source": "tensorflow/tfhub.dev", "commit": commit, "date": date, "models": models}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="tfhub.dev checkout or bare git directory")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "crates", "catalog", "data", "catalog.json"))
    args = ap.parse_args()
    cat = build(args.source)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("{")
        for k in ("source", "commit", "date"):
            f.write(f"{json.dumps(k)}: {json.dumps(cat[k])}, ")
        f.write('"models": [\n')
        f.write(",\n".join(json.dumps(m, ensure_ascii=False, separators=(",", ":")) for m in cat["models"]))
        f.write("\n]}\n")
    formats = {}
    for m in cat["models"]:
        formats[m["format"]] = formats.get(m["format"], 0) + 1
    print(f"{len(cat['models'])} models from {cat['source']} {cat['commit']} ({cat['date']}): "
          + ", ".join(f"{k} {v}" for k, v in sorted(formats.items())) + f" -> {args.out}")


if __name__ == "__main__":
    main()
