#!/usr/bin/env python3
"""Writes small seed inputs for the fuzz targets into fuzz/corpus/<target>/ (not committed).

Run from the fuzz folder: `python3 make_seeds.py`. Uses only the standard library and the
committed fixtures under ../tests/fixtures. The tensor_decode seed is a one-shard TensorBundle
(index + data, valid checksums) holding the plain, string and sliced cases the target decodes,
under names of the tf1 fixture's variables.
"""
import gzip
import json
import io
import os
import shutil
import struct
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "tests", "fixtures")
CORPUS = os.path.join(HERE, "corpus")


# --- CRC32C (Castagnoli) and tsl's mask -------------------------------------------------------
def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _T[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def mask(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


# --- protobuf ---------------------------------------------------------------------------------
def varint(v):
    out = bytearray()
    v &= (1 << 64) - 1
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def field_varint(n, v):
    return varint(n << 3) + varint(v)


def field_bytes(n, b):
    return varint((n << 3) | 2) + varint(len(b)) + b


def field_fixed32(n, v):
    return varint((n << 3) | 5) + struct.pack("<I", v)


def shape(dims):
    return b"".join(field_bytes(2, field_varint(1, d)) for d in dims)


def extent(start, length):
    e = field_varint(1, start)
    if length is not None:
        e += field_varint(2, length)
    return e


def entry(dtype, dims, offset=0, size=0, crc=None, slices=()):
    b = field_varint(1, dtype) + field_bytes(2, shape(dims))
    if size:
        b += field_varint(4, offset) + field_varint(5, size)
    if crc is not None:
        b += field_fixed32(6, mask(crc))
    for s in slices:
        b += field_bytes(7, b"".join(field_bytes(1, extent(*e)) for e in s))
    return b


# --- SSTable ----------------------------------------------------------------------------------
def block(pairs):
    out, prev = bytearray(), b""
    for k, v in pairs:
        shared = 0
        while shared < min(len(prev), len(k)) and prev[shared] == k[shared]:
            shared += 1
        out += varint(shared) + varint(len(k) - shared) + varint(len(v)) + k[shared:] + v
        prev = k
    out += struct.pack("<II", 0, 1)
    return bytes(out)


def put_block(f, contents):
    h = (len(f), len(contents))
    f += contents + b"\x00" + struct.pack("<I", mask(crc32c(contents + b"\x00")))
    return h


def handle(h):
    return varint(h[0]) + varint(h[1])


def table(pairs, per_block=2):
    f = bytearray()
    index = []
    for i in range(0, len(pairs), per_block):
        chunk = pairs[i : i + per_block]
        index.append((chunk[-1][0], handle(put_block(f, block(chunk)))))
    meta = put_block(f, block([]))
    idx = put_block(f, block(index))
    footer = handle(meta) + handle(idx)
    footer += b"\x00" * (40 - len(footer))
    f += footer + struct.pack("<Q", 0xDB4775248B80FB57)
    return bytes(f)


# --- TensorBundle -----------------------------------------------------------------------------
def slice_key(name, extents):
    """tensor_name_slice_key: OrderedCode of (0, name, num extents, start, length...)."""

    def num_inc(v):  # OrderedCode WriteNumIncreasing
        b = v.to_bytes((v.bit_length() + 7) // 8, "big") if v else b""
        return bytes([len(b)]) + b

    def signed_inc(v):  # OrderedCode WriteSignedNumIncreasing, one-byte values only
        if not -64 <= v < 64:
            raise ValueError(v)
        return bytes([0x80 ^ (v & 0xFF)])

    def string(s):
        out = bytearray()
        for b in s:
            out += {0: b"\x00\xff", 0xFF: b"\xff\x00"}.get(b, bytes([b]))
        return bytes(out) + b"\x00\x01"

    out = num_inc(0) + string(name) + num_inc(len(extents))
    for start, length in extents:
        out += signed_inc(start) + signed_inc(-1 if length is None else length)
    return out


def bundle():
    data = bytearray()
    pairs = [(b"", field_varint(1, 1))]  # BundleHeaderProto { num_shards: 1 }

    def put(key, dtype, dims, raw, crc=None):
        pairs.append((key, entry(dtype, dims, len(data), len(raw), crc32c(raw) if crc is None else crc)))
        data.extend(raw)

    put(b"dense/kernel", 1, [2, 3], struct.pack("<6f", 1, 2, 3, 4, 5, 6))
    # strings: varint lengths, masked crc of the u32 lengths, then the bytes.
    strs = [b"ab", b"", b"xyz"]
    raw, crc = bytearray(), 0
    for s in strs:
        raw += varint(len(s))
        crc = crc32c(struct.pack("<I", len(s)), crc)
    m = mask(crc)
    raw += struct.pack("<I", m)
    crc = crc32c(struct.pack("<I", m), crc)
    for s in strs:
        raw += s
        crc = crc32c(s, crc)
    put(b"strings", 7, [3], bytes(raw), crc)
    # emb [4, 2] saved as two slices along axis 0.
    ext_a, ext_b = [(0, 2), (0, 2)], [(2, 2), (0, 2)]
    pairs.append((b"emb", entry(1, [4, 2], slices=[ext_a, ext_b])))
    put(slice_key(b"emb", ext_a), 1, [2, 2], struct.pack("<4f", 1, 2, 3, 4))
    put(slice_key(b"emb", ext_b), 1, [2, 2], struct.pack("<4f", 5, 6, 7, 8))
    pairs.sort(key=lambda p: p[0])
    return table(pairs), bytes(data)


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def tar_of(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, body in files:
            info = tarfile.TarInfo(name)
            info.size = len(body)
            t.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def safetensors_of(tensors):
    """safetensors bytes of {name: (shape, float32 values)}."""
    header, data = {}, b""
    for name, (dims, values) in tensors.items():
        raw = struct.pack("<%df" % len(values), *values)
        header[name] = {"dtype": "F32", "shape": dims, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def npy_of(dims, values, descr="<f4", fmt="f"):
    shape = "(%s)" % (", ".join(map(str, dims)) + ("," if len(dims) == 1 else ""))
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + struct.pack(
        "<%d%s" % (len(values), fmt), *values)


def main():
    for d in ("tf1", "tf2"):
        sm = os.path.join(FIX, "savedmodel", d)
        write("index", d + ".index", open(os.path.join(sm, "variables", "variables.index"), "rb").read())
        write("saved_model_pb", d + ".pb", open(os.path.join(sm, "saved_model.pb"), "rb").read())
    # The graph loader: small TF2 SavedModels (signatures, __call__ traces, nested functions,
    # control flow).
    tfg = os.path.join(FIX, "tfgraph")
    for n in ("tiny_cnn_no_signature", "op_cond", "op_while_loop", "mobilenet_v2_small", "vit_tiny"):
        pb = os.path.join(tfg, n, "saved_model", "saved_model.pb")
        if os.path.exists(pb):
            write("graph_loader", n + ".pb", open(pb, "rb").read())
    index, data = bundle()
    write("index", "bundle.index", index)
    write("tensor_decode", "bundle", struct.pack("<I", len(index)) + index + data)
    tfl = os.path.join(FIX, "stylization_tflite")
    for n in sorted(os.listdir(tfl)):
        if n.endswith(".tflite"):
            for t in ("tflite", "tflite_convert"):
                write(t, n, open(os.path.join(tfl, n), "rb").read())
    model = tar_of([("saved_model.pb", b"\x08\x01fake"), ("variables/variables.index", index)])
    write("tar_extract", "model.tar", model)
    write("tar_extract", "model.tar.gz", gzip.compress(model))
    # .npy: the committed style vectors, and small arrays of each dtype the reader takes.
    sty = os.path.join(FIX, "stylization")
    for n in sorted(os.listdir(sty)):
        if n.endswith(".npy") and os.path.getsize(os.path.join(sty, n)) <= 65536:
            write("npy", n, open(os.path.join(sty, n), "rb").read())
    write("npy", "f4.npy", npy_of([2, 3], [1.0, 2.0, 3.0, 4.0, 5.0, -6.5]))
    write("npy", "f8.npy", npy_of([3], [1.5, -2.0, 0.25], "<f8", "d"))
    write("npy", "i8.npy", npy_of([1, 2], [7, -9], "<i8", "q"))
    # JPEG: the committed test files (every sampling, gray, restart markers, progressive).
    jp = os.path.join(FIX, "jpeg")
    for n in sorted(os.listdir(jp)):
        if n.endswith(".jpg") and os.path.getsize(os.path.join(jp, n)) <= 65536:
            write("jpeg", n, open(os.path.join(jp, n), "rb").read())
    # safetensors, and a whole text-embedding folder ([u32 len][config.json][u32 len]
    # [model.safetensors][tokens.txt]) as the model_folder target reads it.
    vocab, oov, dim = ["the", "cat", "sat"], 2, 4
    table = [((i * 7 + j * 3) % 11 - 5) / 10 for i in range(len(vocab) + oov) for j in range(dim)]
    st = safetensors_of({"embeddings": ([len(vocab) + oov, dim], table)})
    write("safetensors", "embeddings.safetensors", st)
    write("safetensors", "two.safetensors", safetensors_of({"a": ([2], [1.0, 2.0]), "b/c": ([1, 1, 1], [3.0])}))
    config = json.dumps({
        "kind": "text_embedding",
        "config": {"vocab_size": len(vocab), "oov_buckets": oov, "dim": dim, "split": "keep_empty",
                   "remove_punctuation": True, "vocab_file": "tokens.txt"},
        "source": "fuzz seed", "converter_version": 1,
    }).encode()
    tokens = "\n".join(vocab).encode() + b"\n"
    write("model_folder", "text_embedding",
          struct.pack("<I", len(config)) + config + struct.pack("<I", len(st)) + st + tokens)
    text_ops_seeds(tokens)


def text_ops_seeds(tokens):
    """text_ops: `[selector][body]`, the body laid out as fuzz_targets/text_ops.rs reads it."""
    lp = lambda b: struct.pack("<I", len(b)) + b  # noqa: E731

    def table(key, value, flags, delim, vocab_size, offset, file):
        return bytes([0, key & 0xFF, value & 0xFF, flags, delim, vocab_size]) + struct.pack("<q", offset) + file

    write("text_ops", "vocab", table(0, 0, 32, 9, 0, 0, tokens))
    write("text_ops", "vocab_size", table(0, 0, 32 | 4, 9, 2, 5, b"the\r\ncat\nsat"))
    write("text_ops", "columns", table(1, 0, 2, 9, 0, 0, b"7\tcat\n9\tdog\n"))
    write("text_ops", "line_number_key", table(-1, -2, 1, 9, 0, -3, b"a,b\nc,d\n"))

    def regex(flags, pattern, rewrite, text):
        return bytes([1, flags]) + lp(pattern) + lp(rewrite) + text

    write("text_ops", "regex_punct_digits", regex(1, b"\\pP|[0-9]", b"", "«café» 3, naïve· 42!".encode()))
    write("text_ops", "regex_punct", regex(1, b"\\pP", b"", b"Hello, world. \xe2\x80(cat)"))
    write("text_ops", "regex_group", regex(0, b"(b)|[\\p{P}x]", b"[\\1]", b"baab,x"))

    def split(flags, maxsplit, sep, text):
        return bytes([2, flags]) + struct.pack("<q", maxsplit) + lp(sep) + text

    write("text_ops", "split_whitespace", split(2, -1, b"", b"  a  b \tc\n"))
    write("text_ops", "split_sep", split(1, 1, b",", b"a,,b,c"))
    write("text_ops", "split_multi", split(0, 3, b", ", b"x, y,z, , w"))

    def segments(flags, cols, num, data, indices, segs):
        return bytes([3, flags, cols]) + struct.pack("<Q", num) + lp(bytes(data)) + lp(bytes(indices)) + bytes(segs)

    # 3 rows of 2 columns; segment 0 = rows 0, 1, segment 2 = row 2 (SqrtN, then Mean).
    write("text_ops", "segment_sqrtn", segments(4, 2, 0, [1, 2, 3, 4, 5, 6], [0, 1, 2], [0, 0, 2]))
    write("text_ops", "segment_mean_num", segments(2 | 8, 2, 4, [1, 2, 3, 4, 5, 6], [0, 1], [0, 0]))
    # f64, 13 rows into one segment (the kernel's head and block of 8), ids as deltas.
    write("text_ops", "segment_f64_long", segments(1 | 32, 1, 0, list(range(13)), list(range(13)), [0] * 13))
    # An out-of-range index as a full i64.
    write("text_ops", "segment_bad_index", segments(0, 1, 0, [1, 2], [0, 0x80] + list(struct.pack("<q", 1 << 40)), [0, 0]))

    write("text_ops", "punct_hash", bytes([4]) + struct.pack("<Q", 1000) + "¿cat”… é € $+<".encode())
    write("text_ops", "hash_long", bytes([4]) + struct.pack("<Q", 7) + bytes(range(200)))


if __name__ == "__main__":
    main()
