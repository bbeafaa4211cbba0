//! TensorBundle reading: `variables.index` entries and the memory-mapped data shards
//! (tensorflow/core/util/tensor_bundle/tensor_bundle.cc).

use crate::ordered_code::tensor_name_slice_key;
use crate::proto::{BundleEntryProto, BundleHeaderProto, TensorShapeProto};
use crate::sstable::{self, unmask_crc};
use crate::tensor::{decode_fixed, DType, Tensor, TensorData};
use crate::Error;
use prost::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

enum ShardBytes {
    Mapped(memmap2::Mmap),
    Empty,
}

struct Shard {
    path: PathBuf,
    bytes: ShardBytes,
}

impl Shard {
    fn bytes(&self) -> &[u8] {
        match &self.bytes {
            ShardBytes::Mapped(m) => m,
            ShardBytes::Empty => &[],
        }
    }
}

/// An opened bundle: parsed index plus mapped data shards.
pub(crate) struct Bundle {
    pub(crate) index_path: PathBuf,
    shards: Vec<Shard>,
    /// Entries by key, with their order in the index.
    pub(crate) entries: BTreeMap<Vec<u8>, BundleEntryProto>,
}

/// Parses the entries of a `variables.index` file's bytes: header check, then every
/// `BundleEntryProto`. Returns `(num_shards, entries)`. Public through [`crate::parse_index`].
pub(crate) fn parse_index_bytes(
    bytes: &[u8],
    path: &Path,
) -> Result<(usize, BTreeMap<Vec<u8>, BundleEntryProto>), Error> {
    let corrupt = |msg: String| Error::CorruptIndex {
        path: path.to_path_buf(),
        msg,
    };
    let table = sstable::read_table(bytes).map_err(corrupt)?;
    let mut it = table.into_iter();
    let (k, v) = it
        .next()
        .ok_or_else(|| corrupt("the index has no entries (no bundle header)".into()))?;
    if !k.is_empty() {
        return Err(corrupt(
            "the first entry is not the bundle header (key \"\")".into(),
        ));
    }
    let header = BundleHeaderProto::decode(v.as_slice())
        .map_err(|e| corrupt(format!("cannot parse the bundle header: {e}")))?;
    if header.endianness != 0 {
        return Err(corrupt("big-endian bundles are not supported".into()));
    }
    if header.num_shards < 0 || header.num_shards > 1_000_000 {
        return Err(corrupt(format!(
            "implausible shard count {}",
            header.num_shards
        )));
    }
    let num_shards = header.num_shards as usize;
    let mut entries = BTreeMap::new();
    for (k, v) in it {
        let e = BundleEntryProto::decode(v.as_slice()).map_err(|e| {
            corrupt(format!(
                "cannot parse the entry for `{}`: {e}",
                String::from_utf8_lossy(&k)
            ))
        })?;
        if e.slices.is_empty() && (e.shard_id < 0 || e.shard_id as usize >= num_shards.max(1)) {
            return Err(corrupt(format!(
                "entry `{}` is in shard {} but the bundle has {num_shards} shards",
                String::from_utf8_lossy(&k),
                e.shard_id
            )));
        }
        let key_text = String::from_utf8_lossy(&k).into_owned();
        if entries.insert(k, e).is_some() {
            return Err(corrupt(format!("duplicate entry `{key_text}`")));
        }
    }
    Ok((num_shards, entries))
}

/// Name of data shard `i` of `n` next to `prefix` (`DataFilename` in tensor_bundle.cc).
pub(crate) fn data_filename(prefix: &Path, i: usize, n: usize) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(format!(".data-{i:05}-of-{n:05}"));
    PathBuf::from(s)
}

/// Shape from a `TensorShapeProto`; unknown rank or negative dims are errors (as `String`).
pub(crate) fn concrete_shape(shape: Option<&TensorShapeProto>) -> Result<Vec<usize>, String> {
    let Some(s) = shape else { return Ok(vec![]) };
    if s.unknown_rank {
        return Err("shape has unknown rank".into());
    }
    s.dim
        .iter()
        .map(|d| {
            usize::try_from(d.size)
                .map_err(|_| format!("shape has a negative dimension {}", d.size))
        })
        .collect()
}

fn num_elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

impl Bundle {
    /// Opens `<prefix>.index` and maps every `<prefix>.data-*-of-*` shard.
    pub(crate) fn open(prefix: &Path) -> Result<Bundle, Error> {
        let mut index_path = prefix.as_os_str().to_owned();
        index_path.push(".index");
        let index_path = PathBuf::from(index_path);
        let bytes = std::fs::read(&index_path).map_err(|e| Error::Io {
            path: index_path.clone(),
            source: e,
        })?;
        let (num_shards, entries) = parse_index_bytes(&bytes, &index_path)?;
        let mut shards = Vec::with_capacity(num_shards);
        for i in 0..num_shards {
            let path = data_filename(prefix, i, num_shards);
            let file = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::MissingShard {
                        path,
                        index: index_path,
                        shard: i,
                        num_shards,
                    })
                }
                Err(e) => return Err(Error::Io { path, source: e }),
            };
            let len = file
                .metadata()
                .map_err(|e| Error::Io {
                    path: path.clone(),
                    source: e,
                })?
                .len();
            let bytes = if len == 0 {
                ShardBytes::Empty
            } else {
                // SAFETY: the file is only read; a concurrent truncation by another process would be
                // undefined behaviour, as with every memory-mapped reader (TensorFlow maps them too).
                let m = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::Io {
                    path: path.clone(),
                    source: e,
                })?;
                ShardBytes::Mapped(m)
            };
            shards.push(Shard { path, bytes });
        }
        Ok(Bundle {
            index_path,
            shards,
            entries,
        })
    }

    fn tensor_err(&self, name: &str, msg: impl Into<String>) -> Error {
        Error::CorruptTensor {
            path: self.index_path.clone(),
            tensor: name.to_string(),
            msg: msg.into(),
        }
    }

    /// Dtype and shape of the entry under `key`.
    pub(crate) fn dtype_shape(&self, key: &[u8], name: &str) -> Result<(DType, Vec<usize>), Error> {
        let e = self
            .entries
            .get(key)
            .ok_or_else(|| self.tensor_err(name, "no entry in the index"))?;
        let shape = concrete_shape(e.shape.as_ref()).map_err(|m| self.tensor_err(name, m))?;
        Ok((DType::from_proto(e.dtype), shape))
    }

    /// The checked bytes of a non-sliced entry.
    fn raw(&self, e: &BundleEntryProto, name: &str) -> Result<(&[u8], &Path), Error> {
        let shard = usize::try_from(e.shard_id)
            .ok()
            .and_then(|i| self.shards.get(i))
            .ok_or_else(|| self.tensor_err(name, format!("shard {} does not exist", e.shard_id)))?;
        let data = shard.bytes();
        let (off, size) = match (usize::try_from(e.offset), usize::try_from(e.size)) {
            (Ok(o), Ok(s)) => (o, s),
            _ => {
                return Err(self.tensor_err(
                    name,
                    format!("negative offset {} or size {}", e.offset, e.size),
                ))
            }
        };
        let end = off
            .checked_add(size)
            .filter(|&end| end <= data.len())
            .ok_or_else(|| Error::CorruptTensor {
                path: shard.path.clone(),
                tensor: name.to_string(),
                msg: format!(
                    "bytes {off}..{off}+{size} run past the end of the file ({} bytes)",
                    data.len()
                ),
            })?;
        Ok((&data[off..end], &shard.path))
    }

    /// Reads and checks the tensor stored under `key`; `name` is used in errors.
    pub(crate) fn read(&self, key: &[u8], name: &str) -> Result<Tensor, Error> {
        let e = self
            .entries
            .get(key)
            .ok_or_else(|| self.tensor_err(name, "no entry in the index"))?;
        let dtype = DType::from_proto(e.dtype);
        let shape = concrete_shape(e.shape.as_ref()).map_err(|m| self.tensor_err(name, m))?;
        let n =
            num_elements(&shape).ok_or_else(|| self.tensor_err(name, "element count overflows"))?;
        if dtype != DType::String && dtype.element_size().is_none() {
            return Err(Error::UnsupportedDType {
                path: self.index_path.clone(),
                tensor: name.to_string(),
                dtype,
            });
        }
        if !e.slices.is_empty() {
            return self.read_sliced(key, e, dtype, shape, n, name);
        }
        let data = self.read_unsliced(e, dtype, n, name)?;
        Ok(Tensor { dtype, shape, data })
    }

    fn read_unsliced(
        &self,
        e: &BundleEntryProto,
        dtype: DType,
        n: usize,
        name: &str,
    ) -> Result<TensorData, Error> {
        if dtype == DType::String {
            let (bytes, path) = self.raw(e, name)?;
            return read_string_region(bytes, n, e.crc32c, name, path);
        }
        let bytes = self.checked_fixed(e, dtype, n, name)?;
        decode_fixed(dtype, bytes).ok_or_else(|| self.tensor_err(name, "cannot decode"))
    }

    /// The CRC-checked bytes of a non-sliced fixed-size-dtype entry of `n` elements.
    fn checked_fixed(
        &self,
        e: &BundleEntryProto,
        dtype: DType,
        n: usize,
        name: &str,
    ) -> Result<&[u8], Error> {
        let (bytes, path) = self.raw(e, name)?;
        let es = dtype.element_size().unwrap_or(1);
        let expected = n
            .checked_mul(es)
            .ok_or_else(|| self.tensor_err(name, "byte size overflows"))?;
        if bytes.len() != expected {
            return Err(Error::CorruptTensor {
                path: path.to_path_buf(),
                tensor: name.to_string(),
                msg: format!(
                    "{} bytes stored but {n} {} elements need {expected}",
                    bytes.len(),
                    dtype.name()
                ),
            });
        }
        let actual = crc32c::crc32c(bytes);
        if actual != unmask_crc(e.crc32c) {
            return Err(Error::Crc {
                path: path.to_path_buf(),
                tensor: name.to_string(),
                stored: unmask_crc(e.crc32c),
                computed: actual,
            });
        }
        Ok(bytes)
    }

    /// Writes a copy of this bundle at `dst_prefix` (`<prefix>.index` and one data shard),
    /// with the bytes of the entries in `updates` (checkpoint key -> little-endian bytes of
    /// the same size and dtype) replaced and their checksums recomputed. Every other entry
    /// (strings, the object graph, slices) is copied byte for byte, after its bytes were
    /// checked against the shard. Each file is written to a temporary name and renamed.
    pub(crate) fn write_updated(
        &self,
        dst_prefix: &Path,
        updates: &BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<(), Error> {
        for key in updates.keys() {
            let name = String::from_utf8_lossy(key);
            let e = self
                .entries
                .get(key)
                .ok_or_else(|| self.tensor_err(&name, "no entry in the index"))?;
            if !e.slices.is_empty() {
                return Err(self.tensor_err(&name, "a partitioned variable cannot be rewritten"));
            }
        }
        let mut data = Vec::new();
        let mut pairs = Vec::with_capacity(self.entries.len() + 1);
        // BundleHeaderProto { num_shards: 1, endianness: LITTLE, version { producer: 1 } }.
        pairs.push((Vec::new(), vec![0x08, 0x01, 0x1a, 0x02, 0x08, 0x01]));
        for (key, e) in &self.entries {
            let name = String::from_utf8_lossy(key);
            let mut out = e.clone();
            out.shard_id = 0;
            if e.slices.is_empty() {
                let (old, _) = self.raw(e, &name)?;
                let bytes = match updates.get(key) {
                    Some(new) => {
                        if new.len() != old.len() {
                            return Err(self.tensor_err(
                                &name,
                                format!(
                                    "{} new bytes for a tensor stored in {}",
                                    new.len(),
                                    old.len()
                                ),
                            ));
                        }
                        out.crc32c = crate::sstable::mask_crc(crc32c::crc32c(new));
                        new.as_slice()
                    }
                    None => old,
                };
                out.offset = data.len() as i64;
                out.size = bytes.len() as i64;
                data.extend_from_slice(bytes);
            } else {
                out.offset = 0;
                out.size = 0;
            }
            pairs.push((key.clone(), out.encode_to_vec()));
        }
        let index = sstable::build::table_from_pairs(&pairs, 64);
        write_via_temp(&data_filename(dst_prefix, 0, 1), &data)?;
        let mut index_path = dst_prefix.as_os_str().to_owned();
        index_path.push(".index");
        write_via_temp(Path::new(&index_path), &index)
    }

    /// Total bytes of all data shards: no assembled tensor can hold more (slices are disjoint).
    fn total_shard_bytes(&self) -> u64 {
        self.shards
            .iter()
            .fold(0u64, |a, s| a.saturating_add(s.bytes().len() as u64))
    }

    fn read_sliced(
        &self,
        key: &[u8],
        e: &BundleEntryProto,
        dtype: DType,
        shape: Vec<usize>,
        n: usize,
        name: &str,
    ) -> Result<Tensor, Error> {
        let rank = shape.len();
        if e.slices.len() > MAX_SLICES {
            return Err(self.tensor_err(
                name,
                format!(
                    "{} slices (at most {MAX_SLICES} are supported)",
                    e.slices.len()
                ),
            ));
        }
        let es = dtype.element_size();
        // What the assembled tensor would take, checked against the bytes that exist before
        // anything is allocated: every element of a fixed-size dtype comes from the shards, and
        // every string takes at least one length byte there.
        let need = n
            .checked_mul(es.unwrap_or(1))
            .ok_or_else(|| self.tensor_err(name, "byte size overflows"))?;
        let have = self.total_shard_bytes();
        if need as u64 > have {
            return Err(self.tensor_err(
                name,
                format!(
                    "shape {shape:?} needs {need} bytes but the data files hold only {have} bytes"
                ),
            ));
        }
        // Pass 1: every slice's extent, entry and stored size, without decoding anything.
        struct Part<'a> {
            starts: Vec<usize>,
            lens: Vec<usize>,
            n: usize,
            entry: &'a BundleEntryProto,
        }
        let mut parts: Vec<Part> = Vec::with_capacity(e.slices.len());
        let mut covered = 0usize;
        for (si, slice) in e.slices.iter().enumerate() {
            if slice.extent.len() != rank {
                return Err(self.tensor_err(
                    name,
                    format!(
                        "slice {si} has {} extents for rank {rank}",
                        slice.extent.len()
                    ),
                ));
            }
            let mut starts = Vec::with_capacity(rank);
            let mut lens = Vec::with_capacity(rank);
            let mut enc = Vec::with_capacity(rank);
            for (d, x) in slice.extent.iter().enumerate() {
                let dim = i64::try_from(shape[d])
                    .map_err(|_| self.tensor_err(name, "dimension too large"))?;
                let (start, len) = match x.length {
                    Some(l) => (x.start, l),
                    None => (0, dim),
                };
                let ok =
                    start >= 0 && len >= 0 && start.checked_add(len).is_some_and(|end| end <= dim);
                if !ok {
                    return Err(self.tensor_err(
                        name,
                        format!(
                            "slice {si} extent {start}+{len} outside dimension {d} of size {dim}"
                        ),
                    ));
                }
                starts.push(start as usize);
                lens.push(len as usize);
                enc.push(match x.length {
                    Some(l) => (x.start, l),
                    None => (0, -1),
                });
            }
            let skey = tensor_name_slice_key(key, &enc);
            let part = self.entries.get(&skey).ok_or_else(|| {
                self.tensor_err(
                    name,
                    format!("the data of slice {si} ({starts:?}+{lens:?}) is missing"),
                )
            })?;
            if !part.slices.is_empty() || part.dtype != e.dtype {
                return Err(self.tensor_err(name, format!("slice {si} entry is inconsistent")));
            }
            let pshape =
                concrete_shape(part.shape.as_ref()).map_err(|m| self.tensor_err(name, m))?;
            if pshape != lens {
                return Err(self.tensor_err(
                    name,
                    format!("slice {si} has shape {pshape:?}, expected {lens:?}"),
                ));
            }
            // Slices lie inside the tensor, so their element counts are at most n.
            let pn = num_elements(&lens)
                .ok_or_else(|| self.tensor_err(name, "element count overflows"))?;
            let (bytes, path) = self.raw(part, name)?;
            let size_ok = match es {
                Some(es) => pn.checked_mul(es) == Some(bytes.len()),
                None => pn <= bytes.len(),
            };
            if !size_ok {
                return Err(Error::CorruptTensor {
                    path: path.to_path_buf(),
                    tensor: name.to_string(),
                    msg: format!(
                        "slice {si}: {} bytes stored for {pn} {} elements",
                        bytes.len(),
                        dtype.name()
                    ),
                });
            }
            covered = covered.checked_add(pn).filter(|&c| c <= n).ok_or_else(|| {
                self.tensor_err(name, format!("slices hold more than the {n} elements"))
            })?;
            parts.push(Part {
                starts,
                lens,
                n: pn,
                entry: part,
            });
        }
        if covered != n {
            return Err(self.tensor_err(name, format!("slices cover {covered} of {n} elements")));
        }
        // Disjoint slices whose sizes add up to the tensor's cover it exactly.
        let boxes: Vec<(&[usize], &[usize])> = parts
            .iter()
            .filter(|p| p.n > 0)
            .map(|p| (p.starts.as_slice(), p.lens.as_slice()))
            .collect();
        if let Some((i, j)) = first_overlap(&boxes) {
            return Err(self.tensor_err(
                name,
                format!(
                    "slices overlap ({:?}+{:?} and {:?}+{:?}): duplicate or inconsistent slices",
                    boxes[i].0, boxes[i].1, boxes[j].0, boxes[j].1
                ),
            ));
        }
        // Pass 2: now the sizes are known to be backed by data, allocate and place.
        let mut strides = vec![1usize; rank];
        if n > 0 {
            for d in (0..rank.saturating_sub(1)).rev() {
                // A suffix product of a non-empty tensor's shape is at most n.
                strides[d] = strides[d + 1] * shape[d + 1];
            }
        }
        let data = match es {
            Some(es) => {
                let mut full_bytes = vec![0u8; need];
                for p in &parts {
                    let bytes = self.checked_fixed(p.entry, dtype, p.n, name)?;
                    place(
                        &mut full_bytes,
                        &shape,
                        &strides,
                        &p.starts,
                        &p.lens,
                        bytes,
                        es,
                    );
                }
                decode_fixed(dtype, &full_bytes)
                    .ok_or_else(|| self.tensor_err(name, "cannot decode"))?
            }
            None => {
                let mut full_strings = vec![Vec::new(); n];
                for p in &parts {
                    match self.read_unsliced(p.entry, dtype, p.n, name)? {
                        TensorData::String(s) => place(
                            &mut full_strings,
                            &shape,
                            &strides,
                            &p.starts,
                            &p.lens,
                            &s,
                            1,
                        ),
                        _ => return Err(self.tensor_err(name, "slice dtype mismatch")),
                    }
                }
                TensorData::String(full_strings)
            }
        };
        Ok(Tensor { dtype, shape, data })
    }
}

/// Most slices a partitioned variable may have (TensorFlow's partitioners make at most a few
/// thousand); bounds the overlap check.
const MAX_SLICES: usize = 1 << 14;

/// The first pair of boxes `(starts, lens)` (all non-empty, same rank) that intersect, if any.
/// Sweeps along the dimension with the most distinct starts, so that the usual partitioning
/// along one axis costs O(k log k).
fn first_overlap(boxes: &[(&[usize], &[usize])]) -> Option<(usize, usize)> {
    let rank = boxes.first()?.0.len();
    if rank == 0 {
        return (boxes.len() > 1).then_some((0, 1));
    }
    let axis = (0..rank)
        .max_by_key(|&d| {
            let mut s: Vec<usize> = boxes.iter().map(|b| b.0[d]).collect();
            s.sort_unstable();
            s.dedup();
            s.len()
        })
        .unwrap_or(0);
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by_key(|&i| boxes[i].0[axis]);
    let intersect = |a: usize, b: usize| {
        (0..rank).all(|d| {
            let (s1, l1) = (boxes[a].0[d], boxes[a].1[d]);
            let (s2, l2) = (boxes[b].0[d], boxes[b].1[d]);
            s1 < s2 + l2 && s2 < s1 + l1
        })
    };
    for (oi, &i) in order.iter().enumerate() {
        let end = boxes[i].0[axis] + boxes[i].1[axis];
        for &j in &order[oi + 1..] {
            if boxes[j].0[axis] >= end {
                break;
            }
            if intersect(i, j) {
                return Some((i.min(j), i.max(j)));
            }
        }
    }
    None
}

/// Copies `part` (row-major over `lens`, `unit` items per element) into `full` at `starts`.
fn place<T: Clone>(
    full: &mut [T],
    shape: &[usize],
    strides: &[usize],
    starts: &[usize],
    lens: &[usize],
    part: &[T],
    unit: usize,
) {
    let rank = shape.len();
    if rank == 0 {
        full.clone_from_slice(&part[..full.len()]);
        return;
    }
    let row = lens[rank - 1] * unit;
    if row == 0 {
        return;
    }
    let rows = part.len() / row;
    let mut idx = vec![0usize; rank - 1];
    for r in 0..rows {
        let mut off = starts[rank - 1];
        for d in 0..rank - 1 {
            off += (starts[d] + idx[d]) * strides[d];
        }
        let off = off * unit;
        full[off..off + row].clone_from_slice(&part[r * row..(r + 1) * row]);
        for d in (0..rank - 1).rev() {
            idx[d] += 1;
            if idx[d] < lens[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// Decodes a DT_STRING region (`WriteStringTensor`): varint64 lengths, masked CRC of the
/// lengths, then the bytes; checks both the lengths CRC and the entry's CRC.
fn read_string_region(
    bytes: &[u8],
    n: usize,
    entry_crc: u32,
    name: &str,
    path: &Path,
) -> Result<TensorData, Error> {
    let bad = |msg: String| Error::CorruptTensor {
        path: path.to_path_buf(),
        tensor: name.to_string(),
        msg,
    };
    if n > bytes.len() {
        return Err(bad(format!(
            "{n} strings cannot fit in {} bytes",
            bytes.len()
        )));
    }
    let mut pos = 0;
    let mut lens = Vec::with_capacity(n);
    let mut crc = 0u32;
    for _ in 0..n {
        let l = sstable::read_varint64(bytes, &mut pos)
            .map_err(|e| bad(format!("string length: {e}")))?;
        crc = match u32::try_from(l) {
            Ok(l32) => crc32c::crc32c_append(crc, &l32.to_le_bytes()),
            Err(_) => crc32c::crc32c_append(crc, &l.to_le_bytes()),
        };
        lens.push(l);
    }
    let stored_len_crc = bytes
        .get(pos..pos + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| bad("the string lengths' checksum is missing".into()))?;
    if unmask_crc(stored_len_crc) != crc {
        return Err(Error::Crc {
            path: path.to_path_buf(),
            tensor: name.to_string(),
            stored: unmask_crc(stored_len_crc),
            computed: crc,
        });
    }
    crc = crc32c::crc32c_append(crc, &stored_len_crc.to_le_bytes());
    pos += 4;
    let rest = &bytes[pos..];
    let total = lens.iter().try_fold(0u64, |a, &l| a.checked_add(l));
    if total != Some(rest.len() as u64) {
        return Err(bad(format!(
            "string lengths add up to {total:?} but {} bytes follow",
            rest.len()
        )));
    }
    crc = crc32c::crc32c_append(crc, rest);
    if crc != unmask_crc(entry_crc) {
        return Err(Error::Crc {
            path: path.to_path_buf(),
            tensor: name.to_string(),
            stored: unmask_crc(entry_crc),
            computed: crc,
        });
    }
    let mut out = Vec::with_capacity(n);
    let mut p = 0usize;
    for l in lens {
        let l = l as usize;
        out.push(rest[p..p + l].to_vec());
        p += l;
    }
    Ok(TensorData::String(out))
}

/// Writes `bytes` to a temporary sibling of `path`, then renames it onto `path`.
pub(crate) fn write_via_temp(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Dim, Extent, TensorSliceProto};
    use crate::sstable::{build, mask_crc};

    fn shape(dims: &[i64]) -> Option<TensorShapeProto> {
        Some(TensorShapeProto {
            dim: dims
                .iter()
                .map(|&size| Dim {
                    size,
                    name: String::new(),
                })
                .collect(),
            unknown_rank: false,
        })
    }

    fn slice(ext: &[(i64, i64)]) -> TensorSliceProto {
        TensorSliceProto {
            extent: ext
                .iter()
                .map(|&(start, l)| Extent {
                    start,
                    length: (l >= 0).then_some(l),
                })
                .collect(),
        }
    }

    /// A one-shard bundle under construction: entries plus the data file.
    #[derive(Default)]
    struct Maker {
        entries: Vec<(Vec<u8>, BundleEntryProto)>,
        data: Vec<u8>,
    }

    impl Maker {
        /// Stores `bytes` with a valid CRC (`crc` = None: the CRC of the bytes).
        fn put(&mut self, key: Vec<u8>, dtype: i32, dims: &[i64], bytes: &[u8], crc: Option<u32>) {
            let e = BundleEntryProto {
                dtype,
                shape: shape(dims),
                shard_id: 0,
                offset: self.data.len() as i64,
                size: bytes.len() as i64,
                crc32c: mask_crc(crc.unwrap_or_else(|| crc32c::crc32c(bytes))),
                slices: vec![],
            };
            self.data.extend_from_slice(bytes);
            self.entries.push((key, e));
        }

        fn f32s(&mut self, key: Vec<u8>, dims: &[i64], v: &[f32]) {
            let b: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            self.put(key, 1, dims, &b, None);
        }

        /// A DT_STRING region as `WriteStringTensor` lays it out.
        fn strings(&mut self, key: Vec<u8>, dims: &[i64], v: &[&[u8]]) {
            let mut b = Vec::new();
            let mut crc = 0u32;
            for s in v {
                build::put_varint(&mut b, s.len() as u64);
                crc = crc32c::crc32c_append(crc, &(s.len() as u32).to_le_bytes());
            }
            let masked = mask_crc(crc);
            b.extend(masked.to_le_bytes());
            crc = crc32c::crc32c_append(crc, &masked.to_le_bytes());
            for s in v {
                b.extend_from_slice(s);
                crc = crc32c::crc32c_append(crc, s);
            }
            self.put(key, 7, dims, &b, Some(crc));
        }

        fn sliced(&mut self, name: &str, dtype: i32, dims: &[i64], slices: &[&[(i64, i64)]]) {
            self.entries.push((
                name.as_bytes().to_vec(),
                BundleEntryProto {
                    dtype,
                    shape: shape(dims),
                    slices: slices.iter().map(|s| slice(s)).collect(),
                    ..Default::default()
                },
            ));
        }

        fn write(mut self, dir: &Path) -> Bundle {
            let header = BundleHeaderProto {
                num_shards: 1,
                endianness: 0,
            };
            self.entries.push((Vec::new(), BundleEntryProto::default()));
            self.entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = self
                .entries
                .iter()
                .map(|(k, e)| (k.clone(), e.encode_to_vec()))
                .collect();
            pairs[0].1 = header.encode_to_vec();
            let prefix = dir.join("variables");
            std::fs::write(
                dir.join("variables.index"),
                build::table_from_pairs(&pairs, 3),
            )
            .unwrap();
            std::fs::write(data_filename(&prefix, 0, 1), &self.data).unwrap();
            Bundle::open(&prefix).unwrap()
        }
    }

    fn skey(name: &str, ext: &[(i64, i64)]) -> Vec<u8> {
        tensor_name_slice_key(name.as_bytes(), ext)
    }

    fn err(b: &Bundle, name: &str) -> String {
        b.read(name.as_bytes(), name).unwrap_err().to_string()
    }

    #[test]
    fn sliced_variables_are_reassembled() {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = Maker::default();
        // [2, 3] split along axis 1 into 2 + 1 columns.
        m.sliced("w", 1, &[2, 3], &[&[(0, -1), (0, 2)], &[(0, -1), (2, 1)]]);
        m.f32s(skey("w", &[(0, -1), (0, 2)]), &[2, 2], &[1., 2., 4., 5.]);
        m.f32s(skey("w", &[(0, -1), (2, 1)]), &[2, 1], &[3., 6.]);
        // Strings split along axis 0.
        m.sliced("s", 7, &[3], &[&[(0, 1)], &[(1, 2)]]);
        m.strings(skey("s", &[(0, 1)]), &[1], &[b"a"]);
        m.strings(skey("s", &[(1, 2)]), &[2], &[b"bc", b""]);
        let b = m.write(tmp.path());
        let w = b.read(b"w", "w").unwrap();
        assert_eq!(w.shape, vec![2, 3]);
        assert_eq!(w.data, TensorData::F32(vec![1., 2., 3., 4., 5., 6.]));
        let s = b.read(b"s", "s").unwrap();
        assert_eq!(
            s.data,
            TensorData::String(vec![b"a".to_vec(), b"bc".to_vec(), vec![]])
        );
    }

    #[test]
    fn huge_sliced_shape_is_refused_before_allocating() {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = Maker::default();
        m.sliced("big", 1, &[1 << 40], &[&[(0, 1)]]);
        m.f32s(skey("big", &[(0, 1)]), &[1], &[1.0]);
        m.sliced("bigs", 7, &[1 << 40], &[&[(0, 1)]]);
        m.strings(skey("bigs", &[(0, 1)]), &[1], &[b"x"]);
        m.sliced(
            "ovf",
            1,
            &[1 << 32, 1 << 32, 2],
            &[&[(0, 1), (0, 1), (0, 1)]],
        );
        let b = m.write(tmp.path());
        let e = err(&b, "big");
        assert!(e.contains("needs 4398046511104 bytes"), "{e}");
        assert!(e.contains("variables.index"), "{e}");
        let e = err(&b, "bigs");
        assert!(e.contains("needs 1099511627776 bytes"), "{e}");
        let e = err(&b, "ovf");
        assert!(e.contains("overflows"), "{e}");
        // The shape alone (what `convert inspect` lists) is still readable.
        assert_eq!(b.dtype_shape(b"big", "big").unwrap().1, vec![1 << 40]);
    }

    #[test]
    fn duplicate_and_overlapping_slices_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = Maker::default();
        // The same slice twice: element counts add up to the tensor, but half is never written.
        m.sliced("dup", 1, &[4], &[&[(0, 2)], &[(0, 2)]]);
        m.f32s(skey("dup", &[(0, 2)]), &[2], &[1., 2.]);
        // Overlap with the right total: [0,3) and [2,3).
        m.sliced("ovl", 1, &[4], &[&[(0, 3)], &[(2, 1)]]);
        m.f32s(skey("ovl", &[(0, 3)]), &[3], &[1., 2., 3.]);
        m.f32s(skey("ovl", &[(2, 1)]), &[1], &[4.]);
        // Too many elements.
        m.sliced("more", 1, &[4], &[&[(0, 3)], &[(1, 3)]]);
        m.f32s(skey("more", &[(0, 3)]), &[3], &[1., 2., 3.]);
        m.f32s(skey("more", &[(1, 3)]), &[3], &[1., 2., 3.]);
        // A gap.
        m.sliced("gap", 1, &[4], &[&[(0, 3)]]);
        m.f32s(skey("gap", &[(0, 3)]), &[3], &[1., 2., 3.]);
        // 2-D: two slices that overlap in one cell, total right.
        m.sliced("x2", 1, &[2, 2], &[&[(0, 1), (0, 2)], &[(0, 2), (1, 1)]]);
        m.f32s(skey("x2", &[(0, 1), (0, 2)]), &[1, 2], &[1., 2.]);
        m.f32s(skey("x2", &[(0, 2), (1, 1)]), &[2, 1], &[3., 4.]);
        // Stored bytes that do not match the slice's shape.
        m.sliced("short", 1, &[2], &[&[(0, 2)]]);
        m.f32s(skey("short", &[(0, 2)]), &[2], &[1.]);
        let b = m.write(tmp.path());
        for name in ["dup", "ovl", "x2"] {
            let e = err(&b, name);
            assert!(e.contains("slices overlap"), "{name}: {e}");
        }
        assert!(err(&b, "more").contains("more than the 4 elements"));
        assert!(err(&b, "gap").contains("slices cover 3 of 4 elements"));
        let e = err(&b, "short");
        assert!(e.contains("4 bytes stored for 2 float32 elements"), "{e}");
        assert!(e.contains(".data-00000-of-00001"), "{e}");
    }

    #[test]
    fn empty_tensors_with_huge_dimensions_do_not_overflow() {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = Maker::default();
        let dims = [0, 1 << 40, 1 << 40];
        let ext = [(0, 0), (0, 1 << 40), (0, 1 << 40)];
        m.sliced("e", 1, &dims, &[&ext]);
        m.f32s(skey("e", &ext), &dims, &[]);
        let b = m.write(tmp.path());
        let t = b.read(b"e", "e").unwrap();
        assert_eq!(t.shape, vec![0, 1 << 40, 1 << 40]);
        assert!(t.is_empty());
    }

    #[test]
    fn unsliced_sizes_are_checked_against_the_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = Maker::default();
        m.put(b"big".to_vec(), 1, &[1 << 40], &[0; 8], None);
        m.put(b"str".to_vec(), 7, &[1 << 40], &[0; 8], None);
        let b = m.write(tmp.path());
        assert!(err(&b, "big").contains("8 bytes stored but 1099511627776 float32 elements"));
        assert!(err(&b, "str").contains("strings cannot fit in 8 bytes"));
    }
}
