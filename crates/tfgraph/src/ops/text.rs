//! Strings, lookup tables and sparse tensors: the ops between a text model's sentence
//! strings and its embedding table (the TF2 text-embedding pattern of TF Hub, the TF1
//! `StringSplit` of USE-style encoders). String kernels come from `tf-text`, the one
//! implementation the hand-written text embedding uses too.
//!
//! Strings, ids and sparse indices live on the host. The embedding bag
//! (`SparseSegmentSqrtN` and friends) runs on the host in TensorFlow's summation order when
//! nothing is differentiated (TF's bits on long rows, float64 tables summed in float64), and
//! as a gather and a scatter-add on the device when gradients are recorded.

use super::{arg, checked_elements, Ctx, OpResult, Value};
use crate::dev;
use crate::host::{HostData, HostTensor};
use rustc_hash::FxHashMap as HashMap;
use savedmodel::DType;
use std::sync::{Arc, RwLock};
use tf_text::segment::Combiner;
use tf_text::vocab::{Column, Entry, TextFileSpec};

/// Largest vocabulary file a table is initialised from.
const MAX_TABLE_FILE: u64 = 1 << 30;

/// A lookup table (`HashTableV2`), filled by its initializer at load.
#[derive(Debug)]
pub struct LookupTable {
    pub key_dtype: DType,
    pub value_dtype: DType,
    /// String keys (looked up without copying the key).
    strs: HashMap<Vec<u8>, Entry>,
    /// Integer keys.
    ints: HashMap<i64, Entry>,
}

impl LookupTable {
    /// An empty table.
    pub fn new(key_dtype: DType, value_dtype: DType) -> LookupTable {
        LookupTable {
            key_dtype,
            value_dtype,
            strs: HashMap::default(),
            ints: HashMap::default(),
        }
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.strs.len() + self.ints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, k: &Entry) -> Option<&Entry> {
        match k {
            Entry::Str(s) => self.strs.get(s.as_slice()),
            Entry::Int(i) => self.ints.get(i),
        }
    }

    /// Adds `k -> v`; a key already there with another value is an error (TF's rule).
    fn insert(&mut self, k: Entry, v: Entry) -> Result<(), String> {
        if let Some(old) = self.get(&k) {
            if *old != v {
                return Err(format!(
                    "the table has a different value for key {k:?} ({old:?}, then {v:?})"
                ));
            }
            return Ok(());
        }
        match k {
            Entry::Str(s) => self.strs.insert(s, v),
            Entry::Int(i) => self.ints.insert(i, v),
        };
        Ok(())
    }
}

/// A shared handle to a table: the graph passes it around as a resource.
pub type TableRef = Arc<RwLock<LookupTable>>;

fn strings(h: &HostTensor) -> Result<&[Vec<u8>], String> {
    match &h.data {
        HostData::Str(v) => Ok(v),
        _ => Err(format!("expected strings, got {}", h.dtype)),
    }
}

fn str_tensor(shape: Vec<usize>, v: Vec<Vec<u8>>) -> Value {
    Value::Host(HostTensor {
        dtype: DType::String,
        shape,
        data: HostData::Str(v),
    })
}

fn i64_tensor(shape: Vec<usize>, v: Vec<i64>) -> Value {
    Value::Host(HostTensor::i64(shape, v))
}

fn table_of(v: &Value) -> Result<&TableRef, String> {
    match v {
        Value::Table(t) => Ok(t),
        _ => Err("expected a lookup table".into()),
    }
}

fn entry_of(h: &HostTensor, i: usize) -> Result<Entry, String> {
    match &h.data {
        HostData::Str(v) => Ok(Entry::Str(v[i].clone())),
        HostData::I64(v) => Ok(Entry::Int(v[i])),
        HostData::I32(v) => Ok(Entry::Int(v[i] as i64)),
        _ => Err(format!(
            "table keys and values of dtype {} are not supported",
            h.dtype
        )),
    }
}

/// A host tensor of `dtype` from table entries.
fn from_entries(dtype: DType, shape: Vec<usize>, v: Vec<Entry>) -> Result<HostTensor, String> {
    if dtype == DType::String {
        let s = v
            .into_iter()
            .map(|e| match e {
                Entry::Str(s) => Ok(s),
                Entry::Int(_) => Err("a string table holds an integer".to_string()),
            })
            .collect::<Result<_, _>>()?;
        return Ok(HostTensor {
            dtype,
            shape,
            data: HostData::Str(s),
        });
    }
    let ints = v
        .into_iter()
        .map(|e| match e {
            Entry::Int(i) => Ok(i),
            Entry::Str(_) => Err("an integer table holds a string".to_string()),
        })
        .collect::<Result<_, _>>()?;
    HostTensor::from_i64(dtype, shape, ints)
}

/// Reads a sparse tensor's `[n, rank]` indices.
fn index_rows(h: &HostTensor) -> Result<(Vec<i64>, usize), String> {
    let v = h.to_i64()?;
    let rank = match h.shape.as_slice() {
        [_, r] => *r,
        s => return Err(format!("sparse indices of shape {s:?}; expected [n, rank]")),
    };
    Ok((v, rank))
}

fn sizes(v: &[i64], what: &str) -> Result<Vec<usize>, String> {
    v.iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("{what} {v:?} has a negative size")))
        .collect()
}

pub(super) fn run(op: &str, ctx: &Ctx, inputs: &[Value]) -> Option<OpResult> {
    let r: OpResult = match op {
        "HashTableV2" | "HashTable" => (|| {
            let key_dtype = ctx.attr_type("key_dtype").ok_or("no key_dtype")?;
            let value_dtype = ctx.attr_type("value_dtype").ok_or("no value_dtype")?;
            Ok(vec![Value::Table(Arc::new(RwLock::new(LookupTable::new(
                key_dtype,
                value_dtype,
            ))))])
        })(),
        "InitializeTableFromTextFileV2" | "InitializeTableFromTextFile" => (|| {
            let table = table_of(arg(inputs, 0)?)?;
            let name = ctx.host_ref(arg(inputs, 1)?)?;
            let name = strings(&name)?.first().ok_or("no file name")?.clone();
            let path = ctx.asset_path(&name)?;
            let file = path.display().to_string();
            let len = std::fs::metadata(&path)
                .map_err(|e| format!("{file}: {e}"))?
                .len();
            if len > MAX_TABLE_FILE {
                return Err(format!(
                    "{file}: {len} bytes is more than a table file may have"
                ));
            }
            let bytes = std::fs::read(&path).map_err(|e| format!("{file}: {e}"))?;
            let mut t = table.write().map_err(|_| "the table's lock is poisoned")?;
            let vocab_size = ctx.attr("vocab_size").and_then(|a| a.i).unwrap_or(-1);
            let spec = TextFileSpec {
                key: Column::from_index(ctx.attr_i("key_index")?)?,
                value: Column::from_index(ctx.attr_i("value_index")?)?,
                key_is_int: t.key_dtype != DType::String,
                value_is_int: t.value_dtype != DType::String,
                delimiter: {
                    let d = ctx.attr_s("delimiter");
                    if d.is_empty() {
                        b"\t".to_vec()
                    } else {
                        d.into_bytes()
                    }
                },
                vocab_size: usize::try_from(vocab_size).ok(),
                offset: ctx.attr("offset").and_then(|a| a.i).unwrap_or(0),
            };
            let map =
                tf_text::vocab::read_table(&file, &bytes, &spec).map_err(|e| e.to_string())?;
            for (k, v) in map {
                t.insert(k, v)?;
            }
            Ok(Vec::new())
        })(),
        "InitializeTableV2" | "LookupTableImportV2" => (|| {
            let table = table_of(arg(inputs, 0)?)?;
            let keys = ctx.host_ref(arg(inputs, 1)?)?;
            let values = ctx.host_ref(arg(inputs, 2)?)?;
            if keys.len() != values.len() {
                return Err(format!("{} keys and {} values", keys.len(), values.len()));
            }
            let mut t = table.write().map_err(|_| "the table's lock is poisoned")?;
            for i in 0..keys.len() {
                t.insert(entry_of(&keys, i)?, entry_of(&values, i)?)?;
            }
            Ok(Vec::new())
        })(),
        "LookupTableFindV2" | "LookupTableFind" => (|| {
            let table = table_of(arg(inputs, 0)?)?;
            let keys = ctx.host_ref(arg(inputs, 1)?)?;
            let default = ctx.host_ref(arg(inputs, 2)?)?;
            let t = table.read().map_err(|_| "the table's lock is poisoned")?;
            let per_key = default.len() == keys.len() && default.len() != 1;
            if default.is_empty() || (default.len() != 1 && !per_key) {
                return Err(format!(
                    "default value of shape {:?} for keys of shape {:?}",
                    default.shape, keys.shape
                ));
            }
            let found: Vec<Option<&Entry>> = match &keys.data {
                HostData::Str(v) => v.iter().map(|s| t.strs.get(s.as_slice())).collect(),
                HostData::I64(v) => v.iter().map(|i| t.ints.get(i)).collect(),
                HostData::I32(v) => v.iter().map(|&i| t.ints.get(&(i as i64))).collect(),
                _ => return Err(format!("keys of dtype {} are not supported", keys.dtype)),
            };
            let mut out = Vec::with_capacity(keys.len());
            for (i, f) in found.into_iter().enumerate() {
                out.push(match f {
                    Some(v) => v.clone(),
                    None => entry_of(&default, if per_key { i } else { 0 })?,
                });
            }
            Ok(vec![Value::Host(from_entries(
                t.value_dtype,
                keys.shape.clone(),
                out,
            )?)])
        })(),
        "LookupTableSizeV2" | "LookupTableSize" => (|| {
            let t = table_of(arg(inputs, 0)?)?;
            let n = t.read().map_err(|_| "the table's lock is poisoned")?.len();
            Ok(vec![i64_tensor(vec![], vec![n as i64])])
        })(),
        "StaticRegexReplace" => (|| {
            let x = ctx.host_ref(arg(inputs, 0)?)?;
            let global = ctx.attr("replace_global").and_then(|a| a.b).unwrap_or(true);
            let re = tf_text::RegexReplace::new(
                ctx.attr_s("pattern").as_bytes(),
                ctx.attr_s("rewrite").as_bytes(),
                global,
            )?;
            let out = strings(&x)?.iter().map(|s| re.apply(s)).collect();
            Ok(vec![str_tensor(x.shape.clone(), out)])
        })(),
        "RegexReplace" => (|| {
            let x = ctx.host_ref(arg(inputs, 0)?)?;
            let pat = ctx.host_ref(arg(inputs, 1)?)?;
            let rw = ctx.host_ref(arg(inputs, 2)?)?;
            let (pat, rw) = (
                strings(&pat)?.first().ok_or("no pattern")?,
                strings(&rw)?.first().ok_or("no rewrite")?,
            );
            let global = ctx.attr("replace_global").and_then(|a| a.b).unwrap_or(true);
            let re = tf_text::RegexReplace::new(pat, rw, global)?;
            let out = strings(&x)?.iter().map(|s| re.apply(s)).collect();
            Ok(vec![str_tensor(x.shape.clone(), out)])
        })(),
        "StaticRegexFullMatch" => (|| {
            let x = ctx.host_ref(arg(inputs, 0)?)?;
            let pat = format!("\\A(?:{})\\z", ctx.attr_s("pattern"));
            let re = tf_text::RegexReplace::new(pat.as_bytes(), b"", false)?;
            let out = strings(&x)?.iter().map(|s| re.is_match(s)).collect();
            Ok(vec![Value::Host(HostTensor::bool(x.shape.clone(), out))])
        })(),
        "StringLower" | "StringUpper" => (|| {
            let x = ctx.host_ref(arg(inputs, 0)?)?;
            let utf8 = match ctx.attr_s("encoding").as_str() {
                "" => false,
                "utf-8" | "UTF-8" | "utf8" => true,
                e => return Err(format!("encoding {e:?} is not supported")),
            };
            let lower = op == "StringLower";
            let out = strings(&x)?
                .iter()
                .map(|s| match (utf8, std::str::from_utf8(s)) {
                    (true, Ok(t)) if lower => t.to_lowercase().into_bytes(),
                    (true, Ok(t)) => t.to_uppercase().into_bytes(),
                    _ if lower => s.to_ascii_lowercase(),
                    _ => s.to_ascii_uppercase(),
                })
                .collect();
            Ok(vec![str_tensor(x.shape.clone(), out)])
        })(),
        "StringSplitV2" | "StringSplit" => (|| {
            let x = ctx.host_ref(arg(inputs, 0)?)?;
            let sep = ctx.host_ref(arg(inputs, 1)?)?;
            let sep = strings(&sep)?.first().ok_or("no separator")?.clone();
            if x.shape.len() != 1 {
                return Err(format!("input of shape {:?}; expected a vector", x.shape));
            }
            let maxsplit = ctx.attr("maxsplit").and_then(|a| a.i).unwrap_or(-1);
            let skip_empty = ctx.attr("skip_empty").and_then(|a| a.b).unwrap_or(true);
            let mut idx = Vec::new();
            let mut vals = Vec::new();
            let mut longest = 0usize;
            for (r, s) in strings(&x)?.iter().enumerate() {
                let toks = if op == "StringSplitV2" {
                    tf_text::split::split_v2(s, &sep, maxsplit)
                } else {
                    tf_text::split::split_v1(s, &sep, skip_empty)
                };
                longest = longest.max(toks.len());
                for (c, t) in toks.into_iter().enumerate() {
                    idx.extend([r as i64, c as i64]);
                    vals.push(t.to_vec());
                }
            }
            let n = vals.len();
            Ok(vec![
                i64_tensor(vec![n, 2], idx),
                str_tensor(vec![n], vals),
                i64_tensor(vec![2], vec![x.len() as i64, longest as i64]),
            ])
        })(),
        "StringToHashBucketFast" => (|| {
            let x = ctx.host_ref(arg(inputs, 0)?)?;
            let b = ctx.attr_i("num_buckets")?;
            if b <= 0 {
                return Err(format!("num_buckets = {b}; it must be positive"));
            }
            let out = strings(&x)?
                .iter()
                .map(|s| tf_text::hash_bucket(s, b as u64) as i64)
                .collect();
            Ok(vec![i64_tensor(x.shape.clone(), out)])
        })(),
        "RaggedTensorToSparse" => (|| {
            let (values, splits) = inputs.split_last().ok_or("no inputs")?;
            let values = ctx.host_ref(values)?;
            if splits.is_empty() || values.shape.len() != 1 {
                return Err(format!("only ragged tensors of flat values are supported (got {} splits, values of shape {:?})", splits.len(), values.shape));
            }
            let splits: Vec<Vec<i64>> = splits
                .iter()
                .map(|s| ctx.ints(s))
                .collect::<Result<_, _>>()?;
            ragged_to_sparse(&splits, &values)
        })(),
        "SparseFillEmptyRows" => (|| {
            let (idx, rank) = index_rows(&*ctx.host_ref(arg(inputs, 0)?)?)?;
            let values = ctx.host_ref(arg(inputs, 1)?)?;
            let shape = sizes(&ctx.ints(arg(inputs, 2)?)?, "dense shape")?;
            let default = ctx.host_ref(arg(inputs, 3)?)?;
            fill_empty_rows(&idx, rank, &values, &shape, &default)
        })(),
        "SparseReshape" => (|| {
            let (idx, rank) = index_rows(&*ctx.host_ref(arg(inputs, 0)?)?)?;
            let old = sizes(&ctx.ints(arg(inputs, 1)?)?, "input shape")?;
            let new = ctx.ints(arg(inputs, 2)?)?;
            sparse_reshape(&idx, rank, &old, &new)
        })(),
        "Unique" => (|| {
            let x = ctx.host_ref(arg(inputs, 0)?)?;
            if x.shape.len() != 1 {
                return Err(format!("input of shape {:?}; expected a vector", x.shape));
            }
            let mut first: HashMap<Entry, usize> = HashMap::default();
            let mut keep = Vec::new();
            let mut idx = Vec::with_capacity(x.len());
            for i in 0..x.len() {
                let key = match &x.data {
                    HostData::F32(v) => Entry::Int(v[i].to_bits() as i64),
                    HostData::F64(v) => Entry::Int(v[i].to_bits() as i64),
                    HostData::Bool(v) => Entry::Int(v[i] as i64),
                    HostData::U8(v) => Entry::Int(v[i] as i64),
                    _ => entry_of(&x, i)?,
                };
                let next = first.len();
                let slot = *first.entry(key).or_insert_with(|| {
                    keep.push(i);
                    next
                });
                idx.push(slot as i64);
            }
            let dt = ctx.attr_type("out_idx").unwrap_or(DType::I32);
            Ok(vec![
                Value::Host(x.take(vec![keep.len()], &keep)),
                Value::Host(HostTensor::from_i64(dt, vec![idx.len()], idx)?),
            ])
        })(),
        "DenseBincount" | "Bincount" => (|| {
            let x = ctx.host_ref(arg(inputs, 0)?)?;
            let size = *ctx.ints(arg(inputs, 1)?)?.first().ok_or("no size")?;
            let weights = ctx.host_ref(arg(inputs, 2)?)?;
            let binary = ctx.attr_b("binary_output");
            let size = usize::try_from(size).map_err(|_| format!("size {size} is negative"))?;
            let vals = x.to_i64()?;
            let w = if weights.is_empty() {
                None
            } else if weights.len() == vals.len() {
                Some(weights.to_f64()?)
            } else {
                return Err(format!(
                    "{} weights for {} values",
                    weights.len(),
                    vals.len()
                ));
            };
            let (rows, out_shape) = match x.shape.as_slice() {
                [_] | [] => (1, vec![size]),
                [r, _] => (*r, vec![*r, size]),
                s => return Err(format!("input of shape {s:?}; expected rank 1 or 2")),
            };
            checked_elements(&out_shape)?;
            let per = vals.len().checked_div(rows).unwrap_or(0);
            let mut out = vec![0f64; rows * size];
            for (i, &v) in vals.iter().enumerate() {
                if v < 0 {
                    return Err(format!("value {v} is negative"));
                }
                if (v as u64) < size as u64 {
                    let o = i.checked_div(per).unwrap_or(0) * size + v as usize;
                    let add = w.as_ref().map_or(1.0, |w| w[i]);
                    out[o] = if binary { 1.0 } else { out[o] + add };
                }
            }
            let dt = if weights.is_empty() {
                ctx.attr_type("T").unwrap_or(DType::I32)
            } else {
                weights.dtype
            };
            Ok(vec![Value::Host(HostTensor::from_f64(dt, out_shape, out)?)])
        })(),
        "ResourceGather" => (|| {
            let slot = match arg(inputs, 0)? {
                Value::Var(s) => *s,
                _ => return Err("ResourceGather of something that is not a variable".into()),
            };
            let table = ctx
                .vars
                .get(slot)
                .cloned()
                .ok_or_else(|| format!("variable slot {slot} is not loaded"))?;
            let axis0 = Value::Host(HostTensor::i32(vec![], vec![0]));
            let ins = [table, arg(inputs, 1)?.clone(), axis0];
            super::array::run("GatherV2", ctx, &ins).ok_or("no gather")?
        })(),
        _ => match Combiner::of_op(op) {
            Some(c) => segment_reduce(ctx, inputs, c, op.ends_with("WithNumSegments")),
            None => return None,
        },
    };
    Some(r)
}

/// `RaggedTensorToSparse` of flat values: each value's index is its path through the
/// row splits.
fn ragged_to_sparse(splits: &[Vec<i64>], values: &HostTensor) -> OpResult {
    let k = splits.len();
    for (d, s) in splits.iter().enumerate() {
        let limit = if d + 1 < k {
            splits[d + 1].len().saturating_sub(1)
        } else {
            values.len()
        };
        let ok = !s.is_empty()
            && s[0] == 0
            && s.windows(2).all(|w| w[0] <= w[1])
            && *s.last().unwrap_or(&0) as usize == limit;
        if !ok {
            return Err(format!("row splits {d} are not valid for {limit} rows"));
        }
    }
    // Walk the outermost rows depth-first.
    let mut idx = Vec::with_capacity(values.len() * (k + 1));
    let mut dense = vec![0i64; k + 1];
    dense[0] = splits[0].len() as i64 - 1;
    fn walk(
        splits: &[Vec<i64>],
        d: usize,
        lo: i64,
        hi: i64,
        prefix: &mut Vec<i64>,
        idx: &mut Vec<i64>,
        dense: &mut [i64],
    ) {
        for (j, r) in (lo..hi).enumerate() {
            prefix.push(j as i64);
            let (a, b) = (splits[d][r as usize], splits[d][r as usize + 1]);
            dense[d + 1] = dense[d + 1].max(b - a);
            if d + 1 == splits.len() {
                for (c, _) in (a..b).enumerate() {
                    idx.extend_from_slice(prefix);
                    idx.push(c as i64);
                }
            } else {
                walk(splits, d + 1, a, b, prefix, idx, dense);
            }
            prefix.pop();
        }
    }
    let rows = splits[0].len() as i64 - 1;
    walk(splits, 0, 0, rows, &mut Vec::new(), &mut idx, &mut dense);
    let n = values.len();
    let vshape = vec![n];
    Ok(vec![
        Value::Host(HostTensor::i64(vec![n, k + 1], idx)),
        Value::Host(values.take(vshape, &(0..n).collect::<Vec<_>>())),
        Value::Host(HostTensor::i64(vec![k + 1], dense)),
    ])
}

/// `SparseFillEmptyRows`: every row without an entry gets `(row, 0, ...) = default`; entries
/// keep their order within a row, rows come in order.
fn fill_empty_rows(
    idx: &[i64],
    rank: usize,
    values: &HostTensor,
    shape: &[usize],
    default: &HostTensor,
) -> OpResult {
    let n = values.len();
    if rank == 0 || idx.len() != n * rank || shape.len() != rank {
        return Err(format!(
            "indices of rank {rank} for {n} values and a dense shape of rank {}",
            shape.len()
        ));
    }
    if default.len() != 1 || default.dtype != values.dtype {
        return Err("the default value must be a scalar of the values' dtype".into());
    }
    let rows = shape[0];
    checked_elements(&[rows])?;
    let mut count = vec![0usize; rows];
    for i in 0..n {
        let r = idx[i * rank];
        if r < 0 || r as u64 >= rows as u64 {
            return Err(format!("indices[{i}] = {r} is out of range [0, {rows})"));
        }
        count[r as usize] += 1;
    }
    let empty: Vec<bool> = count.iter().map(|&c| c == 0).collect();
    // Start of each row in the output.
    let mut start = Vec::with_capacity(rows);
    let mut total = 0usize;
    for &c in &count {
        start.push(total);
        total += c.max(1);
    }
    let mut out_idx = vec![0i64; total * rank];
    let mut src = vec![usize::MAX; total];
    let mut fill = vec![0usize; rows];
    let mut reverse = vec![0i64; n];
    for i in 0..n {
        let r = idx[i * rank] as usize;
        let p = start[r] + fill[r];
        fill[r] += 1;
        out_idx[p * rank..(p + 1) * rank].copy_from_slice(&idx[i * rank..(i + 1) * rank]);
        src[p] = i;
        reverse[i] = p as i64;
    }
    for r in 0..rows {
        if empty[r] {
            out_idx[start[r] * rank] = r as i64;
        }
    }
    // Values: the input's, or the default (index n of the extended list).
    let ext = HostTensor::concat_flat(values.dtype, vec![n + 1], &[values, default])?;
    let pick: Vec<usize> = src
        .iter()
        .map(|&s| if s == usize::MAX { n } else { s })
        .collect();
    Ok(vec![
        Value::Host(HostTensor::i64(vec![total, rank], out_idx)),
        Value::Host(ext.take(vec![total], &pick)),
        Value::Host(HostTensor::bool(vec![rows], empty)),
        Value::Host(HostTensor::i64(vec![n], reverse)),
    ])
}

/// `SparseReshape`: the same entries addressed in a new dense shape (one -1 inferred).
fn sparse_reshape(idx: &[i64], rank: usize, old: &[usize], new: &[i64]) -> OpResult {
    let n = idx.len().checked_div(rank).unwrap_or(0);
    if old.len() != rank {
        return Err(format!(
            "indices of rank {rank} for a shape of rank {}",
            old.len()
        ));
    }
    let total: u128 = old.iter().map(|&d| d as u128).product();
    let unknown: Vec<usize> = (0..new.len()).filter(|&i| new[i] == -1).collect();
    if unknown.len() > 1 || new.iter().any(|&d| d < -1) {
        return Err(format!("new shape {new:?} is not valid"));
    }
    let known: u128 = new
        .iter()
        .filter(|&&d| d >= 0)
        .map(|&d| d as u128)
        .product();
    let mut shape: Vec<u128> = new.iter().map(|&d| d.max(0) as u128).collect();
    if let Some(&u) = unknown.first() {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {old:?} to {new:?}"));
        }
        shape[u] = total / known;
    }
    if shape.iter().product::<u128>() != total {
        return Err(format!("cannot reshape {old:?} to {new:?}"));
    }
    if shape.iter().any(|&d| d > i64::MAX as u128) {
        return Err(format!("new shape {new:?} is too large"));
    }
    let mut out = Vec::with_capacity(n * shape.len());
    for e in 0..n {
        let mut flat: u128 = 0;
        for d in 0..rank {
            let i = idx[e * rank + d];
            if i < 0 || i as u128 >= old[d] as u128 {
                return Err(format!(
                    "index {i} is out of range for dimension {d} of {old:?}"
                ));
            }
            flat = flat * old[d] as u128 + i as u128;
        }
        let mut coords = vec![0i64; shape.len()];
        for d in (0..shape.len()).rev() {
            if shape[d] > 0 {
                coords[d] = (flat % shape[d]) as i64;
                flat /= shape[d];
            }
        }
        out.extend(coords);
    }
    let r = shape.len();
    Ok(vec![
        Value::Host(HostTensor::i64(vec![n, r], out)),
        Value::Host(HostTensor::i64(
            vec![r],
            shape.iter().map(|&d| d as i64).collect(),
        )),
    ])
}

/// `SparseSegment{Sum,Mean,SqrtN}[WithNumSegments](data, indices, segment_ids[, num])`.
fn segment_reduce(ctx: &Ctx, inputs: &[Value], c: Combiner, with_num: bool) -> OpResult {
    let data = arg(inputs, 0)?;
    let indices = ctx.ints(arg(inputs, 1)?)?;
    let segments = ctx.ints(arg(inputs, 2)?)?;
    let num = if with_num {
        let n = *ctx
            .ints(arg(inputs, 3)?)?
            .first()
            .ok_or("no num_segments")?;
        Some(usize::try_from(n).map_err(|_| format!("num_segments = {n} is negative"))?)
    } else {
        None
    };
    let shape = data.shape();
    let (&rows_in, inner) = shape
        .split_first()
        .ok_or("data must have at least one dimension")?;
    let cols: usize = inner.iter().product();
    let out_shape = |rows: usize| {
        let mut s = vec![rows];
        s.extend_from_slice(inner);
        s
    };
    // Indices are checked against the data's rows even when a row is empty (cols = 0).
    let (_, rows) = tf_text::segment::reduce(&vec![0f32; rows_in], 1, &indices, &segments, num, c)?;
    if cols == 0 {
        let empty = HostTensor::f32(out_shape(rows), Vec::new());
        return Ok(vec![Value::Host(empty)]);
    }
    if let Value::Host(h) = data {
        let (v, rows) = match &h.data {
            HostData::F64(v) => {
                let (o, r) = tf_text::segment::reduce(v, cols, &indices, &segments, num, c)?;
                (HostData::F64(o), r)
            }
            _ => {
                let v = h.to_f32()?;
                let (o, r) = tf_text::segment::reduce(&v, cols, &indices, &segments, num, c)?;
                (HostData::F32(o), r)
            }
        };
        let dtype = if matches!(v, HostData::F64(_)) {
            DType::F64
        } else {
            DType::F32
        };
        return Ok(vec![Value::Host(HostTensor {
            dtype,
            shape: out_shape(rows),
            data: v,
        })]);
    }
    let t = ctx.float(data)?;
    if !ctx.device.is_autodiff() {
        // Nothing to differentiate: TensorFlow's order on the host.
        let v = dev::download(t)?;
        let (o, rows) = tf_text::segment::reduce(&v, cols, &indices, &segments, num, c)?;
        return Ok(vec![Value::Dev(dev::upload(
            o,
            &out_shape(rows),
            ctx.device,
        ))]);
    }
    // Differentiable: gather, weight, scatter-add (indices validated above).
    let mut weights = vec![1f32; indices.len()];
    let mut s = 0;
    while s < segments.len() {
        let mut e = s + 1;
        while e < segments.len() && segments[e] == segments[s] {
            e += 1;
        }
        let n = (e - s) as f32;
        let w = match c {
            Combiner::Sum => 1.0,
            Combiner::Mean => 1.0 / n,
            Combiner::SqrtN => 1.0 / n.sqrt(),
        };
        weights[s..e].fill(w);
        s = e;
    }
    let flat = dev::reshape(t, &[rows_in, cols]);
    let picked = dev::select(flat, 0, &indices, ctx.device);
    let w = dev::upload(weights, &[indices.len(), 1], ctx.device);
    let weighted = dev::mul(picked, w);
    let zeros = dev::zeros(&[rows, cols], ctx.device);
    let out = dev::select_add(zeros, 0, &segments, weighted, ctx.device);
    Ok(vec![Value::Dev(dev::reshape(out, &out_shape(rows)))])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Node;
    use burn::tensor::Device;
    use savedmodel::proto::AttrValue;

    fn node(op: &str, attrs: &[(&str, AttrValue)]) -> Node {
        Node {
            name: format!("f/{op}"),
            op: op.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            inputs: Vec::new(),
            controls: Vec::new(),
            function: "f".into(),
            binding: None,
            stateful: false,
            subgraphs: Vec::new(),
        }
    }
    fn int(i: i64) -> AttrValue {
        AttrValue {
            i: Some(i),
            ..Default::default()
        }
    }
    fn text(s: &str) -> AttrValue {
        AttrValue {
            s: Some(s.as_bytes().to_vec()),
            ..Default::default()
        }
    }
    fn strs(v: &[&[u8]]) -> Value {
        str_tensor(vec![v.len()], v.iter().map(|s| s.to_vec()).collect())
    }
    fn ints(shape: Vec<usize>, v: Vec<i64>) -> Value {
        i64_tensor(shape, v)
    }
    /// Runs `n` on `inputs` with `assets` as the model's assets folder; the error text.
    fn fails(n: &Node, inputs: Vec<Value>, assets: Option<&std::path::Path>) -> String {
        let device = Device::flex();
        let ctx = Ctx {
            device: &device,
            node: n,
            vars: &[],
            training: false,
            assets,
            assigned: None,
        };
        match super::super::run(&ctx, inputs) {
            Ok(_) => panic!("{} accepted its input", n.op),
            Err(e) => e,
        }
    }

    #[test]
    fn table_files_are_read_only_inside_the_assets_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let assets = tmp.path().join("assets");
        std::fs::create_dir_all(&assets).unwrap();
        std::fs::write(tmp.path().join("secret.txt"), "a\nb\n").unwrap();
        let table = || {
            Value::Table(Arc::new(RwLock::new(LookupTable::new(
                DType::String,
                DType::I64,
            ))))
        };
        let init = node(
            "InitializeTableFromTextFileV2",
            &[("key_index", int(-2)), ("value_index", int(-1))],
        );
        for name in [
            tmp.path().join("secret.txt").to_string_lossy().into_owned(),
            "../secret.txt".into(),
            "/etc/passwd".into(),
        ] {
            let e = fails(
                &init,
                vec![table(), strs(&[name.as_bytes()])],
                Some(&assets),
            );
            assert!(
                e.contains("not inside the model's assets folder") || e.contains("No such file"),
                "{name}: {e}"
            );
        }
        let e = fails(&init, vec![table(), strs(&[b"tokens.txt"])], None);
        assert!(e.contains("not inside"), "{e}");
        // A vocabulary whose line numbers overflow with the offset.
        std::fs::write(assets.join("v.txt"), "a\nb\n").unwrap();
        let far = node(
            "InitializeTableFromTextFileV2",
            &[
                ("key_index", int(-2)),
                ("value_index", int(-1)),
                ("offset", int(i64::MAX)),
            ],
        );
        let e = fails(&far, vec![table(), strs(&[b"v.txt"])], Some(&assets));
        assert!(e.contains("overflows"), "{e}");
    }

    #[test]
    fn bad_patterns_buckets_and_sparse_indices_are_errors() {
        let re = node(
            "StaticRegexReplace",
            &[("pattern", text("(")), ("rewrite", text(""))],
        );
        assert!(fails(&re, vec![strs(&[b"a"])], None).contains("pattern"));
        let h = node("StringToHashBucketFast", &[("num_buckets", int(0))]);
        assert!(fails(&h, vec![strs(&[b"a"])], None).contains("num_buckets"));
        let seg = node("SparseSegmentSqrtN", &[]);
        let data = Value::Host(HostTensor::f32(vec![2, 1], vec![1.0, 2.0]));
        let e = fails(
            &seg,
            vec![
                data.clone(),
                ints(vec![2], vec![0, 7]),
                ints(vec![2], vec![0, 0]),
            ],
            None,
        );
        assert!(e.contains("out of range"), "{e}");
        let e = fails(
            &seg,
            vec![data, ints(vec![2], vec![0, 1]), ints(vec![2], vec![1, 0])],
            None,
        );
        assert!(e.contains("not increasing"), "{e}");
        let fill = node("SparseFillEmptyRows", &[]);
        let e = fails(
            &fill,
            vec![
                ints(vec![1, 2], vec![5, 0]),
                strs(&[b"x"]),
                ints(vec![2], vec![2, 1]),
                strs(&[b""]),
            ],
            None,
        );
        assert!(e.contains("out of range"), "{e}");
        let ragged = node("RaggedTensorToSparse", &[]);
        let e = fails(
            &ragged,
            vec![ints(vec![3], vec![0, 5, 1]), strs(&[b"a"])],
            None,
        );
        assert!(e.contains("row splits"), "{e}");
        let reshape = node("SparseReshape", &[]);
        let e = fails(
            &reshape,
            vec![
                ints(vec![1, 1], vec![0]),
                ints(vec![1], vec![4]),
                ints(vec![2], vec![-1, -1]),
            ],
            None,
        );
        assert!(e.contains("not valid"), "{e}");
    }
}
