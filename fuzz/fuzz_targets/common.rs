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
