//! The Mixed blocks, built and run from their [`BlockSpec`] of the layer table.

use super::layers::{BasicConv, Layout};
use super::table::{BlockKind, BlockSpec};
use super::InceptionV3Config;
use burn::module::Module;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor};

/// One Mixed block: up to four branches, each a list of convs in execution order.
#[derive(Module, Debug)]
pub struct Mixed {
    pub branch_0: Vec<BasicConv>,
    pub branch_1: Vec<BasicConv>,
    pub branch_2: Vec<BasicConv>,
    pub branch_3: Vec<BasicConv>,
    #[module(skip)]
    pub kind: BlockKind,
}

/// TF `avg_pool` 3x3, stride 1, SAME (padded cells not counted) in `layout`.
fn avg_pool_3x3_same(x: Tensor<4>, layout: Layout) -> Tensor<4> {
    pool(x, layout, 1, 1, false)
}

/// 3x3 max pool, stride 2, VALID, in `layout`.
pub(super) fn max_pool_3x3_s2(x: Tensor<4>, layout: Layout) -> Tensor<4> {
    pool(x, layout, 2, 0, true)
}

/// A 3x3 pool with `stride` and `pad` cells on every side (never counted): NHWC on the CPU
/// kernels ([`cpu_train::pool`]), NCHW through Burn's pools.
fn pool(x: Tensor<4>, layout: Layout, stride: usize, pad: usize, max: bool) -> Tensor<4> {
    if layout == Layout::Nhwc {
        let [n, h, w, c] = x.dims();
        let spec = cpu_kernels::TrainPool {
            n,
            h,
            w,
            c,
            kh: 3,
            kw: 3,
            stride: [stride, stride],
            pads: [pad; 4],
            max,
        };
        if spec.output_hw().is_some() {
            return Tensor::from_dispatch(cpu_train::pool(x.into_dispatch(), spec));
        }
    }
    layout.via_nchw(x, |x| {
        if max {
            max_pool2d(
                x,
                MaxPoolOptions {
                    kernel_size: [3, 3],
                    stride: [stride, stride],
                    padding: [(pad, pad), (pad, pad)],
                    dilation: [1, 1],
                    ceil_mode: false,
                },
            )
        } else {
            avg_pool2d(
                x,
                AvgPoolOptions {
                    kernel_size: [3, 3],
                    stride: [stride, stride],
                    padding: [(pad, pad), (pad, pad)],
                    count_include_pad: false,
                    ceil_mode: false,
                },
            )
        }
    })
}

impl Mixed {
    /// A freshly initialised block of the table for an input of `c_in` channels.
    pub(super) fn new(
        cfg: &InceptionV3Config,
        spec: &BlockSpec,
        c_in: usize,
        device: &Device,
    ) -> Self {
        let depth = |d: usize| cfg.depth(d);
        let branch = |b: usize| -> Vec<BasicConv> {
            spec.branches[b]
                .iter()
                .zip(spec.conv_inputs(b, c_in, &depth))
                .map(|(conv, c)| BasicConv::new(cfg, c, conv, device))
                .collect()
        };
        Mixed {
            branch_0: branch(0),
            branch_1: branch(1),
            branch_2: branch(2),
            branch_3: branch(3),
            kind: spec.kind,
        }
    }

    /// The branches in order.
    pub fn branches(&self) -> [&[BasicConv]; 4] {
        [
            &self.branch_0,
            &self.branch_1,
            &self.branch_2,
            &self.branch_3,
        ]
    }

    /// `x`: `[B, C_in, H, W]` -> `[B, C_out, H', W']` in `layout` (channels concatenated
    /// in branch order; the parallel ends of a branch in their order).
    pub fn forward(&self, x: Tensor<4>, layout: Layout) -> Tensor<4> {
        let mut outputs = Vec::with_capacity(6);
        for (b, convs) in self.branches().into_iter().enumerate() {
            if convs.is_empty() {
                if self.kind.max_pool_branch(b) {
                    outputs.push(max_pool_3x3_s2(x.clone(), layout));
                }
                continue;
            }
            if self.kind.pools_first(b) {
                if let [conv] = convs {
                    let pool = |t| avg_pool_3x3_same(t, layout);
                    outputs.push(conv.forward_after_pool(x.clone(), layout, pool));
                    continue;
                }
            }
            let input = if self.kind.pools_first(b) {
                avg_pool_3x3_same(x.clone(), layout)
            } else {
                x.clone()
            };
            let ends = self.kind.parallel_ends(b).min(convs.len());
            let (chain, ends) = convs.split_at(convs.len() - ends);
            let y = chain.iter().fold(input, |y, c| c.forward(y, layout));
            match ends {
                [last] => outputs.push(last.forward(y, layout)),
                _ => outputs.extend(ends.iter().map(|c| c.forward(y.clone(), layout))),
            }
        }
        Tensor::cat(outputs, layout.channels())
    }

    /// Folds every batch norm of the block into its convolution (inference only).
    pub(super) fn fuse(&mut self) {
        for list in [
            &mut self.branch_0,
            &mut self.branch_1,
            &mut self.branch_2,
            &mut self.branch_3,
        ] {
            list.iter_mut().for_each(BasicConv::fuse);
        }
    }
}
