//! LevelDB-style SSTable reader (the format of `variables.index`, as written by tsl's
//! `table_builder.cc`): 48-byte footer with magic, blocks with a type byte and a masked
//! CRC32C trailer, prefix-compressed keys with restart points, and an index block pointing
//! at the data blocks. Every block's CRC is checked. Snappy-compressed blocks are rejected
//! (TensorBundle never writes them).
//!
//! Errors are plain messages; [`crate::read`] wraps them with the file name.

// Parts of the reader only the fuzz targets call (`fuzzing` feature).
#![cfg_attr(not(feature = "fuzzing"), allow(dead_code))]

/// `kTableMagicNumber` of LevelDB / tsl tables.
pub const TABLE_MAGIC: u64 = 0xdb47_7524_8b80_fb57;
/// Footer length: two block handles padded to 40 bytes, then the 8-byte magic.
pub const FOOTER_LEN: usize = 48;
const BLOCK_TRAILER_LEN: usize = 5;
const MASK_DELTA: u32 = 0xa282_ead8;

/// `crc32c::Mask` of tsl: rotate right by 15 bits and add a constant.
pub fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// Inverse of [`mask_crc`].
pub fn unmask_crc(masked: u32) -> u32 {
    masked.wrapping_sub(MASK_DELTA).rotate_left(15)
}

/// Reads a base-128 varint of at most 64 bits from `buf` at `*pos`, advancing `*pos`.
pub fn read_varint64(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut result = 0u64;
    for i in 0..10 {
        let b = *buf
            .get(*pos)
            .ok_or_else(|| "varint runs past the end".to_string())?;
        *pos += 1;
        if i == 9 && b > 1 {
            return Err("varint longer than 64 bits".into());
        }
        result |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(result);
        }
    }
    Err("varint longer than 64 bits".into())
}

fn read_varint32(buf: &[u8], pos: &mut usize) -> Result<usize, String> {
    let v = read_varint64(buf, pos)?;
    u32::try_from(v)
        .map(|v| v as usize)
        .map_err(|_| "varint32 out of range".to_string())
}

fn read_fixed32(buf: &[u8], pos: usize) -> Result<u32, String> {
    let b = buf
        .get(pos..pos.checked_add(4).ok_or("offset overflow")?)
        .ok_or_else(|| format!("fixed32 at {pos} runs past the end"))?;
    Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Key/value pairs of a block or table, in order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Location of a block: offset and size (without the 5-byte trailer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHandle {
    pub offset: u64,
    pub size: u64,
}

impl BlockHandle {
    fn decode(buf: &[u8], pos: &mut usize) -> Result<Self, String> {
        let offset = read_varint64(buf, pos)?;
        let size = read_varint64(buf, pos)?;
        Ok(BlockHandle { offset, size })
    }
}

/// Decoded footer: the metaindex and index block handles.
#[derive(Debug, Clone, Copy)]
pub struct Footer {
    pub metaindex: BlockHandle,
    pub index: BlockHandle,
}

/// Parses the last 48 bytes of `file`.
pub fn read_footer(file: &[u8]) -> Result<Footer, String> {
    if file.len() < FOOTER_LEN {
        return Err(format!(
            "file is {} bytes, shorter than the {FOOTER_LEN}-byte table footer",
            file.len()
        ));
    }
    let footer = &file[file.len() - FOOTER_LEN..];
    let lo = u64::from(read_fixed32(footer, 40)?);
    let hi = u64::from(read_fixed32(footer, 44)?);
    let magic = (hi << 32) | lo;
    if magic != TABLE_MAGIC {
        return Err(format!("bad table magic {magic:#018x} (expected {TABLE_MAGIC:#018x}); not an SSTable or truncated"));
    }
    let mut pos = 0;
    let metaindex = BlockHandle::decode(&footer[..40], &mut pos)?;
    let index = BlockHandle::decode(&footer[..40], &mut pos)?;
    Ok(Footer { metaindex, index })
}

/// Returns the contents of the block at `h`, after checking its trailer CRC and type.
pub fn read_block<'a>(file: &'a [u8], h: BlockHandle, what: &str) -> Result<&'a [u8], String> {
    let start = usize::try_from(h.offset).map_err(|_| format!("{what} block offset too large"))?;
    let size = usize::try_from(h.size).map_err(|_| format!("{what} block size too large"))?;
    let end = start
        .checked_add(size)
        .and_then(|e| e.checked_add(BLOCK_TRAILER_LEN))
        .ok_or_else(|| format!("{what} block handle overflows"))?;
    if end > file.len() {
        return Err(format!(
            "{what} block at {start} (+{size} bytes) runs past the end of the file ({} bytes)",
            file.len()
        ));
    }
    let contents = &file[start..start + size];
    let kind = file[start + size];
    let stored = read_fixed32(file, start + size + 1)?;
    let actual = crc32c::crc32c_append(crc32c::crc32c(contents), &[kind]);
    if unmask_crc(stored) != actual {
        return Err(format!(
            "{what} block at {start}: checksum mismatch (stored {:#010x}, computed {actual:#010x})",
            unmask_crc(stored)
        ));
    }
    match kind {
        0 => Ok(contents),
        1 => Err(format!(
            "{what} block at {start} is Snappy-compressed, which is not supported"
        )),
        k => Err(format!(
            "{what} block at {start} has unknown compression type {k}"
        )),
    }
}

/// Bytes charged per decoded entry on top of its key and value (the two vectors' headers and
/// allocations), so that blocks of tiny entries are budgeted too.
const ENTRY_OVERHEAD: usize = 64;

/// How many bytes decoding a table of `file_len` bytes may allocate for its entries: a
/// generous multiple of the file (real indexes decode to about twice their size), so that
/// shared key prefixes cannot blow a small file up into gigabytes.
pub fn decode_budget(file_len: usize) -> usize {
    file_len.saturating_mul(32).saturating_add(4 << 20)
}

/// Decodes the prefix-compressed entries of a block's contents, with the budget of a block
/// alone (see [`block_entries_budgeted`]).
pub fn block_entries(contents: &[u8], what: &str) -> Result<Entries, String> {
    let mut budget = decode_budget(contents.len());
    block_entries_budgeted(contents, what, &mut budget)
}

/// Decodes the prefix-compressed entries of a block's contents. Keys must be strictly
/// increasing. Every decoded entry is charged (key + value + [`ENTRY_OVERHEAD`] bytes) to
/// `budget` before it is allocated; running out is an error.
pub fn block_entries_budgeted(
    contents: &[u8],
    what: &str,
    budget: &mut usize,
) -> Result<Entries, String> {
    if contents.len() < 4 {
        return Err(format!(
            "{what} block is {} bytes, too short for its restart count",
            contents.len()
        ));
    }
    let num_restarts = read_fixed32(contents, contents.len() - 4)? as usize;
    let restarts_len = num_restarts
        .checked_mul(4)
        .and_then(|n| n.checked_add(4))
        .filter(|&n| n <= contents.len())
        .ok_or_else(|| {
            format!("{what} block: restart count {num_restarts} does not fit the block")
        })?;
    let data = &contents[..contents.len() - restarts_len];
    let mut out: Entries = Vec::new();
    let mut key: Vec<u8> = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let entry_at = pos;
        let shared = read_varint32(data, &mut pos)
            .map_err(|e| format!("{what} block entry at {entry_at}: {e}"))?;
        let non_shared = read_varint32(data, &mut pos)
            .map_err(|e| format!("{what} block entry at {entry_at}: {e}"))?;
        let value_len = read_varint32(data, &mut pos)
            .map_err(|e| format!("{what} block entry at {entry_at}: {e}"))?;
        if shared > key.len() {
            return Err(format!(
                "{what} block entry at {entry_at}: shares {shared} key bytes but the previous key has {}",
                key.len()
            ));
        }
        let key_end = pos.checked_add(non_shared).filter(|&e| e <= data.len());
        let key_end = key_end
            .ok_or_else(|| format!("{what} block entry at {entry_at}: key runs past the block"))?;
        let val_end = key_end.checked_add(value_len).filter(|&e| e <= data.len());
        let val_end = val_end.ok_or_else(|| {
            format!("{what} block entry at {entry_at}: value runs past the block")
        })?;
        let cost = shared
            .checked_add(non_shared)
            .and_then(|c| c.checked_add(value_len))
            .and_then(|c| c.checked_add(ENTRY_OVERHEAD))
            .filter(|&c| c <= *budget)
            .ok_or_else(|| {
                format!(
                    "{what} block entry at {entry_at}: the decoded keys and values would exceed \
                     the decoding budget of {} bytes for a table this size (shared key prefix \
                     blow-up?)",
                    budget
                )
            })?;
        *budget -= cost;
        let new_key = &data[pos..key_end];
        // Strictly increasing: compare the new key (prefix `key[..shared]` + `new_key`) with
        // the previous key without building it first.
        if !out.is_empty() {
            let prev_tail = &key[shared..];
            if new_key <= prev_tail {
                return Err(format!(
                    "{what} block entry at {entry_at}: key is not greater than the previous key \
                     (duplicate or out of order)"
                ));
            }
        }
        key.truncate(shared);
        key.extend_from_slice(new_key);
        out.push((key.clone(), data[key_end..val_end].to_vec()));
        pos = val_end;
    }
    Ok(out)
}

/// Reads every (key, value) pair of the table in `file`, in file order. Keys must be strictly
/// increasing over the whole table, data blocks must follow each other without overlapping,
/// and everything decoded is bounded by [`decode_budget`] of the file's size.
pub fn read_table(file: &[u8]) -> Result<Entries, String> {
    let footer = read_footer(file)?;
    let index = read_block(file, footer.index, "index")?;
    let mut budget = decode_budget(file.len());
    let mut out: Entries = Vec::new();
    let mut next_free = 0u64;
    for (_, handle) in block_entries_budgeted(index, "index", &mut budget)? {
        let mut pos = 0;
        let h = BlockHandle::decode(&handle, &mut pos)
            .map_err(|e| format!("index entry: bad block handle: {e}"))?;
        if h.offset < next_free {
            return Err(format!(
                "data block at {} overlaps or precedes the previous data block (ends at {next_free})",
                h.offset
            ));
        }
        let data = read_block(file, h, "data")?;
        // read_block checked offset + size + trailer against the file length.
        next_free = h.offset + h.size + BLOCK_TRAILER_LEN as u64;
        let entries = block_entries_budgeted(data, "data", &mut budget)?;
        if let (Some((last, _)), Some((first, _))) = (out.last(), entries.first()) {
            if first <= last {
                return Err(
                    "data blocks are out of order (keys not increasing: a duplicate key?)".into(),
                );
            }
        }
        out.extend(entries);
    }
    Ok(out)
}

/// Writing tables: the index of a rewritten bundle ([`crate::SavedModel::write_with_variables`]),
/// and tests, fuzz seeds and tools that craft (hostile) indexes with valid checksums.
pub mod build {
    use super::*;

    /// Appends a varint.
    pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// Block contents from raw entries `(shared, non_shared key bytes, value)`, one restart
    /// point at 0. No check is made: this is how broken blocks are crafted.
    pub fn raw_block(entries: &[(usize, &[u8], &[u8])]) -> Vec<u8> {
        let mut b = Vec::new();
        for (shared, tail, value) in entries {
            put_varint(&mut b, *shared as u64);
            put_varint(&mut b, tail.len() as u64);
            put_varint(&mut b, value.len() as u64);
            b.extend_from_slice(tail);
            b.extend_from_slice(value);
        }
        b.extend(0u32.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b
    }

    /// Block contents from full `(key, value)` pairs, prefix-compressed against the previous key.
    pub fn block(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut prev: &[u8] = &[];
        let mut raw = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let shared = prev.iter().zip(k).take_while(|(a, b)| a == b).count();
            raw.push((shared, &k[shared..], v.as_slice()));
            prev = k;
        }
        raw_block(&raw)
    }

    /// Appends block `contents` with its trailer (type 0, masked CRC32C); returns its handle.
    pub fn put_block(file: &mut Vec<u8>, contents: &[u8]) -> BlockHandle {
        let h = BlockHandle {
            offset: file.len() as u64,
            size: contents.len() as u64,
        };
        file.extend_from_slice(contents);
        file.push(0);
        let crc = mask_crc(crc32c::crc32c_append(crc32c::crc32c(contents), &[0]));
        file.extend(crc.to_le_bytes());
        h
    }

    fn put_handle(out: &mut Vec<u8>, h: BlockHandle) {
        put_varint(out, h.offset);
        put_varint(out, h.size);
    }

    /// A complete table from data block contents, each with the key its index entry carries
    /// (normally its last key). The index entries point at the blocks in order.
    pub fn table(blocks: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let mut file = Vec::new();
        let mut index = Vec::new();
        for (last_key, contents) in blocks {
            let h = put_block(&mut file, contents);
            let mut v = Vec::new();
            put_handle(&mut v, h);
            index.push((last_key.clone(), v));
        }
        table_with_index(file, &index)
    }

    /// Finishes `file` (data blocks already written) with an empty metaindex block, the index
    /// block from `index` (key, encoded handle) pairs and the footer.
    pub fn table_with_index(mut file: Vec<u8>, index: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
        let meta = put_block(&mut file, &raw_block(&[]));
        let idx = put_block(&mut file, &block(index));
        let mut footer = Vec::new();
        put_handle(&mut footer, meta);
        put_handle(&mut footer, idx);
        footer.resize(40, 0);
        footer.extend(((TABLE_MAGIC & 0xffff_ffff) as u32).to_le_bytes());
        footer.extend(((TABLE_MAGIC >> 32) as u32).to_le_bytes());
        file.extend(footer);
        file
    }

    /// Encodes a block handle (for hand-made index entries).
    pub fn handle_bytes(h: BlockHandle) -> Vec<u8> {
        let mut v = Vec::new();
        put_handle(&mut v, h);
        v
    }

    /// A table holding `pairs` (keys must be increasing), `per_block` entries per data block.
    pub fn table_from_pairs(pairs: &[(Vec<u8>, Vec<u8>)], per_block: usize) -> Vec<u8> {
        let blocks: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .chunks(per_block.max(1))
            .map(|c| (c[c.len() - 1].0.clone(), block(c)))
            .collect();
        table(&blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The complete `variables.index` of the tiny text-embedding export (spec 4.6).
    pub(crate) fn spec_example() -> Vec<u8> {
        let mut f = Vec::new();
        let mut data = Vec::new();
        data.extend([0, 0, 6]);
        data.extend([0x08, 0x01, 0x1a, 0x02, 0x08, 0x01]);
        data.extend([0, 0x1c, 0x0f]);
        data.extend(b"_CHECKPOINTABLE_OBJECT_GRAPH");
        data.extend([
            0x08, 0x07, 0x12, 0x00, 0x20, 0xe0, 0x01, 0x28, 0xeb, 0x04, 0x35, 0x5b, 0x5f, 0xa8,
            0x58,
        ]);
        data.extend([0, 0x25, 0x14]);
        data.extend(b"embeddings/.ATTRIBUTES/VARIABLE_VALUE");
        data.extend([
            0x08, 0x02, 0x12, 0x08, 0x12, 0x02, 0x08, 0x09, 0x12, 0x02, 0x08, 0x03, 0x28, 0xd8,
            0x01, 0x35, 0x58, 0x65, 0xba, 0xe2,
        ]);
        data.extend([0, 0x27, 0x0e]);
        data.extend(b"save_counter/.ATTRIBUTES/VARIABLE_VALUE");
        data.extend([
            0x08, 0x09, 0x12, 0x00, 0x20, 0xd8, 0x01, 0x28, 0x08, 0x35, 0x29, 0x03, 0x98, 0x07,
        ]);
        data.extend([0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(data.len(), 179);
        f.extend(&data);
        f.extend([0x00, 0x26, 0x14, 0x02, 0xeb]);
        f.extend([0, 0, 0, 0, 1, 0, 0, 0, 0x00, 0xc0, 0xf2, 0xa1, 0xb0]);
        f.extend([
            0x00, 0x01, 0x03, b't', 0x00, 0xb3, 0x01, 0, 0, 0, 0, 1, 0, 0, 0, 0x00, 0xf7, 0xa4,
            0x2f, 0xc4,
        ]);
        let mut footer = vec![0xb8, 0x01, 0x08, 0xc5, 0x01, 0x0f];
        footer.resize(40, 0);
        footer.extend([0x57, 0xfb, 0x80, 0x8b, 0x24, 0x75, 0x47, 0xdb]);
        f.extend(footer);
        assert_eq!(f.len(), 265);
        f
    }

    #[test]
    fn reads_the_spec_example_with_valid_crcs() {
        let f = spec_example();
        let entries = read_table(&f).unwrap();
        let keys: Vec<&[u8]> = entries.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(
            keys,
            vec![
                &b""[..],
                b"_CHECKPOINTABLE_OBJECT_GRAPH",
                b"embeddings/.ATTRIBUTES/VARIABLE_VALUE",
                b"save_counter/.ATTRIBUTES/VARIABLE_VALUE"
            ]
        );
        assert_eq!(entries[0].1, vec![0x08, 0x01, 0x1a, 0x02, 0x08, 0x01]);
    }

    #[test]
    fn mask_round_trips_and_matches_tsl() {
        for c in [0u32, 1, 0xdead_beef, u32::MAX] {
            assert_eq!(unmask_crc(mask_crc(c)), c);
        }
        // Mask(crc32c("")) as tsl computes it: crc32c("") = 0, so Mask = 0xa282ead8.
        assert_eq!(mask_crc(0), 0xa282_ead8);
    }

    #[test]
    fn every_single_byte_flip_is_an_error_or_different_table() {
        let f = spec_example();
        let good = read_table(&f).unwrap();
        for i in 0..f.len() {
            for bit in [0x01u8, 0x80] {
                let mut g = f.clone();
                g[i] ^= bit;
                // Padding bytes of the footer are not covered by any CRC; anything else must fail.
                if let Ok(t) = read_table(&g) {
                    assert_eq!(
                        t, good,
                        "flip at {i} gave a different table without an error"
                    );
                }
            }
        }
        for n in 0..f.len() {
            assert!(
                read_table(&f[..n]).is_err(),
                "truncation to {n} bytes was accepted"
            );
        }
    }

    #[test]
    fn snappy_block_is_rejected_clearly() {
        let mut f = spec_example();
        // Set the data block's type byte to 1 and recompute its CRC.
        f[179] = 1;
        let crc = mask_crc(crc32c::crc32c_append(crc32c::crc32c(&f[..179]), &[1]));
        f[180..184].copy_from_slice(&crc.to_le_bytes());
        let err = read_table(&f).unwrap_err();
        assert!(err.contains("Snappy"), "{err}");
    }

    fn pairs(keys: &[&[u8]]) -> Vec<(Vec<u8>, Vec<u8>)> {
        keys.iter().map(|k| (k.to_vec(), b"v".to_vec())).collect()
    }

    #[test]
    fn built_tables_round_trip() {
        let p = pairs(&[b"", b"a", b"ab", b"abc", b"b", b"ba", b"zz"]);
        for per_block in [1, 2, 3, 100] {
            let f = build::table_from_pairs(&p, per_block);
            assert_eq!(read_table(&f).unwrap(), p, "{per_block} per block");
        }
    }

    #[test]
    fn shared_prefix_blowup_is_refused_within_the_budget() {
        // One 64 KiB key, then 40,000 entries that each share all of it and add 2 bytes:
        // a ~300 KB table (valid CRCs) that would decode to ~2.6 GB of keys.
        let long = vec![b'k'; 64 << 10];
        let mut tails = Vec::new();
        for i in 0..40_000u32 {
            tails.push([(i >> 8) as u8, i as u8]);
        }
        let mut raw: Vec<(usize, &[u8], &[u8])> = vec![(0, &long, b"")];
        for t in &tails {
            raw.push((long.len(), t, b""));
        }
        let contents = build::raw_block(&raw);
        let f = build::table(&[(b"\xff".to_vec(), contents.clone())]);
        assert!(f.len() < 400_000, "{}", f.len());
        let err = read_table(&f).unwrap_err();
        assert!(err.contains("decoding budget"), "{err}");
        let err = block_entries(&contents, "data").unwrap_err();
        assert!(err.contains("decoding budget"), "{err}");
        // The same shape, small enough, decodes: the budget is not a blanket refusal.
        let short = vec![b'k'; 100];
        let mut raw: Vec<(usize, &[u8], &[u8])> = vec![(0, &short, b"")];
        for t in &tails[..1000] {
            raw.push((short.len(), t, b""));
        }
        let f = build::table(&[(b"\xff".to_vec(), build::raw_block(&raw))]);
        let t = read_table(&f).unwrap();
        assert_eq!(t.len(), 1001);
        assert_eq!(t[1000].0.len(), 102);
    }

    #[test]
    fn duplicate_or_unordered_keys_are_refused() {
        // Within a block: a duplicate key.
        let f = build::table(&[(b"b".to_vec(), build::block(&pairs(&[b"", b"a", b"a"])))]);
        let err = read_table(&f).unwrap_err();
        assert!(err.contains("not greater than the previous key"), "{err}");
        // Within a block: decreasing keys.
        let f = build::table(&[(b"b".to_vec(), build::block(&pairs(&[b"", b"b", b"a"])))]);
        assert!(read_table(&f).unwrap_err().contains("not greater"));
        // A key that is a prefix of the previous one is smaller.
        let f = build::table(&[(b"b".to_vec(), build::block(&pairs(&[b"ab", b"a"])))]);
        assert!(read_table(&f).unwrap_err().contains("not greater"));
        // Across blocks: the second block repeats the last key of the first.
        let f = build::table(&[
            (b"a".to_vec(), build::block(&pairs(&[b"", b"a"]))),
            (b"b".to_vec(), build::block(&pairs(&[b"a", b"b"]))),
        ]);
        assert!(read_table(&f).unwrap_err().contains("out of order"));
    }

    #[test]
    fn index_pointing_at_one_block_many_times_is_refused() {
        let mut file = Vec::new();
        let h = build::put_block(&mut file, &build::block(&pairs(&[b"", b"a"])));
        let index: Vec<(Vec<u8>, Vec<u8>)> = (0..1000u32)
            .map(|i| (i.to_be_bytes().to_vec(), build::handle_bytes(h)))
            .collect();
        let f = build::table_with_index(file, &index);
        let err = read_table(&f).unwrap_err();
        assert!(err.contains("overlaps"), "{err}");
    }
}
