//! Weight storage aligned to cache lines.

/// Zero-initialised `f32` storage whose first element is 64-byte aligned, so that the
/// kernels' weight panel loads never straddle cache lines. Cloning keeps the alignment.
pub(crate) struct AlignedBuf {
    buf: Vec<f32>,
    start: usize,
    len: usize,
}

/// Floats of slack a buffer needs for a 64-byte aligned start somewhere in its first line.
pub(crate) const SLACK: usize = 16;

/// The index of the first 64-byte aligned float of `buf` (below [`SLACK`]; at most its
/// length).
fn aligned_start(buf: &[f32]) -> usize {
    ((buf.as_ptr() as usize).wrapping_neg() % 64 / 4).min(buf.len())
}

/// The part of `buf` from its first 64-byte aligned float (a scratch buffer [`SLACK`]
/// floats longer than what it must hold).
pub(crate) fn aligned_mut(buf: &mut [f32]) -> &mut [f32] {
    let start = aligned_start(buf);
    &mut buf[start..]
}

impl AlignedBuf {
    /// Zeroed on the thread pool when large: the training step packs every filter on the
    /// main thread on every call.
    pub(crate) fn zeros(len: usize) -> AlignedBuf {
        let buf = crate::ops::zeroed(len + SLACK);
        let start = aligned_start(&buf);
        AlignedBuf { buf, start, len }
    }

    pub(crate) fn as_slice(&self) -> &[f32] {
        &self.buf[self.start..self.start + self.len]
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

impl Clone for AlignedBuf {
    fn clone(&self) -> AlignedBuf {
        let mut b = AlignedBuf::zeros(self.len);
        b.as_mut_slice().copy_from_slice(self.as_slice());
        b
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} floats)", self.len)
    }
}
