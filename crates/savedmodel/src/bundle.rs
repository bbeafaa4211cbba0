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
        entries.insert(k, e);
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
        let mut strides = vec![1usize; rank];
        for d in (0..rank.saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * shape[d + 1];
        }
        let es = dtype.element_size();
        let mut full_bytes: Vec<u8> = Vec::new();
        let mut full_strings: Vec<Vec<u8>> = Vec::new();
        match es {
            Some(es) => {
                full_bytes = vec![
                    0;
                    n.checked_mul(es)
                        .ok_or_else(|| self.tensor_err(name, "size overflows"))?
                ]
            }
            None => full_strings = vec![Vec::new(); n],
        }
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
                let (start, len) = match x.length {
                    Some(l) => (x.start, l),
                    None => (0, shape[d] as i64),
                };
                let ok = start >= 0
                    && len >= 0
                    && (start as u64)
                        .checked_add(len as u64)
                        .is_some_and(|end| end <= shape[d] as u64);
                if !ok {
                    return Err(self.tensor_err(
                        name,
                        format!(
                            "slice {si} extent {start}+{len} outside dimension {d} of size {}",
                            shape[d]
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
            let pn = num_elements(&lens).unwrap_or(0);
            covered = covered.saturating_add(pn);
            match es {
                Some(es) => {
                    let bytes = self.checked_fixed(part, dtype, pn, name)?;
                    place(&mut full_bytes, &shape, &strides, &starts, &lens, bytes, es)
                }
                None => match self.read_unsliced(part, dtype, pn, name)? {
                    TensorData::String(s) => {
                        place(&mut full_strings, &shape, &strides, &starts, &lens, &s, 1)
                    }
                    _ => return Err(self.tensor_err(name, "slice dtype mismatch")),
                },
            }
        }
        if covered != n {
            return Err(self.tensor_err(name, format!("slices cover {covered} of {n} elements")));
        }
        let data = match es {
            Some(_) => decode_fixed(dtype, &full_bytes)
                .ok_or_else(|| self.tensor_err(name, "cannot decode"))?,
            None => TensorData::String(full_strings),
        };
        Ok(Tensor { dtype, shape, data })
    }
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
