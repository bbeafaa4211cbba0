//! Magenta's style transfer network and Inception-v3 style predictor compiled for CPU
//! inference (see [`crate::cpu`]).
//!
//! The transformer runs NHWC throughout; reflection padding and the nearest-neighbour
//! upsampling of the expand convs are folded into the convolutions' input addressing
//! (nothing padded or upsampled is materialised), contract batch norms are folded into
//! the weights. The 9x9 convs with 3 input or output channels run on the same indirect GEMM
//! as the others (no im2col copy); the one with 3 outputs takes the kernels' dot-product
//! path (at most `DOT_OUTS` outputs and a long reduction).

use super::inception_v3::InceptionV3Cpu;
use super::{values, HwioConv, Isa, Nhwc};
use crate::stylization::inception_predictor::InceptionStylePredictor;
use crate::stylization::transformer::{NormConv, Transformer};
use burn::nn::Linear;
use cpu_kernels::{ops, Act, Conv2d, Padding};

/// A dense layer `y = x W + b` (`W` `[in, out]`, as Burn and Keras store it).
#[derive(Debug, Clone)]
struct Dense {
    w: Vec<f32>,
    b: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl Dense {
    fn from_burn(l: &Linear) -> Dense {
        let [inputs, outputs] = l.weight.dims();
        Dense {
            w: values(l.weight.val()),
            b: l.bias
                .as_ref()
                .map(|b| values(b.val()))
                .unwrap_or_else(|| vec![0.0; outputs]),
            inputs,
            outputs,
        }
    }

    /// `x` `[rows, inputs]` -> `[rows, outputs]`, accumulated in f64.
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let rows = x.len() / self.inputs;
        let mut out = Vec::with_capacity(rows * self.outputs);
        for r in 0..rows {
            let xr = &x[r * self.inputs..(r + 1) * self.inputs];
            for o in 0..self.outputs {
                let mut acc = self.b[o] as f64;
                for (i, &v) in xr.iter().enumerate() {
                    acc += v as f64 * self.w[i * self.outputs + o] as f64;
                }
                out.push(acc as f32);
            }
        }
        out
    }
}

/// A reflect-padded convolution followed by conditional instance norm.
#[derive(Debug)]
struct NormConvCpu {
    conv: Conv2d,
    beta: Dense,
    gamma: Dense,
}

impl NormConvCpu {
    fn new(n: &NormConv, upsample: usize, isa: Isa) -> NormConvCpu {
        let mut c = HwioConv::from_burn(&n.conv, None, Act::Identity);
        c.geometry = c
            .geometry
            .padding(Padding::Reflect(n.pad))
            .upsample(upsample);
        NormConvCpu {
            conv: c.compile(isa),
            beta: Dense::from_burn(&n.beta),
            gamma: Dense::from_burn(&n.gamma),
        }
    }

    /// conv, then `act(norm(x) * gamma(style) + beta(style))`; `style` is `[B, 100]`.
    fn forward(&self, x: &Nhwc, style: &[f32], eps: f32, act: Act) -> Nhwc {
        let mut y = self.conv.forward(x.view());
        let gamma = self.gamma.forward(style);
        let beta = self.beta.forward(style);
        ops::instance_norm(&mut y, &gamma, &beta, eps, act);
        y
    }
}

/// [`Transformer`] ready for CPU inference.
#[derive(Debug)]
pub struct TransformerCpu {
    contract: Vec<Conv2d>,
    residual: Vec<(NormConvCpu, NormConvCpu)>,
    expand: Vec<NormConvCpu>,
    eps: f32,
    bottleneck: usize,
}

impl TransformerCpu {
    /// Compiles `t` for the best kernels of this CPU.
    pub fn new(t: &Transformer) -> TransformerCpu {
        Self::with_isa(t, Isa::detect())
    }

    /// Like [`TransformerCpu::new`] for a given kernel set.
    pub fn with_isa(t: &Transformer, isa: Isa) -> TransformerCpu {
        let contract = t
            .contract
            .iter()
            .map(|c| {
                let affine = c.bn.as_ref().map(|bn| {
                    let gamma = values(bn.gamma.val());
                    let beta = values(bn.beta.val());
                    let mean = values(bn.running_mean.value_sync());
                    let var = values(bn.running_var.value_sync());
                    let scale: Vec<f32> = gamma
                        .iter()
                        .zip(&var)
                        .map(|(g, v)| g / (v + bn.epsilon as f32).sqrt())
                        .collect();
                    let shift = beta
                        .iter()
                        .zip(&mean)
                        .zip(&scale)
                        .map(|((b, m), s)| b - m * s)
                        .collect();
                    (scale, shift)
                });
                let mut h = HwioConv::from_burn(&c.conv, affine, Act::Relu);
                h.geometry = h.geometry.padding(Padding::Reflect(c.pad));
                h.compile(isa)
            })
            .collect();
        let residual = t
            .residual
            .iter()
            .map(|r| {
                (
                    NormConvCpu::new(&r.conv1, 1, isa),
                    NormConvCpu::new(&r.conv2, 1, isa),
                )
            })
            .collect();
        let n = t.expand.len();
        let expand = t
            .expand
            .iter()
            .enumerate()
            .map(|(i, e)| NormConvCpu::new(e, if i + 1 < n { 2 } else { 1 }, isa))
            .collect();
        let bottleneck = t
            .residual
            .first()
            .map_or(100, |r| r.conv1.beta.weight.dims()[0]);
        TransformerCpu {
            contract,
            residual,
            expand,
            eps: t.style_norm_epsilon as f32,
            bottleneck,
        }
    }

    /// Length of the style bottleneck.
    pub fn bottleneck(&self) -> usize {
        self.bottleneck
    }

    /// Output size for content of `h x w`, or `None` when the content is too small for
    /// the reflection padding.
    pub fn output_hw(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let (mut h, mut w) = (h, w);
        for c in &self.contract {
            (h, w) = c.output_hw(h, w)?;
        }
        for (a, b) in &self.residual {
            (h, w) = a.conv.output_hw(h, w)?;
            (h, w) = b.conv.output_hw(h, w)?;
        }
        for e in &self.expand {
            (h, w) = e.conv.output_hw(h, w)?;
        }
        Some((h, w))
    }

    /// Renders `content` `[B, H, W, 3]` in [0, 1] with `bottleneck` `[B, 100]` or
    /// `[1, 100]` (row-major). Returns `[B, 4*ceil(H/4), 4*ceil(W/4), 3]` in (0, 1).
    ///
    /// Panics when the content is too small ([`TransformerCpu::output_hw`] is `None`)
    /// or the bottleneck has the wrong length.
    pub fn transfer(&self, content: &Nhwc, bottleneck: &[f32]) -> Nhwc {
        // Denormals flushed to zero, as TensorFlow (Lite) runs.
        let _flushed = cpu_kernels::flush_denormals();
        let d = self.bottleneck;
        assert!(
            bottleneck.len() == d || bottleneck.len() == content.n * d,
            "bottleneck must be [1, {d}] or [{}, {d}]",
            content.n
        );
        let style: Vec<f32> = if bottleneck.len() == d {
            bottleneck.repeat(content.n)
        } else {
            bottleneck.to_vec()
        };
        let mut x = self.contract[0].forward(content.view());
        for c in &self.contract[1..] {
            x = c.forward(x.view());
        }
        for (c1, c2) in &self.residual {
            let h = c1.forward(&x, &style, self.eps, Act::Relu);
            let h = c2.forward(&h, &style, self.eps, Act::Identity);
            ops::add_inplace(&mut x.data, &h.data);
        }
        let n = self.expand.len();
        for (i, e) in self.expand.iter().enumerate() {
            let last = i + 1 == n;
            x = e.forward(
                &x,
                &style,
                self.eps,
                if last { Act::Identity } else { Act::Relu },
            );
            if last {
                ops::map_inplace(&mut x.data, ops::sigmoid);
            }
        }
        x
    }
}

/// [`InceptionStylePredictor`] ready for CPU inference.
#[derive(Debug)]
pub struct InceptionPredictorCpu {
    backbone: InceptionV3Cpu,
    bottleneck: Dense,
}

impl InceptionPredictorCpu {
    /// Compiles `p` for the best kernels of this CPU.
    pub fn new(p: &InceptionStylePredictor) -> InceptionPredictorCpu {
        Self::with_isa(p, Isa::detect())
    }

    /// Like [`InceptionPredictorCpu::new`] for a given kernel set.
    pub fn with_isa(p: &InceptionStylePredictor, isa: Isa) -> InceptionPredictorCpu {
        InceptionPredictorCpu {
            backbone: InceptionV3Cpu::with_isa(&p.backbone, isa),
            bottleneck: Dense::from_burn(&p.bottleneck),
        }
    }

    /// Smallest style image side.
    pub fn min_input_size(&self) -> usize {
        self.backbone.config().min_input_size()
    }

    /// Style bottleneck `[B, 100]` (row-major) of style images `[B, H, W, 3]` in [0, 1]
    /// (consumed as given: no `x * 2 - 1`).
    pub fn predict_style(
        &self,
        style: &Nhwc,
    ) -> Result<Vec<f32>, crate::inception_v3::InceptionError> {
        self.backbone.check_input(style)?;
        let feat = self.backbone.forward_base(style.clone(), &[]).last;
        Ok(self.bottleneck.forward(&ops::spatial_mean(feat.view())))
    }
}
