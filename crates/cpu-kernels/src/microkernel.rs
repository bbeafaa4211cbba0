//! The register-blocked inner kernels: `C[MR x NR] = act(sum_k A[r][k] * B[k][j] + bias[j])`.
//!
//! A is *indirect*: for each of `taps` kernel taps the kernel gets `MR` row pointers, each
//! to `kc` contiguous floats (one input pixel's channels, or a zero vector for padding).
//! B is one prepacked weight panel, `taps * kc` rows of `NR` floats (zero-padded columns).
//! This is the "indirect GEMM" of XNNPACK: no im2col copy, and padding, strides, channel
//! slices, reflection and nearest upsampling are all just pointer choices.

/// Which instruction set the kernels use. Chosen once at run time by [`Isa::detect`];
/// every variant can be forced (tests run all that the machine supports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// 12 x 32 tile in zmm registers (x86-64 with AVX-512F).
    Avx512,
    /// 6 x 16 tile in ymm registers (x86-64 with AVX2 and FMA).
    Avx2,
    /// 4 x 8 tile in plain Rust (any target).
    Portable,
}

impl Isa {
    /// The best kernel set this CPU runs.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// Whether this CPU can run the kernels of `self`.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every kernel set this CPU runs, best first.
    pub fn all_supported() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2, Isa::Portable]
            .into_iter()
            .filter(|i| i.is_supported())
            .collect()
    }

    /// Rows of the register tile (output pixels per kernel call).
    pub fn mr(self) -> usize {
        match self {
            Isa::Avx512 => 12,
            Isa::Avx2 => 6,
            Isa::Portable => 4,
        }
    }

    /// Columns of the register tile (output channels per weight panel).
    pub fn nr(self) -> usize {
        match self {
            Isa::Avx512 => 32,
            Isa::Avx2 => 16,
            Isa::Portable => 8,
        }
    }
}

/// Activation applied in the kernel's epilogue (after the bias).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Act {
    #[default]
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `x * relu6(x + 3) / 6` (MobileNetV3's hard-swish).
    HardSwish,
    /// `x * sigmoid(x)` (swish / SiLU, EfficientNet); the vector kernels use a
    /// polynomial `exp` with a relative error of about 2e-7.
    Swish,
    /// `1 / (1 + exp(-x))` (EfficientNet's squeeze-excitation gate).
    Sigmoid,
    /// `relu6(x + 3) / 6` (MobileNetV3's squeeze-excitation gate).
    HardSigmoid,
    /// Exact GELU, `0.5 x erfc(-x / sqrt 2)` (`tf.nn.gelu(approximate=False)`, transformer
    /// MLPs); `erfc` by a rational approximation with a relative error of about 2e-7
    /// ([`erfc_nonneg`]).
    Gelu,
    /// GELU's tanh form, `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`
    /// (`tf.nn.gelu(approximate=True)`), computed as `x / (1 + exp(-2 u))`.
    GeluTanh,
}

/// `sqrt(2 / pi)`, as TensorFlow's tanh GELU rounds it.
pub const GELU_TANH_K: f32 = 0.797_884_6;
/// The cubic term's coefficient of the tanh GELU.
pub const GELU_TANH_C: f32 = 0.044_715;
/// Coefficients of `erfc(a) = t exp(-a^2 + P(t))`, `t = 1 / (1 + a / 2)`, `a >= 0`, highest
/// degree first (Numerical Recipes' `erfcc`, fractional error below 1.2e-7).
#[allow(clippy::excessive_precision)] // as published
pub(crate) const ERFC_P: [f32; 10] = [
    0.170_872_77,
    -0.822_152_23,
    1.488_515_87,
    -1.135_203_98,
    0.278_868_07,
    -0.186_288_06,
    0.096_784_18,
    0.374_091_96,
    1.000_023_68,
    -1.265_512_23,
];

/// `erfc(a)` for `a >= 0`, by [`ERFC_P`] in f32 (what the vector kernels compute, lane by
/// lane).
#[inline(always)]
pub(crate) fn erfc_nonneg(a: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * a);
    let mut p = ERFC_P[0];
    for &c in &ERFC_P[1..] {
        p = p * t + c;
    }
    t * (p - a * a).exp()
}

/// Exact GELU from `erfc(|x| / sqrt 2)`: `x - x r / 2` for `x >= 0`, `x r / 2` below (no
/// cancellation on either side).
#[inline(always)]
fn gelu_scalar(x: f32) -> f32 {
    let r = erfc_nonneg(x.abs() * std::f32::consts::FRAC_1_SQRT_2);
    let (pos, neg) = (x.max(0.0), x.min(0.0));
    pos - 0.5 * pos * r + 0.5 * neg * r
}

/// `row[j] = act(row[j] * scale[j] + shift[j])`, the multiply and the add rounded apart:
/// the per-channel scale and shift of [`Tile::scale`] for an output pixel a Winograd output
/// transform has written (bias added, no activation yet), each value as the tile kernels
/// compute it in their epilogue. `scale` and `shift` hold at least `row.len()` values.
pub(crate) fn channel_affine_row(row: &mut [f32], scale: &[f32], shift: &[f32], act: Act) {
    let n = row.len();
    let (scale, shift) = (&scale[..n], &shift[..n]);
    let clamp = match act {
        Act::Relu => Some((0.0, f32::INFINITY)),
        Act::Relu6 => Some((0.0, 6.0)),
        _ => None,
    };
    match (act, clamp) {
        (_, Some((lo, hi))) => crate::simd::vectorised(
            #[inline(always)]
            || {
                for j in 0..n {
                    row[j] = (row[j] * scale[j] + shift[j]).max(lo).min(hi);
                }
            },
        ),
        (Act::Identity, None) => crate::simd::vectorised(
            #[inline(always)]
            || {
                for j in 0..n {
                    row[j] = row[j] * scale[j] + shift[j];
                }
            },
        ),
        (act, None) => {
            for j in 0..n {
                row[j] = act_scalar(row[j] * scale[j] + shift[j], act);
            }
        }
    }
}

/// A per-channel scale and shift after the bias, then the activation, for the output pixels
/// a Winograd output transform wrote with the bias alone ([`crate::Conv2d::with_channel_affine`]).
#[derive(Debug, Clone)]
pub(crate) struct ChannelAffine {
    scale: Vec<f32>,
    shift: Vec<f32>,
    act: Act,
}

impl ChannelAffine {
    pub(crate) fn new(scale: &[f32], shift: &[f32], act: Act) -> Self {
        assert_eq!(scale.len(), shift.len(), "one scale and shift per channel");
        ChannelAffine {
            scale: scale.to_vec(),
            shift: shift.to_vec(),
            act,
        }
    }

    /// [`channel_affine_row`] on each of the output pixels `dst` (null: outside the
    /// output), each `scale.len()` channels.
    ///
    /// # Safety
    /// Every non-null pointer must be valid for that many floats.
    pub(crate) unsafe fn finish(&self, dst: &[*mut f32]) {
        for &p in dst.iter().filter(|p| !p.is_null()) {
            let row = std::slice::from_raw_parts_mut(p, self.scale.len());
            channel_affine_row(row, &self.scale, &self.shift, self.act);
        }
    }
}

/// Arguments of one kernel call (see the module docs).
pub(crate) struct Tile {
    pub taps: usize,
    pub kc: usize,
    /// `taps * MR` row pointers, tap-major.
    pub a: *const *const f32,
    /// `taps * kc` rows of `NR` weights, `ldb` floats apart (`NR` when packed).
    pub b: *const f32,
    pub ldb: usize,
    /// `NR` biases.
    pub bias: *const f32,
    /// A per-column scale and shift after the bias and residual, before the activation
    /// (null: none): `(v * scale[j]) + shift[j]`, a multiply then an add (two roundings,
    /// as an inference-mode batch norm of the sums computes it). `NR` floats each.
    pub scale: *const f32,
    pub shift: *const f32,
    /// Output: row `r` starts at `c + r * ldc`.
    pub c: *mut f32,
    pub ldc: usize,
    /// Valid rows (`<= MR`) and columns (`<= NR`) to store.
    pub rows: usize,
    pub cols: usize,
    pub act: Act,
    /// Store full 64-byte-aligned rows with non-temporal stores (outputs far larger than
    /// the caches: no read-for-ownership of lines that are wholly overwritten). The
    /// caller fences (`sfence`) before the output is read.
    pub stream: bool,
    /// A residual added before the activation (null: none): row `r` at `res + r * ldr`,
    /// `cols` floats.
    pub res: *const f32,
    pub ldr: usize,
    /// 0: `a` holds row pointers, as above. Otherwise A is read by columns (`taps` is 1):
    /// `a[0]` points at the tile's first row's first value, row `r`'s value `k` lies at
    /// `a[0] + k * a_stride + r` (the tile's `MR` rows are consecutive columns of a
    /// row-major matrix `a_stride` wide, `MR` of them readable at each `k`), so a product
    /// `X^T Y` reads `X` where it lies instead of a transposed copy.
    pub a_stride: usize,
    /// Floats skipped at the start of every row pointer (row-pointer mode): a block of
    /// the reduction, channels `a_off .. a_off + kc` of each tap, when it is split.
    pub a_off: usize,
    /// Start from the `rows x cols` sums already in `c` (stored by a call with `partial`)
    /// instead of zeros: the reduction goes on where that call stopped, each sum the same
    /// as in one call (the same additions in the same order).
    pub resume: bool,
    /// Store the raw sums (no bias, residual or activation, never streamed) for a later
    /// call with `resume`.
    pub partial: bool,
}

/// Runs one tile with the kernels of `isa`.
///
/// # Safety
/// `isa` must be supported by the CPU; every pointer in `t` must be valid for the reads
/// and writes described on [`Tile`].
#[inline]
pub(crate) unsafe fn run(isa: Isa, t: &Tile) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86::tile_avx512(t),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => x86::tile_avx2(t),
        _ => tile_portable(t),
    }
}

/// Orders this thread's non-temporal stores before its later stores (call after the
/// last tile stored with `stream`, before the output is handed on).
#[inline]
pub(crate) fn store_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` has no preconditions (SSE, part of x86-64).
    unsafe {
        std::arch::x86_64::_mm_sfence()
    };
}

/// The activation on one value.
#[inline(always)]
pub(crate) fn act_scalar(v: f32, act: Act) -> f32 {
    match act {
        Act::Identity => v,
        Act::Relu => v.max(0.0),
        Act::Relu6 => v.clamp(0.0, 6.0),
        Act::HardSwish => v * (v + 3.0).clamp(0.0, 6.0) * (1.0 / 6.0),
        Act::Swish => v / (1.0 + (-v).exp()),
        Act::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        Act::HardSigmoid => (v + 3.0).clamp(0.0, 6.0) * (1.0 / 6.0),
        Act::Gelu => gelu_scalar(v),
        Act::GeluTanh => {
            let u = GELU_TANH_K * (v + GELU_TANH_C * (v * v * v));
            v / (1.0 + (-2.0 * u).exp())
        }
    }
}

unsafe fn tile_portable(t: &Tile) {
    const MR: usize = 4;
    const NR: usize = 8;
    let mut acc = [[0f32; NR]; MR];
    if t.resume {
        for (r, row) in acc.iter_mut().enumerate().take(t.rows) {
            for (j, v) in row.iter_mut().enumerate().take(t.cols) {
                *v = *t.c.add(r * t.ldc + j);
            }
        }
    }
    let mut b = t.b;
    for tap in 0..t.taps {
        let a = t.a.add(tap * MR);
        let rows: [*const f32; MR] =
            [*a, *a.add(1), *a.add(2), *a.add(3)].map(|p| p.wrapping_add(t.a_off));
        for k in 0..t.kc {
            let bk = std::slice::from_raw_parts(b, NR);
            for r in 0..MR {
                let av = if t.a_stride == 0 {
                    *rows[r].add(k)
                } else {
                    *rows[0].add(k * t.a_stride + r)
                };
                for j in 0..NR {
                    acc[r][j] += av * bk[j];
                }
            }
            b = b.add(t.ldb);
        }
    }
    let bias = std::slice::from_raw_parts(t.bias, NR);
    for (r, row) in acc.iter().enumerate().take(t.rows) {
        let c = t.c.add(r * t.ldc);
        for j in 0..t.cols {
            if t.partial {
                *c.add(j) = row[j];
                continue;
            }
            let mut v = row[j] + bias[j];
            if !t.res.is_null() {
                v += *t.res.add(r * t.ldr + j);
            }
            if !t.scale.is_null() {
                v = v * *t.scale.add(j) + *t.shift.add(j);
            }
            *c.add(j) = act_scalar(v, t.act);
        }
    }
}

/// Arguments of one *dot* kernel call, for convolutions with at most [`DOT_OUTS`] output
/// channels (a GEMM tile would waste most of its columns): each output is a dot product
/// of the row's `taps * kc` inputs with one weight row.
pub(crate) struct DotTile {
    pub taps: usize,
    pub kc: usize,
    /// `taps * stride` row pointers, tap-major; rows `0 .. rows` are used.
    pub a: *const *const f32,
    pub stride: usize,
    pub rows: usize,
    /// `DOT_OUTS` weight rows of `taps * kc` floats (zero rows beyond `cols`).
    pub w: *const f32,
    /// `DOT_OUTS` biases.
    pub bias: *const f32,
    pub c: *mut f32,
    pub ldc: usize,
    pub cols: usize,
    pub act: Act,
}

/// Output channels the dot kernels handle.
pub(crate) const DOT_OUTS: usize = 4;

/// Runs one dot tile.
///
/// # Safety
/// As [`run`], for the pointers of [`DotTile`].
#[inline]
pub(crate) unsafe fn run_dot(isa: Isa, t: &DotTile) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => x86::dot_avx512(t),
        _ => dot_portable(t),
    }
}

unsafe fn dot_portable(t: &DotTile) {
    let k = t.taps * t.kc;
    for r in 0..t.rows {
        let mut acc = [0f32; DOT_OUTS];
        for tap in 0..t.taps {
            let x = std::slice::from_raw_parts(*t.a.add(tap * t.stride + r), t.kc);
            for (o, a) in acc.iter_mut().enumerate().take(t.cols) {
                let w = std::slice::from_raw_parts(t.w.add(o * k + tap * t.kc), t.kc);
                *a += x.iter().zip(w).map(|(x, w)| x * w).sum::<f32>();
            }
        }
        for (o, &a) in acc.iter().enumerate().take(t.cols) {
            *t.c.add(r * t.ldc + o) = act_scalar(a + *t.bias.add(o), t.act);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Tile;
    use std::arch::x86_64::*;

    /// One register tile: accumulators and row pointers are named variables (not arrays)
    /// so that they live in registers for the whole reduction.
    macro_rules! tile {
        ($t:ident, $mr:expr, $nr:expr, $zero:ident, $load:ident, $bcast:ident, $fma:ident,
         $store:ident, $raw:ident, $resume:ident, $($r:literal => $p:ident $c0:ident $c1:ident),*) => {{
            $( let mut $c0 = $zero(); let mut $c1 = $zero(); )*
            if $t.resume {
                $( if $r < $t.rows { ($c0, $c1) = $resume!($r); } )*
            }
            let mut b = $t.b;
            if $t.a_stride == 0 {
                for tap in 0..$t.taps {
                    let a = $t.a.add(tap * $mr);
                    $( let $p = (*a.add($r)).wrapping_add($t.a_off); )*
                    for k in 0..$t.kc {
                        let b0 = $load(b);
                        let b1 = $load(b.add($nr / 2));
                        $(
                            let av = $bcast($p.add(k));
                            $c0 = $fma(av, b0, $c0);
                            $c1 = $fma(av, b1, $c1);
                        )*
                        b = b.add($t.ldb);
                    }
                }
            } else {
                // By columns: the tile's rows are consecutive values of each row of A.
                let mut q = *$t.a;
                for _ in 0..$t.kc {
                    let b0 = $load(b);
                    let b1 = $load(b.add($nr / 2));
                    $(
                        let av = $bcast(q.add($r));
                        $c0 = $fma(av, b0, $c0);
                        $c1 = $fma(av, b1, $c1);
                    )*
                    b = b.add($t.ldb);
                    q = q.add($t.a_stride);
                }
            }
            if $t.partial {
                $( if $r < $t.rows { $raw!($r, $c0, $c1); } )*
            } else {
                $( if $r < $t.rows { $store!($r, $c0, $c1); } )*
            }
        }};
    }

    /// [`tile!`] for a panel with at most `NR / 2` valid columns (the last panel of an
    /// output channel count such as 48 or 80 on AVX-512, 40 on AVX2): only the first half
    /// of each weight row is read and multiplied; the second half is stored as zeros under
    /// an empty mask (nothing written).
    macro_rules! tile_half {
        ($t:ident, $mr:expr, $zero:ident, $load:ident, $bcast:ident, $fma:ident,
         $store:ident, $raw:ident, $resume:ident, $($r:literal => $p:ident $c0:ident),*) => {{
            $( let mut $c0 = $zero(); )*
            if $t.resume {
                $( if $r < $t.rows { $c0 = $resume!($r).0; } )*
            }
            let mut b = $t.b;
            if $t.a_stride == 0 {
                for tap in 0..$t.taps {
                    let a = $t.a.add(tap * $mr);
                    $( let $p = (*a.add($r)).wrapping_add($t.a_off); )*
                    for k in 0..$t.kc {
                        let b0 = $load(b);
                        $(
                            $c0 = $fma($bcast($p.add(k)), b0, $c0);
                        )*
                        b = b.add($t.ldb);
                    }
                }
            } else {
                let mut q = *$t.a;
                for _ in 0..$t.kc {
                    let b0 = $load(b);
                    $(
                        $c0 = $fma($bcast(q.add($r)), b0, $c0);
                    )*
                    b = b.add($t.ldb);
                    q = q.add($t.a_stride);
                }
            }
            if $t.partial {
                $( if $r < $t.rows { $raw!($r, $c0, $zero()); } )*
            } else {
                $( if $r < $t.rows { $store!($r, $c0, $zero()); } )*
            }
        }};
    }

    #[inline(always)]
    unsafe fn bcast512(p: *const f32) -> __m512 {
        _mm512_set1_ps(*p)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile_avx512(t: &Tile) {
        prefetch_residual(t);
        let bias0 = _mm512_loadu_ps(t.bias);
        let bias1 = _mm512_loadu_ps(t.bias.add(16));
        let mask = |n: usize| -> __mmask16 {
            if n >= 16 {
                0xffff
            } else {
                ((1u32 << n) - 1) as u16
            }
        };
        let m0 = mask(t.cols);
        let m1 = mask(t.cols.saturating_sub(16));
        let act = t.act;
        let stream = t.stream && t.cols == 32;
        // A macro, not a closure: a closure call per row spilled all 24 accumulators.
        macro_rules! store {
            ($r:expr, $v0:expr, $v1:expr) => {{
                let (r, v0, v1): (usize, __m512, __m512) = ($r, $v0, $v1);
                let c = t.c.add(r * t.ldc);
                let (v0, v1) = (_mm512_add_ps(v0, bias0), _mm512_add_ps(v1, bias1));
                let (v0, v1) = if t.res.is_null() {
                    (v0, v1)
                } else {
                    let res = t.res.add(r * t.ldr);
                    (
                        _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, res)),
                        _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, res.add(16))),
                    )
                };
                let (v0, v1) = if t.scale.is_null() {
                    (v0, v1)
                } else {
                    (
                        _mm512_add_ps(
                            _mm512_mul_ps(v0, _mm512_loadu_ps(t.scale)),
                            _mm512_loadu_ps(t.shift),
                        ),
                        _mm512_add_ps(
                            _mm512_mul_ps(v1, _mm512_loadu_ps(t.scale.add(16))),
                            _mm512_loadu_ps(t.shift.add(16)),
                        ),
                    )
                };
                let f = |v: __m512| crate::simd::act512(v, act);
                if stream && (c as usize).is_multiple_of(64) {
                    _mm512_stream_ps(c, f(v0));
                    _mm512_stream_ps(c.add(16), f(v1));
                } else {
                    _mm512_mask_storeu_ps(c, m0, f(v0));
                    _mm512_mask_storeu_ps(c.add(16), m1, f(v1));
                }
            }};
        }
        // A partial call's raw sums of row `r`, and their reading back by the next call
        // (zeros past `cols`).
        macro_rules! raw {
            ($r:expr, $v0:expr, $v1:expr) => {{
                let c = t.c.add($r * t.ldc);
                _mm512_mask_storeu_ps(c, m0, $v0);
                _mm512_mask_storeu_ps(c.add(16), m1, $v1);
            }};
        }
        macro_rules! resume {
            ($r:expr) => {{
                let c = t.c.add($r * t.ldc);
                (
                    _mm512_maskz_loadu_ps(m0, c),
                    _mm512_maskz_loadu_ps(m1, c.add(16)),
                )
            }};
        }
        if t.cols <= 16 {
            tile_half!(t, 12, _mm512_setzero_ps, _mm512_loadu_ps, bcast512, _mm512_fmadd_ps,
                store, raw, resume, 0 => p0 c00, 1 => p1 c10, 2 => p2 c20, 3 => p3 c30, 4 => p4 c40,
                5 => p5 c50, 6 => p6 c60, 7 => p7 c70, 8 => p8 c80, 9 => p9 c90, 10 => p10 ca0,
                11 => p11 cb0);
            return;
        }
        tile!(t, 12, 32, _mm512_setzero_ps, _mm512_loadu_ps, bcast512, _mm512_fmadd_ps, store, raw, resume,
            0 => p0 c00 c01, 1 => p1 c10 c11, 2 => p2 c20 c21, 3 => p3 c30 c31,
            4 => p4 c40 c41, 5 => p5 c50 c51, 6 => p6 c60 c61, 7 => p7 c70 c71,
            8 => p8 c80 c81, 9 => p9 c90 c91, 10 => p10 ca0 ca1, 11 => p11 cb0 cb1);
    }

    /// Asks for the tile's residual rows (two cache lines each: 32 floats) before the
    /// reduction, so that they are in L1 when its sums are added to them at the end. The
    /// filter gradient adds every 256-pixel chunk's product to a running sum of a few MB
    /// (Inception's 3x3 288 -> 384: 4 MB), whose rows otherwise came from memory while the
    /// tile waited.
    #[inline(always)]
    unsafe fn prefetch_residual(t: &Tile) {
        if t.res.is_null() {
            return;
        }
        for r in 0..t.rows {
            let p = t.res.add(r * t.ldr) as *const i8;
            _mm_prefetch::<_MM_HINT_T0>(p);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
        }
    }

    #[inline(always)]
    unsafe fn bcast256(p: *const f32) -> __m256 {
        _mm256_broadcast_ss(&*p)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_avx2(t: &Tile) {
        prefetch_residual(t);
        let bias0 = _mm256_loadu_ps(t.bias);
        let bias1 = _mm256_loadu_ps(t.bias.add(8));
        let mask = |n: usize| -> __m256i {
            let n = n.min(8) as i32;
            _mm256_setr_epi32(
                -((0 < n) as i32),
                -((1 < n) as i32),
                -((2 < n) as i32),
                -((3 < n) as i32),
                -((4 < n) as i32),
                -((5 < n) as i32),
                -((6 < n) as i32),
                -((7 < n) as i32),
            )
        };
        let m0 = mask(t.cols);
        let m1 = mask(t.cols.saturating_sub(8));
        let act = t.act;
        // A macro, not a closure: a closure call per row spilled all 24 accumulators.
        macro_rules! store {
            ($r:expr, $v0:expr, $v1:expr) => {{
                let (r, v0, v1): (usize, __m256, __m256) = ($r, $v0, $v1);
                let c = t.c.add(r * t.ldc);
                let (v0, v1) = (_mm256_add_ps(v0, bias0), _mm256_add_ps(v1, bias1));
                let (v0, v1) = if t.res.is_null() {
                    (v0, v1)
                } else {
                    let res = t.res.add(r * t.ldr);
                    (
                        _mm256_add_ps(v0, _mm256_maskload_ps(res, m0)),
                        _mm256_add_ps(v1, _mm256_maskload_ps(res.add(8), m1)),
                    )
                };
                let (v0, v1) = if t.scale.is_null() {
                    (v0, v1)
                } else {
                    (
                        _mm256_add_ps(
                            _mm256_mul_ps(v0, _mm256_loadu_ps(t.scale)),
                            _mm256_loadu_ps(t.shift),
                        ),
                        _mm256_add_ps(
                            _mm256_mul_ps(v1, _mm256_loadu_ps(t.scale.add(8))),
                            _mm256_loadu_ps(t.shift.add(8)),
                        ),
                    )
                };
                let f = |v: __m256| crate::simd::act256(v, act);
                _mm256_maskstore_ps(c, m0, f(v0));
                _mm256_maskstore_ps(c.add(8), m1, f(v1));
            }};
        }
        // A partial call's raw sums of row `r`, and their reading back by the next call
        // (zeros past `cols`).
        macro_rules! raw {
            ($r:expr, $v0:expr, $v1:expr) => {{
                let c = t.c.add($r * t.ldc);
                _mm256_maskstore_ps(c, m0, $v0);
                _mm256_maskstore_ps(c.add(8), m1, $v1);
            }};
        }
        macro_rules! resume {
            ($r:expr) => {{
                let c = t.c.add($r * t.ldc);
                (_mm256_maskload_ps(c, m0), _mm256_maskload_ps(c.add(8), m1))
            }};
        }
        if t.cols <= 8 {
            tile_half!(t, 6, _mm256_setzero_ps, _mm256_loadu_ps, bcast256, _mm256_fmadd_ps,
                store, raw, resume, 0 => p0 c00, 1 => p1 c10, 2 => p2 c20, 3 => p3 c30, 4 => p4 c40,
                5 => p5 c50);
            return;
        }
        tile!(t, 6, 16, _mm256_setzero_ps, _mm256_loadu_ps, bcast256, _mm256_fmadd_ps, store, raw, resume,
            0 => p0 c00 c01, 1 => p1 c10 c11, 2 => p2 c20 c21, 3 => p3 c30 c31,
            4 => p4 c40 c41, 5 => p5 c50 c51);
    }

    /// 4 rows x 4 outputs of 16-lane partial dot products, reduced at the end.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dot_avx512(t: &super::DotTile) {
        let k = t.taps * t.kc;
        let mut r0 = 0;
        while r0 < t.rows {
            let nrows = (t.rows - r0).min(4);
            macro_rules! accs { ($($c:ident)*) => { $( let mut $c = _mm512_setzero_ps(); )* } }
            accs!(a00 a01 a02 a03 a10 a11 a12 a13 a20 a21 a22 a23 a30 a31 a32 a33);
            for tap in 0..t.taps {
                let a = t.a.add(tap * t.stride + r0);
                // Rows past `nrows` repeat row 0 (computed, not stored).
                let p0 = *a;
                let p1 = if nrows > 1 { *a.add(1) } else { p0 };
                let p2 = if nrows > 2 { *a.add(2) } else { p0 };
                let p3 = if nrows > 3 { *a.add(3) } else { p0 };
                let w = t.w.add(tap * t.kc);
                let mut c = 0;
                while c < t.kc {
                    let m: __mmask16 = if t.kc - c >= 16 {
                        0xffff
                    } else {
                        ((1u32 << (t.kc - c)) - 1) as u16
                    };
                    let x0 = _mm512_maskz_loadu_ps(m, p0.add(c));
                    let x1 = _mm512_maskz_loadu_ps(m, p1.add(c));
                    let x2 = _mm512_maskz_loadu_ps(m, p2.add(c));
                    let x3 = _mm512_maskz_loadu_ps(m, p3.add(c));
                    macro_rules! out {
                        ($o:expr, $c0:ident $c1:ident $c2:ident $c3:ident) => {
                            let wv = _mm512_maskz_loadu_ps(m, w.add($o * k + c));
                            $c0 = _mm512_fmadd_ps(x0, wv, $c0);
                            $c1 = _mm512_fmadd_ps(x1, wv, $c1);
                            $c2 = _mm512_fmadd_ps(x2, wv, $c2);
                            $c3 = _mm512_fmadd_ps(x3, wv, $c3);
                        };
                    }
                    out!(0, a00 a10 a20 a30);
                    out!(1, a01 a11 a21 a31);
                    out!(2, a02 a12 a22 a32);
                    out!(3, a03 a13 a23 a33);
                    c += 16;
                }
            }
            let rows = [
                [a00, a01, a02, a03],
                [a10, a11, a12, a13],
                [a20, a21, a22, a23],
                [a30, a31, a32, a33],
            ];
            for (i, row) in rows.iter().enumerate().take(nrows) {
                let c = t.c.add((r0 + i) * t.ldc);
                for (o, v) in row.iter().enumerate().take(t.cols) {
                    *c.add(o) = super::act_scalar(_mm512_reduce_add_ps(*v) + *t.bias.add(o), t.act);
                }
            }
            r0 += 4;
        }
    }
}
