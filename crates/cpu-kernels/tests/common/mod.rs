//! What the kernel tests share: deterministic inputs and poisoned buffers. The test
//! binaries install `cpu_kernels::CachingAllocator`, so a freed buffer of the same size comes
//! back as it was left and a poisoned one shows any element a kernel fails to write.

/// Frees a NaN-filled buffer of `len` floats, which the next allocation of that size reuses
/// (the caching allocator from 1 MiB; glibc's bins below).
#[allow(dead_code)]
pub fn poison(len: usize) {
    drop(std::hint::black_box(vec![f32::NAN; len]));
}

/// Deterministic values in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}
