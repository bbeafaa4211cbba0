//! Row-major matrix transposition for the training kernels (the filter gradient transposes
//! one operand of every chunk's product): 8x8 blocks through AVX registers (unpack,
//! shuffle, lane permute), the edges element by element; bands of destination rows in
//! parallel when the matrix is large.

use crate::microkernel::Isa;
use rayon::prelude::*;

/// Destination rows (source columns) per band: one 8x8 block high.
const BAND: usize = 8;
/// Matrices of at least this many elements are transposed in parallel.
const PARALLEL_TRANSPOSE: usize = 1 << 16;

/// `dst[c * rows + r] = src[r * cols + c]` (`src` is `rows x cols`, row-major).
pub(crate) fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    assert!(src.len() == rows * cols && dst.len() == rows * cols);
    if rows == 0 || cols == 0 {
        return;
    }
    // Destination rows c0 .. c0 + width (source columns), all source rows.
    let band = |(b, dst): (usize, &mut [f32])| {
        let c0 = b * BAND;
        let width = dst.len() / rows;
        // SAFETY: the source rows `cols` apart hold columns c0 .. c0 + width (inside `src`,
        // whose length was checked); the band's `width` destination rows of `rows` floats
        // are `dst`.
        unsafe {
            transpose_block(
                src.as_ptr().add(c0),
                cols,
                dst.as_mut_ptr(),
                rows,
                rows,
                width,
            )
        };
    };
    if rows * cols >= PARALLEL_TRANSPOSE {
        dst.par_chunks_mut(BAND * rows).enumerate().for_each(band);
    } else {
        dst.chunks_mut(BAND * rows).enumerate().for_each(band);
    }
}

/// `dst[c * ldd + r] = src[r * lds + c]` for `r < rows`, `c < cols`, one thread: 8x8
/// blocks through AVX registers where the CPU has AVX, the edges element by element.
///
/// # Safety
/// `src` must be readable at every `r * lds + c` and `dst` writable at every `c * ldd + r`,
/// written by no one else during the call.
pub(crate) unsafe fn transpose_block(
    src: *const f32,
    lds: usize,
    dst: *mut f32,
    ldd: usize,
    rows: usize,
    cols: usize,
) {
    let simd = cfg!(target_arch = "x86_64") && Isa::detect() != Isa::Portable;
    for c0 in (0..cols).step_by(BAND) {
        let width = BAND.min(cols - c0);
        let mut r0 = 0;
        if simd && width == BAND {
            while r0 + 8 <= rows {
                // SAFETY: AVX is there (Isa::detect found AVX2 or AVX-512); the block reads
                // rows r0 .. r0 + 8 at columns c0 .. c0 + 8 and writes columns r0 .. r0 + 8
                // of destination rows c0 .. c0 + 8, all inside the caller's ranges.
                #[cfg(target_arch = "x86_64")]
                block8_avx(src.add(r0 * lds + c0), lds, dst.add(c0 * ldd + r0), ldd);
                r0 += 8;
            }
        }
        for r in r0..rows {
            for c in c0..c0 + width {
                *dst.add(c * ldd + r) = *src.add(r * lds + c);
            }
        }
    }
}

/// Transposes the 8x8 block at `src` (rows `lds` apart) to `dst` (rows `ldd` apart).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn block8_avx(src: *const f32, lds: usize, dst: *mut f32, ldd: usize) {
    use std::arch::x86_64::*;
    let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(src.add(i * lds)));
    // Pairs of rows interleaved, then pairs of pairs, then the 128-bit halves exchanged.
    let t0 = _mm256_unpacklo_ps(r[0], r[1]);
    let t1 = _mm256_unpackhi_ps(r[0], r[1]);
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
    let out = [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ];
    for (i, v) in out.iter().enumerate() {
        _mm256_storeu_ps(dst.add(i * ldd), *v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_blocks_and_edges() {
        // Full 8x8 blocks, partial bands and rows, and sizes over the parallel threshold.
        for (rows, cols) in [(1, 1), (8, 8), (13, 8), (8, 21), (37, 45), (300, 260)] {
            let src: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let mut dst = vec![f32::NAN; rows * cols];
            transpose_into(&src, rows, cols, &mut dst);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        dst[c * rows + r],
                        src[r * cols + c],
                        "{rows}x{cols} ({r}, {c})"
                    );
                }
            }
        }
    }
}
