//! Shared by the fuzz targets (included with `#[path]`/`mod`).
#![allow(dead_code)]

use std::path::PathBuf;

/// A fresh folder under the system temporary folder, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "tfhub-fuzz-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("temp folder");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Splits `data` into `n` parts, each prefixed by a little-endian u32 length (the last part
/// takes the rest). Short or inconsistent inputs give empty parts.
pub fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(n);
    let mut rest = data;
    for _ in 0..n.saturating_sub(1) {
        if rest.len() < 4 {
            out.push(&rest[..0]);
            continue;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let len = len.min(rest.len() - 4);
        out.push(&rest[4..4 + len]);
        rest = &rest[4 + len..];
    }
    out.push(rest);
    out
}

/// Recomputes the CRC trailers of an SSTable's index block and of the data blocks it points
/// at, so that mutated tables get past the checksums to the decoding behind them (what a
/// hostile file with valid checksums reaches). Does nothing to bytes that are not a table.
pub fn fix_sstable_crcs(file: &mut [u8]) {
    use savedmodel::sstable::{block_entries, read_footer, read_varint64, BlockHandle};
    let Ok(footer) = read_footer(file) else {
        return;
    };
    fix_block_crc(file, footer.index);
    let Some(index) = block_contents(file, footer.index) else {
        return;
    };
    let Ok(entries) = block_entries(index, "index") else {
        return;
    };
    for (_, v) in entries.iter().take(4096) {
        let mut pos = 0;
        let (Ok(offset), Ok(size)) = (read_varint64(v, &mut pos), read_varint64(v, &mut pos))
        else {
            continue;
        };
        fix_block_crc(file, BlockHandle { offset, size });
    }
}

fn block_contents(file: &[u8], h: savedmodel::sstable::BlockHandle) -> Option<&[u8]> {
    let start = usize::try_from(h.offset).ok()?;
    let size = usize::try_from(h.size).ok()?;
    let end = start.checked_add(size)?.checked_add(5)?;
    (end <= file.len()).then(|| &file[start..start + size])
}

fn fix_block_crc(file: &mut [u8], h: savedmodel::sstable::BlockHandle) {
    if block_contents(file, h).is_none() {
        return;
    }
    let (start, size) = (h.offset as usize, h.size as usize);
    let kind = file[start + size];
    let crc = crc32c::crc32c_append(crc32c::crc32c(&file[start..start + size]), &[kind]);
    let masked = savedmodel::sstable::mask_crc(crc);
    file[start + size + 1..start + size + 5].copy_from_slice(&masked.to_le_bytes());
}

/// Reads `data` as a TF Lite file and decodes every tensor, as the converters do; `None` when
/// it is not one.
pub fn read_tflite(data: &[u8]) -> Option<tflite::Model> {
    let model = tflite::Model::from_bytes(data.to_vec(), "fuzz.tflite").ok()?;
    for s in 0..model.subgraphs.len() {
        for t in 0..model.subgraphs[s].tensors.len() {
            let _ = model.tensor_f32(s, t);
        }
    }
    Some(model)
}
