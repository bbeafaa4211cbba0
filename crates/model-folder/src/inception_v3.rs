//! The layer table of TF-Slim Inception-v3 (`tf_slim.nets.inception_v3`): every layer in
//! execution order with its slim scope, nominal width, kernel, stride and padding, and the
//! parameter path it has in a model folder of kind `inception_v3`.
//!
//! This is the one description of the architecture. The Burn network (`models`) is built
//! from it, the CPU compiler and the inference fusion walk it, and both converter kinds
//! (`convert`'s `inception_v3` and Magenta's style predictor) map TensorFlow variables with
//! it. No Burn.
//!
//! Parameter paths mirror the TF scopes: `InceptionV3/Conv2d_1a_3x3/weights` is
//! `conv2d_1a_3x3.conv.weight`; inside a Mixed block the convolutions of a branch are a list
//! in execution order (`InceptionV3/Mixed_5c/Branch_1/Conv_1_0c_5x5/weights` is
//! `mixed_5c.branch_1.1.conv.weight`), so slim's irregular names live only in this table.

use serde::{Deserialize, Serialize};

/// The `kind` of an Inception-v3 model folder.
pub const KIND: &str = "inception_v3";

/// The scope every slim variable of the network sits under.
pub const SCOPE: &str = "InceptionV3";

/// The end points of `inception_v3_base`, in execution order, named as in slim.
#[allow(non_camel_case_types)]
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub enum EndPoint {
    Conv2d_1a_3x3,
    Conv2d_2a_3x3,
    Conv2d_2b_3x3,
    MaxPool_3a_3x3,
    Conv2d_3b_1x1,
    Conv2d_4a_3x3,
    MaxPool_5a_3x3,
    Mixed_5b,
    Mixed_5c,
    Mixed_5d,
    Mixed_6a,
    Mixed_6b,
    Mixed_6c,
    Mixed_6d,
    Mixed_6e,
    Mixed_7a,
    Mixed_7b,
    #[default]
    Mixed_7c,
}

/// How a convolution pads. Every SAME convolution of the network has stride 1 and odd
/// kernel sides, so SAME is a symmetric `(k - 1) / 2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    Valid,
    Same,
}

/// One slim `conv2d` (convolution without bias, batch norm, activation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvSpec {
    /// The slim scope inside its block or branch, e.g. `Conv2d_0b_5x5`.
    pub name: &'static str,
    /// Nominal output channels, before slim's `depth()`.
    pub width: usize,
    /// `[height, width]`.
    pub kernel: [usize; 2],
    pub stride: usize,
    pub padding: Padding,
}

/// A layer of the stem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StemLayer {
    Conv(ConvSpec),
    /// 3x3 max pool, stride 2, VALID.
    MaxPool,
}

/// The kinds of Mixed blocks: how the branches are wired (their convolutions are in the
/// table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Mixed_5b/5c/5d: 1x1 | 1x1,5x5 | 1x1,3x3,3x3 | avgpool,1x1.
    A,
    /// Mixed_6a: 3x3/2 | 1x1,3x3,3x3/2 | maxpool/2.
    ReductionA,
    /// Mixed_6b..6e: 1x1 | 1x1,1x7,7x1 | 1x1,7x1,1x7,7x1,1x7 | avgpool,1x1.
    C,
    /// Mixed_7a: 1x1,3x3/2 | 1x1,1x7,7x1,3x3/2 | maxpool/2.
    ReductionB,
    /// Mixed_7b/7c: 1x1 | 1x1,[1x3,3x1] | 1x1,3x3,[1x3,3x1] | avgpool,1x1.
    E,
}

impl BlockKind {
    /// Stride-2 blocks: their third branch is a 3x3 / 2 max pool of the block input (no
    /// convolution) and they have no fourth branch.
    pub fn is_reduction(self) -> bool {
        matches!(self, BlockKind::ReductionA | BlockKind::ReductionB)
    }

    /// Whether `branch` is the 3x3 / 2 max pool of the block input (no convolution; its output
    /// is the input's channels).
    pub fn max_pool_branch(self, branch: usize) -> bool {
        self.is_reduction() && branch == 2
    }

    /// How many convolutions at the end of `branch` read the same input in parallel and
    /// are concatenated (Mixed_7b/7c split their branches 1 and 2 into 1x3 and 3x1).
    pub fn parallel_ends(self, branch: usize) -> usize {
        if self == BlockKind::E && (branch == 1 || branch == 2) {
            2
        } else {
            1
        }
    }

    /// Whether `branch` starts with the 3x3 average pool (stride 1, SAME, padding not
    /// counted) before its convolution.
    pub fn pools_first(self, branch: usize) -> bool {
        branch == 3 && !self.is_reduction()
    }
}

/// One Mixed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSpec {
    pub end_point: EndPoint,
    pub kind: BlockKind,
    /// Per branch, its convolutions in execution order (their list index is the Burn
    /// parameter index). Empty for the max-pool branch and the missing fourth branch of
    /// the reduction blocks.
    pub branches: [&'static [ConvSpec]; 4],
}

const fn same(name: &'static str, width: usize, kh: usize, kw: usize) -> ConvSpec {
    ConvSpec {
        name,
        width,
        kernel: [kh, kw],
        stride: 1,
        padding: Padding::Same,
    }
}

const fn valid(name: &'static str, width: usize, k: usize, stride: usize) -> ConvSpec {
    ConvSpec {
        name,
        width,
        kernel: [k, k],
        stride,
        padding: Padding::Valid,
    }
}

/// The stem, in execution order.
pub const STEM: [(EndPoint, StemLayer); 7] = [
    (
        EndPoint::Conv2d_1a_3x3,
        StemLayer::Conv(valid("Conv2d_1a_3x3", 32, 3, 2)),
    ),
    (
        EndPoint::Conv2d_2a_3x3,
        StemLayer::Conv(valid("Conv2d_2a_3x3", 32, 3, 1)),
    ),
    (
        EndPoint::Conv2d_2b_3x3,
        StemLayer::Conv(same("Conv2d_2b_3x3", 64, 3, 3)),
    ),
    (EndPoint::MaxPool_3a_3x3, StemLayer::MaxPool),
    (
        EndPoint::Conv2d_3b_1x1,
        StemLayer::Conv(valid("Conv2d_3b_1x1", 80, 1, 1)),
    ),
    (
        EndPoint::Conv2d_4a_3x3,
        StemLayer::Conv(valid("Conv2d_4a_3x3", 192, 3, 1)),
    ),
    (EndPoint::MaxPool_5a_3x3, StemLayer::MaxPool),
];

const A_BRANCH_0: &[ConvSpec] = &[same("Conv2d_0a_1x1", 64, 1, 1)];
const A_BRANCH_2: &[ConvSpec] = &[
    same("Conv2d_0a_1x1", 64, 1, 1),
    same("Conv2d_0b_3x3", 96, 3, 3),
    same("Conv2d_0c_3x3", 96, 3, 3),
];
const C_BRANCH_0: &[ConvSpec] = &[same("Conv2d_0a_1x1", 192, 1, 1)];
const C_BRANCH_3: &[ConvSpec] = &[same("Conv2d_0b_1x1", 192, 1, 1)];
const E_BRANCH_0: &[ConvSpec] = &[same("Conv2d_0a_1x1", 320, 1, 1)];
const E_BRANCH_2: &[ConvSpec] = &[
    same("Conv2d_0a_1x1", 448, 1, 1),
    same("Conv2d_0b_3x3", 384, 3, 3),
    same("Conv2d_0c_1x3", 384, 1, 3),
    same("Conv2d_0d_3x1", 384, 3, 1),
];
const E_BRANCH_3: &[ConvSpec] = &[same("Conv2d_0b_1x1", 192, 1, 1)];

const fn block_a(
    end_point: EndPoint,
    b1: &'static [ConvSpec],
    b3: &'static [ConvSpec],
) -> BlockSpec {
    BlockSpec {
        end_point,
        kind: BlockKind::A,
        branches: [A_BRANCH_0, b1, A_BRANCH_2, b3],
    }
}

/// The Mixed blocks, in execution order. slim's irregular names: Mixed_5c Branch_1
/// `Conv2d_0b_1x1` / `Conv_1_0c_5x5`; Mixed_6a `Conv2d_1a_1x1` are 3x3 stride-2 convs;
/// Mixed_7b Branch_1 `Conv2d_0b_3x1` where Mixed_7c has `Conv2d_0c_3x1`.
#[rustfmt::skip]
pub const BLOCKS: [BlockSpec; 11] = [
    block_a(EndPoint::Mixed_5b,
        &[same("Conv2d_0a_1x1", 48, 1, 1), same("Conv2d_0b_5x5", 64, 5, 5)],
        &[same("Conv2d_0b_1x1", 32, 1, 1)]),
    block_a(EndPoint::Mixed_5c,
        &[same("Conv2d_0b_1x1", 48, 1, 1), same("Conv_1_0c_5x5", 64, 5, 5)],
        &[same("Conv2d_0b_1x1", 64, 1, 1)]),
    block_a(EndPoint::Mixed_5d,
        &[same("Conv2d_0a_1x1", 48, 1, 1), same("Conv2d_0b_5x5", 64, 5, 5)],
        &[same("Conv2d_0b_1x1", 64, 1, 1)]),
    BlockSpec { end_point: EndPoint::Mixed_6a, kind: BlockKind::ReductionA, branches: [
        &[valid("Conv2d_1a_1x1", 384, 3, 2)],
        &[same("Conv2d_0a_1x1", 64, 1, 1), same("Conv2d_0b_3x3", 96, 3, 3), valid("Conv2d_1a_1x1", 96, 3, 2)],
        &[], &[]] },
    block_c(EndPoint::Mixed_6b, &[
        same("Conv2d_0a_1x1", 128, 1, 1), same("Conv2d_0b_1x7", 128, 1, 7), same("Conv2d_0c_7x1", 192, 7, 1)], &[
        same("Conv2d_0a_1x1", 128, 1, 1), same("Conv2d_0b_7x1", 128, 7, 1), same("Conv2d_0c_1x7", 128, 1, 7),
        same("Conv2d_0d_7x1", 128, 7, 1), same("Conv2d_0e_1x7", 192, 1, 7)]),
    block_c(EndPoint::Mixed_6c, &[
        same("Conv2d_0a_1x1", 160, 1, 1), same("Conv2d_0b_1x7", 160, 1, 7), same("Conv2d_0c_7x1", 192, 7, 1)], &[
        same("Conv2d_0a_1x1", 160, 1, 1), same("Conv2d_0b_7x1", 160, 7, 1), same("Conv2d_0c_1x7", 160, 1, 7),
        same("Conv2d_0d_7x1", 160, 7, 1), same("Conv2d_0e_1x7", 192, 1, 7)]),
    block_c(EndPoint::Mixed_6d, &[
        same("Conv2d_0a_1x1", 160, 1, 1), same("Conv2d_0b_1x7", 160, 1, 7), same("Conv2d_0c_7x1", 192, 7, 1)], &[
        same("Conv2d_0a_1x1", 160, 1, 1), same("Conv2d_0b_7x1", 160, 7, 1), same("Conv2d_0c_1x7", 160, 1, 7),
        same("Conv2d_0d_7x1", 160, 7, 1), same("Conv2d_0e_1x7", 192, 1, 7)]),
    block_c(EndPoint::Mixed_6e, &[
        same("Conv2d_0a_1x1", 192, 1, 1), same("Conv2d_0b_1x7", 192, 1, 7), same("Conv2d_0c_7x1", 192, 7, 1)], &[
        same("Conv2d_0a_1x1", 192, 1, 1), same("Conv2d_0b_7x1", 192, 7, 1), same("Conv2d_0c_1x7", 192, 1, 7),
        same("Conv2d_0d_7x1", 192, 7, 1), same("Conv2d_0e_1x7", 192, 1, 7)]),
    BlockSpec { end_point: EndPoint::Mixed_7a, kind: BlockKind::ReductionB, branches: [
        &[same("Conv2d_0a_1x1", 192, 1, 1), valid("Conv2d_1a_3x3", 320, 3, 2)],
        &[same("Conv2d_0a_1x1", 192, 1, 1), same("Conv2d_0b_1x7", 192, 1, 7), same("Conv2d_0c_7x1", 192, 7, 1),
          valid("Conv2d_1a_3x3", 192, 3, 2)],
        &[], &[]] },
    block_e(EndPoint::Mixed_7b, &[
        same("Conv2d_0a_1x1", 384, 1, 1), same("Conv2d_0b_1x3", 384, 1, 3), same("Conv2d_0b_3x1", 384, 3, 1)]),
    block_e(EndPoint::Mixed_7c, &[
        same("Conv2d_0a_1x1", 384, 1, 1), same("Conv2d_0b_1x3", 384, 1, 3), same("Conv2d_0c_3x1", 384, 3, 1)]),
];

const fn block_c(
    end_point: EndPoint,
    b1: &'static [ConvSpec],
    b2: &'static [ConvSpec],
) -> BlockSpec {
    BlockSpec {
        end_point,
        kind: BlockKind::C,
        branches: [C_BRANCH_0, b1, b2, C_BRANCH_3],
    }
}

/// Mixed_7b/7c; `b1` differs in one slim name.
const fn block_e(end_point: EndPoint, b1: &'static [ConvSpec]) -> BlockSpec {
    BlockSpec {
        end_point,
        kind: BlockKind::E,
        branches: [E_BRANCH_0, b1, E_BRANCH_2, E_BRANCH_3],
    }
}

/// slim's `depth(d) = max(int(d * depth_multiplier), min_depth)`.
pub fn depth(d: usize, depth_multiplier: f64, min_depth: usize) -> usize {
    ((d as f64 * depth_multiplier) as usize).max(min_depth)
}

impl EndPoint {
    /// All end points in execution order.
    pub const ALL: [EndPoint; 18] = [
        EndPoint::Conv2d_1a_3x3,
        EndPoint::Conv2d_2a_3x3,
        EndPoint::Conv2d_2b_3x3,
        EndPoint::MaxPool_3a_3x3,
        EndPoint::Conv2d_3b_1x1,
        EndPoint::Conv2d_4a_3x3,
        EndPoint::MaxPool_5a_3x3,
        EndPoint::Mixed_5b,
        EndPoint::Mixed_5c,
        EndPoint::Mixed_5d,
        EndPoint::Mixed_6a,
        EndPoint::Mixed_6b,
        EndPoint::Mixed_6c,
        EndPoint::Mixed_6d,
        EndPoint::Mixed_6e,
        EndPoint::Mixed_7a,
        EndPoint::Mixed_7b,
        EndPoint::Mixed_7c,
    ];

    /// The slim name, e.g. `"Mixed_6e"`.
    pub fn name(self) -> &'static str {
        match self {
            EndPoint::Conv2d_1a_3x3 => "Conv2d_1a_3x3",
            EndPoint::Conv2d_2a_3x3 => "Conv2d_2a_3x3",
            EndPoint::Conv2d_2b_3x3 => "Conv2d_2b_3x3",
            EndPoint::MaxPool_3a_3x3 => "MaxPool_3a_3x3",
            EndPoint::Conv2d_3b_1x1 => "Conv2d_3b_1x1",
            EndPoint::Conv2d_4a_3x3 => "Conv2d_4a_3x3",
            EndPoint::MaxPool_5a_3x3 => "MaxPool_5a_3x3",
            EndPoint::Mixed_5b => "Mixed_5b",
            EndPoint::Mixed_5c => "Mixed_5c",
            EndPoint::Mixed_5d => "Mixed_5d",
            EndPoint::Mixed_6a => "Mixed_6a",
            EndPoint::Mixed_6b => "Mixed_6b",
            EndPoint::Mixed_6c => "Mixed_6c",
            EndPoint::Mixed_6d => "Mixed_6d",
            EndPoint::Mixed_6e => "Mixed_6e",
            EndPoint::Mixed_7a => "Mixed_7a",
            EndPoint::Mixed_7b => "Mixed_7b",
            EndPoint::Mixed_7c => "Mixed_7c",
        }
    }

    /// Parses a slim end point name.
    pub fn from_name(name: &str) -> Option<EndPoint> {
        EndPoint::ALL.iter().copied().find(|e| e.name() == name)
    }

    /// The stem layer of this end point (`None` for a Mixed block).
    pub fn stem_layer(self) -> Option<StemLayer> {
        STEM.iter().find(|(e, _)| *e == self).map(|(_, l)| *l)
    }

    /// The Mixed block of this end point (`None` for a stem layer).
    pub fn block(self) -> Option<&'static BlockSpec> {
        BLOCKS.iter().find(|b| b.end_point == self)
    }

    /// Output spatial size of this end point for an input of side `n`, or `None` when the
    /// input is too small for it (slim's chain of VALID and stride-2 layers).
    pub fn output_size(self, n: usize) -> Option<usize> {
        let valid = |n: usize, k: usize, s: usize| (n >= k).then(|| (n - k) / s + 1);
        let mut n = n;
        for e in EndPoint::ALL {
            n = match (e.stem_layer(), e.block()) {
                (Some(StemLayer::Conv(c)), _) => match c.padding {
                    Padding::Valid => valid(n, c.kernel[0], c.stride)?,
                    Padding::Same => n,
                },
                (Some(StemLayer::MaxPool), _) => valid(n, 3, 2)?,
                (None, Some(b)) if b.kind.is_reduction() => valid(n, 3, 2)?,
                _ => n,
            };
            if e == self {
                break;
            }
        }
        Some(n)
    }

    /// Input channels of this end point: the previous one's output, 3 for the first.
    pub fn input_channels(self, depth: &dyn Fn(usize) -> usize) -> usize {
        match EndPoint::ALL.iter().position(|&e| e == self) {
            Some(0) | None => 3,
            Some(i) => EndPoint::ALL[i - 1].channels(depth),
        }
    }

    /// Output channels of this end point for a width function `depth` (slim's `depth()`
    /// with the model's multiplier).
    pub fn channels(self, depth: &dyn Fn(usize) -> usize) -> usize {
        let mut c = 3;
        for e in EndPoint::ALL {
            c = match (e.stem_layer(), e.block()) {
                (Some(StemLayer::Conv(conv)), _) => depth(conv.width),
                (Some(StemLayer::MaxPool), _) => c,
                (None, Some(b)) => b.output_channels(c, depth),
                (None, None) => unreachable!("every end point is in the table"),
            };
            if e == self {
                break;
            }
        }
        c
    }
}

impl std::fmt::Display for EndPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl BlockSpec {
    /// Input channels of every convolution of `branch` for a block input of `c_in`
    /// channels (the parallel ends read the convolution before them).
    pub fn conv_inputs(
        &self,
        branch: usize,
        c_in: usize,
        depth: &dyn Fn(usize) -> usize,
    ) -> Vec<usize> {
        let convs = self.branches[branch];
        let ends = self.kind.parallel_ends(branch).min(convs.len());
        let chain = convs.len() - ends;
        let mut out = Vec::with_capacity(convs.len());
        let mut prev = c_in;
        for (i, c) in convs.iter().enumerate() {
            out.push(prev);
            if i < chain {
                prev = depth(c.width);
            }
        }
        out
    }

    /// Output channels of `branch` for a block input of `c_in` channels.
    pub fn branch_channels(
        &self,
        branch: usize,
        c_in: usize,
        depth: &dyn Fn(usize) -> usize,
    ) -> usize {
        let convs = self.branches[branch];
        if convs.is_empty() {
            // The max pool of a reduction block passes its input through; a missing fourth
            // branch adds nothing.
            return if self.kind.max_pool_branch(branch) {
                c_in
            } else {
                0
            };
        }
        let ends = self.kind.parallel_ends(branch).min(convs.len());
        convs[convs.len() - ends..]
            .iter()
            .map(|c| depth(c.width))
            .sum()
    }

    /// Output channels of the block (its branches concatenated) for an input of `c_in`.
    pub fn output_channels(&self, c_in: usize, depth: &dyn Fn(usize) -> usize) -> usize {
        (0..4).map(|b| self.branch_channels(b, c_in, depth)).sum()
    }
}

/// One convolution of the network in a model folder and in TensorFlow.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvEntry {
    /// The layer it belongs to.
    pub end_point: EndPoint,
    /// The slim scope under [`SCOPE`], e.g. `Mixed_5c/Branch_1/Conv_1_0c_5x5`.
    pub scope: String,
    /// The parameter path prefix in the folder, e.g. `mixed_5c.branch_1.1` (the
    /// convolution is `<path>.conv.weight`, its batch norm `<path>.bn.*`).
    pub path: String,
    pub spec: ConvSpec,
}

/// Every convolution of the network up to and including `last`, in execution order (94
/// up to `Mixed_7c`, 70 up to `Mixed_6e`).
pub fn convs(last: EndPoint) -> Vec<ConvEntry> {
    let mut out = Vec::new();
    for (e, layer) in STEM {
        if e > last {
            return out;
        }
        if let StemLayer::Conv(spec) = layer {
            out.push(ConvEntry {
                end_point: e,
                scope: spec.name.to_string(),
                path: spec.name.to_ascii_lowercase(),
                spec,
            });
        }
    }
    for block in BLOCKS.iter().take_while(|b| b.end_point <= last) {
        let scope = block.end_point.name();
        for (b, list) in block.branches.iter().enumerate() {
            for (i, spec) in list.iter().enumerate() {
                out.push(ConvEntry {
                    end_point: block.end_point,
                    scope: format!("{scope}/Branch_{b}/{}", spec.name),
                    path: format!("{}.branch_{b}.{i}", scope.to_ascii_lowercase()),
                    spec: *spec,
                });
            }
        }
    }
    out
}

/// Finds slim's `(depth_multiplier, min_depth)` that reproduces every `(nominal, actual)`
/// width, or `None`. Prefers round multipliers (1, 1/2, 1/4, 0.1, 1/16, 0.05, ...) in
/// increasing number of digits, and slim's default `min_depth` 16.
pub fn solve_width(pairs: &[(usize, usize)]) -> Option<(f64, usize)> {
    let smallest = pairs.iter().map(|p| p.1).min()?;
    let fits = |m: f64, md: usize| pairs.iter().all(|&(d, a)| depth(d, m, md) == a);
    let mut min_depths = vec![16usize.min(smallest), smallest];
    min_depths.dedup();
    for denom in [
        1u32, 2, 4, 8, 10, 16, 20, 32, 64, 100, 128, 256, 512, 1000, 1024, 2048, 4096, 10000,
    ] {
        for k in 1..=(8 * denom) {
            let m = f64::from(k) / f64::from(denom);
            for &md in &min_depths {
                if fits(m, md) {
                    return Some((m, md));
                }
            }
        }
    }
    // Otherwise the lower end of the feasible interval of the widths above the minimum:
    // `int(d * m) == a` holds for `m` in `[a / d, (a + 1) / d)`.
    let lo = pairs
        .iter()
        .filter(|p| p.1 > smallest)
        .map(|&(d, a)| a as f64 / d as f64)
        .fold(0.0, f64::max);
    min_depths
        .into_iter()
        .find(|&md| fits(lo, md))
        .map(|md| (lo, md))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_all_94_convs_with_slims_irregular_names() {
        let t = convs(EndPoint::Mixed_7c);
        assert_eq!(t.len(), 94);
        assert_eq!(convs(EndPoint::Mixed_6e).len(), 70);
        assert_eq!(convs(EndPoint::MaxPool_3a_3x3).len(), 3);
        let path = |s: &str| t.iter().find(|e| e.scope == s).map(|e| e.path.as_str());
        assert_eq!(
            path("Mixed_5c/Branch_1/Conv_1_0c_5x5"),
            Some("mixed_5c.branch_1.1")
        );
        assert_eq!(
            path("Mixed_5c/Branch_1/Conv2d_0b_1x1"),
            Some("mixed_5c.branch_1.0")
        );
        assert_eq!(
            path("Mixed_6a/Branch_1/Conv2d_1a_1x1"),
            Some("mixed_6a.branch_1.2")
        );
        assert_eq!(
            path("Mixed_7b/Branch_1/Conv2d_0b_3x1"),
            Some("mixed_7b.branch_1.2")
        );
        assert_eq!(
            path("Mixed_7c/Branch_1/Conv2d_0c_3x1"),
            Some("mixed_7c.branch_1.2")
        );
        assert_eq!(path("Mixed_7b/Branch_1/Conv2d_0c_3x1"), None);
        assert_eq!(
            path("Mixed_6e/Branch_2/Conv2d_0e_1x7"),
            Some("mixed_6e.branch_2.4")
        );
        assert_eq!(path("Conv2d_4a_3x3"), Some("conv2d_4a_3x3"));
        // Every kernel side is in the name (slim names say it, except the stride-2 `1a_1x1`).
        for e in &t {
            let [kh, kw] = e.spec.kernel;
            if !e.scope.ends_with("Mixed_6a/Branch_0/Conv2d_1a_1x1")
                && !e.scope.ends_with("Mixed_6a/Branch_1/Conv2d_1a_1x1")
            {
                assert!(e.spec.name.ends_with(&format!("{kh}x{kw}")), "{e:?}");
            }
        }
    }

    #[test]
    fn end_point_sizes_match_slim_at_299_and_75() {
        let s = |e: EndPoint| e.output_size(299).unwrap();
        assert_eq!(s(EndPoint::Conv2d_1a_3x3), 149);
        assert_eq!(s(EndPoint::Conv2d_2a_3x3), 147);
        assert_eq!(s(EndPoint::Conv2d_2b_3x3), 147);
        assert_eq!(s(EndPoint::MaxPool_3a_3x3), 73);
        assert_eq!(s(EndPoint::Conv2d_4a_3x3), 71);
        assert_eq!(s(EndPoint::MaxPool_5a_3x3), 35);
        assert_eq!(s(EndPoint::Mixed_5d), 35);
        assert_eq!(s(EndPoint::Mixed_6a), 17);
        assert_eq!(s(EndPoint::Mixed_6e), 17);
        assert_eq!(s(EndPoint::Mixed_7a), 8);
        assert_eq!(s(EndPoint::Mixed_7c), 8);
        assert_eq!(EndPoint::Mixed_7c.output_size(75), Some(1));
        assert_eq!(EndPoint::Mixed_7c.output_size(74), None);
    }

    #[test]
    fn channels_match_slim() {
        let d = |n: usize| depth(n, 1.0, 16);
        let ch = |e: EndPoint| e.channels(&d);
        assert_eq!(ch(EndPoint::Conv2d_2b_3x3), 64);
        assert_eq!(ch(EndPoint::MaxPool_5a_3x3), 192);
        assert_eq!(ch(EndPoint::Mixed_5b), 256);
        assert_eq!(ch(EndPoint::Mixed_5c), 288);
        assert_eq!(ch(EndPoint::Mixed_5d), 288);
        assert_eq!(ch(EndPoint::Mixed_6a), 768);
        assert_eq!(ch(EndPoint::Mixed_6e), 768);
        assert_eq!(ch(EndPoint::Mixed_7a), 1280);
        assert_eq!(ch(EndPoint::Mixed_7b), 2048);
        assert_eq!(ch(EndPoint::Mixed_7c), 2048);
        let small = |n: usize| depth(n, 0.1, 8);
        assert_eq!(small(32), 8);
        assert_eq!(small(192), 19);
        assert_eq!(small(448), 44);
        // Mixed_7c at 0.1 / 8: 32 + 2 * (38 + 38) + 19.
        assert_eq!(EndPoint::Mixed_7c.channels(&small), 32 + 4 * 38 + 19);
    }

    #[test]
    fn parallel_ends_read_the_conv_before_them() {
        let d = |n: usize| depth(n, 1.0, 16);
        let b = EndPoint::Mixed_7b.block().unwrap();
        assert_eq!(b.conv_inputs(1, 1280, &d), vec![1280, 384, 384]);
        assert_eq!(b.conv_inputs(2, 1280, &d), vec![1280, 448, 384, 384]);
        let a = EndPoint::Mixed_6a.block().unwrap();
        assert_eq!(a.conv_inputs(1, 288, &d), vec![288, 64, 96]);
        assert_eq!(a.branch_channels(2, 288, &d), 288);
    }

    #[test]
    fn width_is_solved_from_shapes() {
        let pairs = |last: EndPoint, m: f64, md: usize| -> Vec<(usize, usize)> {
            convs(last)
                .iter()
                .map(|e| (e.spec.width, depth(e.spec.width, m, md)))
                .collect()
        };
        for last in [EndPoint::Mixed_7c, EndPoint::Mixed_6e] {
            assert_eq!(solve_width(&pairs(last, 1.0, 16)), Some((1.0, 16)));
            assert_eq!(solve_width(&pairs(last, 0.5, 16)), Some((0.5, 16)));
            assert_eq!(solve_width(&pairs(last, 0.25, 8)), Some((0.25, 8)));
            assert_eq!(solve_width(&pairs(last, 0.0625, 4)), Some((0.0625, 4)));
            assert_eq!(
                solve_width(&pairs(last, 0.05, 4)).map(|(m, _)| m),
                Some(0.05)
            );
            for (m, md) in [(0.1, 8), (0.37, 16), (0.0123, 2)] {
                let (m2, md2) = solve_width(&pairs(last, m, md)).unwrap();
                assert_eq!(pairs(last, m2, md2), pairs(last, m, md), "{m} {md}");
            }
        }
        // Widths no multiplier gives.
        assert_eq!(solve_width(&[(32, 32), (64, 20)]), None);
    }
}
