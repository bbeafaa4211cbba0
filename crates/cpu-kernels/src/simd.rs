//! Vectors of f32 lanes for the channel-parallel kernels (depthwise convolution) and the
//! activations of every kernel's store, on AVX-512 (16 lanes), AVX2 (8) and portable
//! Rust (8). The trait's methods are `#[inline(always)]` and only meant to be inlined
//! into functions compiled with the matching `#[target_feature]`.

use crate::microkernel::{act_scalar, Act};

/// One vector kind: loads (full or masked to the first `n` lanes), stores, FMA and the
/// activations.
pub(crate) trait Simd {
    const LANES: usize;
    type V: Copy;
    type M: Copy;
    unsafe fn mask(n: usize) -> Self::M;
    unsafe fn load(p: *const f32) -> Self::V;
    /// Lanes beyond the mask read as 0 and are not touched in memory.
    unsafe fn load_m(p: *const f32, m: Self::M) -> Self::V;
    unsafe fn store(p: *mut f32, v: Self::V);
    unsafe fn store_m(p: *mut f32, v: Self::V, m: Self::M);
    /// `a * b + c`.
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn splat(v: f32) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn act(v: Self::V, act: Act) -> Self::V;
}

/// Plain Rust, 8 lanes (the compiler vectorises what it can).
pub(crate) struct Portable;

impl Simd for Portable {
    const LANES: usize = 8;
    type V = [f32; 8];
    type M = usize;
    #[inline(always)]
    unsafe fn mask(n: usize) -> usize {
        n.min(8)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> [f32; 8] {
        std::ptr::read_unaligned(p as *const [f32; 8])
    }
    #[inline(always)]
    unsafe fn load_m(p: *const f32, m: usize) -> [f32; 8] {
        let mut v = [0f32; 8];
        std::ptr::copy_nonoverlapping(p, v.as_mut_ptr(), m);
        v
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: [f32; 8]) {
        std::ptr::write_unaligned(p as *mut [f32; 8], v)
    }
    #[inline(always)]
    unsafe fn store_m(p: *mut f32, v: [f32; 8], m: usize) {
        std::ptr::copy_nonoverlapping(v.as_ptr(), p, m);
    }
    #[inline(always)]
    unsafe fn fma(a: [f32; 8], b: [f32; 8], c: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> [f32; 8] {
        [v; 8]
    }
    #[inline(always)]
    unsafe fn add(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    unsafe fn sub(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|i| a[i] - b[i])
    }
    #[inline(always)]
    unsafe fn act(v: [f32; 8], act: Act) -> [f32; 8] {
        match act {
            Act::Identity => v,
            _ => v.map(|x| act_scalar(x, act)),
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{act256, act512, exp512, Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Act, Simd};
    use crate::microkernel::{ERFC_P, GELU_TANH_C, GELU_TANH_K};
    use std::arch::x86_64::*;

    // Cephes' expf: x = n ln2 + r, |r| <= ln2 / 2, exp(r) by a degree-6 polynomial
    // (relative error ~2e-7), 2^n by the exponent bits. Inputs are clamped so that 2^n
    // stays a normal number (exp saturates at ~1.2e-38 and ~2.2e38).
    const EXP_LO: f32 = -87.3;
    const EXP_HI: f32 = 88.3;
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ];

    /// Generates `exp` and the activation for one vector width.
    macro_rules! activations {
        ($exp:ident, $act:ident, $v:ty, $vi:ty, $set1:ident, $min:ident, $max:ident,
         $add:ident, $sub:ident, $mul:ident, $div:ident, $fma:ident, $fnma:ident,
         $cvt:ident, $cvtback:ident, $addi:ident, $set1i:ident, $slli:ident, $cast:ident,
         $zero:ident, $rcp:ident, $recip:ident) => {
            /// `1 / d` from the hardware estimate and one Newton step (about 1 ulp; a
            /// division costs 10-20 cycles per vector, this 3 operations).
            #[inline(always)]
            unsafe fn $recip(d: $v) -> $v {
                let r = $rcp(d);
                $fma(r, $fnma(d, r, $set1(1.0)), r)
            }

            #[inline(always)]
            pub(crate) unsafe fn $exp(x: $v) -> $v {
                let x = $min($max(x, $set1(EXP_LO)), $set1(EXP_HI));
                let n: $vi = $cvt($mul(x, $set1(LOG2E)));
                let nf = $cvtback(n);
                let r = $fnma(nf, $set1(LN2_HI), x);
                let r = $fnma(nf, $set1(LN2_LO), r);
                let mut y = $set1(P[0]);
                for &c in &P[1..] {
                    y = $fma(y, r, $set1(c));
                }
                let y = $fma(y, $mul(r, r), $add(r, $set1(1.0)));
                let scale = $cast($slli::<23>($addi(n, $set1i(127))));
                $mul(y, scale)
            }

            /// The activation on every lane (see [`Act`]).
            #[inline(always)]
            pub(crate) unsafe fn $act(v: $v, act: Act) -> $v {
                let zero = $zero();
                match act {
                    Act::Identity => v,
                    Act::Relu => $max(v, zero),
                    Act::Relu6 => $min($max(v, zero), $set1(6.0)),
                    Act::HardSwish => {
                        let r6 = $min($max($add(v, $set1(3.0)), zero), $set1(6.0));
                        $mul(v, $mul(r6, $set1(1.0 / 6.0)))
                    }
                    Act::Swish => $mul(v, $recip($add($set1(1.0), $exp($sub(zero, v))))),
                    Act::Sigmoid => $recip($add($set1(1.0), $exp($sub(zero, v)))),
                    Act::HardSigmoid => {
                        let r6 = $min($max($add(v, $set1(3.0)), zero), $set1(6.0));
                        $mul(r6, $set1(1.0 / 6.0))
                    }
                    Act::Gelu => {
                        // As `microkernel::gelu_scalar`, lane by lane.
                        let a = $mul(
                            $max(v, $sub(zero, v)),
                            $set1(std::f32::consts::FRAC_1_SQRT_2),
                        );
                        let t = $recip($fma(a, $set1(0.5), $set1(1.0)));
                        let mut p = $set1(ERFC_P[0]);
                        for &c in &ERFC_P[1..] {
                            p = $fma(p, t, $set1(c));
                        }
                        let r = $mul(t, $exp($fnma(a, a, p)));
                        let half_r = $mul(r, $set1(0.5));
                        let (pos, neg) = ($max(v, zero), $min(v, zero));
                        $fma(neg, half_r, $fnma(pos, half_r, pos))
                    }
                    Act::GeluTanh => {
                        let v3 = $mul($mul(v, v), v);
                        let u = $mul($set1(GELU_TANH_K), $fma($set1(GELU_TANH_C), v3, v));
                        $mul(v, $recip($add($set1(1.0), $exp($mul(u, $set1(-2.0))))))
                    }
                }
            }
        };
    }

    activations!(
        exp512,
        act512,
        __m512,
        __m512i,
        _mm512_set1_ps,
        _mm512_min_ps,
        _mm512_max_ps,
        _mm512_add_ps,
        _mm512_sub_ps,
        _mm512_mul_ps,
        _mm512_div_ps,
        _mm512_fmadd_ps,
        _mm512_fnmadd_ps,
        _mm512_cvtps_epi32,
        _mm512_cvtepi32_ps,
        _mm512_add_epi32,
        _mm512_set1_epi32,
        _mm512_slli_epi32,
        _mm512_castsi512_ps,
        _mm512_setzero_ps,
        _mm512_rcp14_ps,
        recip512
    );
    activations!(
        exp256,
        act256,
        __m256,
        __m256i,
        _mm256_set1_ps,
        _mm256_min_ps,
        _mm256_max_ps,
        _mm256_add_ps,
        _mm256_sub_ps,
        _mm256_mul_ps,
        _mm256_div_ps,
        _mm256_fmadd_ps,
        _mm256_fnmadd_ps,
        _mm256_cvtps_epi32,
        _mm256_cvtepi32_ps,
        _mm256_add_epi32,
        _mm256_set1_epi32,
        _mm256_slli_epi32,
        _mm256_castsi256_ps,
        _mm256_setzero_ps,
        _mm256_rcp_ps,
        recip256
    );

    /// zmm registers (AVX-512F).
    pub(crate) struct Avx512;

    impl Simd for Avx512 {
        const LANES: usize = 16;
        type V = __m512;
        type M = __mmask16;
        #[inline(always)]
        unsafe fn mask(n: usize) -> __mmask16 {
            if n >= 16 {
                0xffff
            } else {
                ((1u32 << n) - 1) as u16
            }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load_m(p: *const f32, m: __mmask16) -> __m512 {
            _mm512_maskz_loadu_ps(m, p)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn store_m(p: *mut f32, v: __m512, m: __mmask16) {
            _mm512_mask_storeu_ps(p, m, v)
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m512 {
            _mm512_set1_ps(v)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sub(a: __m512, b: __m512) -> __m512 {
            _mm512_sub_ps(a, b)
        }
        #[inline(always)]
        unsafe fn act(v: __m512, act: Act) -> __m512 {
            act512(v, act)
        }
    }

    /// ymm registers (AVX2 + FMA).
    pub(crate) struct Avx2;

    impl Simd for Avx2 {
        const LANES: usize = 8;
        type V = __m256;
        type M = __m256i;
        #[inline(always)]
        unsafe fn mask(n: usize) -> __m256i {
            let n = n.min(8) as i32;
            _mm256_cmpgt_epi32(
                _mm256_set1_epi32(n),
                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
            )
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m256 {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load_m(p: *const f32, m: __m256i) -> __m256 {
            _mm256_maskload_ps(p, m)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m256) {
            _mm256_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn store_m(p: *mut f32, v: __m256, m: __m256i) {
            _mm256_maskstore_ps(p, m, v)
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> __m256 {
            _mm256_set1_ps(v)
        }
        #[inline(always)]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn sub(a: __m256, b: __m256) -> __m256 {
            _mm256_sub_ps(a, b)
        }
        #[inline(always)]
        unsafe fn act(v: __m256, act: Act) -> __m256 {
            act256(v, act)
        }
    }
}

/// Runs `f` compiled for the widest vectors this CPU has (AVX-512F, else AVX2, else the
/// build's baseline, SSE2 on x86-64): the plain loops of the training passes that wrap
/// themselves in it (batch norms, pools, Keras' Adam, the Winograd filter gradients' final
/// transform) are vectorised by the compiler, which without a target feature uses 4-lane
/// SSE2 and was the bottleneck of those passes rather than memory (the batch norm's
/// gradient at ~5 GB/s on one core). FMA is not enabled: nothing here should use it.
///
/// `f` and what it calls must be inlined into the wrapper for its loops to be compiled with
/// the wider vectors: keep it a closure over `#[inline(always)]` row functions. The values
/// are the same bits on every path: each element is computed by the same operations in the
/// same order (no reassociation, no contraction into FMAs: Rust does neither on its own).
#[inline(always)]
pub(crate) fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { wide::avx512(f) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (checked just above).
            return unsafe { wide::avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
mod wide {
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
}
