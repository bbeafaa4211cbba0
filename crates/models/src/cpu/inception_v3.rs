//! [`InceptionV3`] compiled for CPU inference (see [`crate::cpu`]).
//!
//! What changes against the Burn forward pass, none of it changing the function:
//! - every batch norm is folded into its convolution (`w * scale`, `beta - mean * scale`);
//! - activations stay NHWC end to end (the hub input layout), so no transposes;
//! - the first 1x1 convolution of every branch that reads the block input is fused with
//!   its siblings into one pass over the input (Mixed_5b: 64 + 48 + 64 outputs at once);
//! - each branch's last convolution writes straight into its channel range of the
//!   block's output, so there is no concatenation copy;
//! - bias and ReLU / ReLU6 are applied as the GEMM tiles are stored.

use super::{compile_fused, values, HwioConv, Isa, Nhwc};
use crate::inception_v3::{
    Activation, BasicConv, EndPoint, InceptionError, InceptionV3, InceptionV3Config, Layer, Mixed,
};
use cpu_kernels::{ops, Act, Conv2d, Slot};

/// Where a branch of a Mixed block reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Segment `i` of the block's fused head.
    Head(usize),
    /// The block input.
    Input,
    /// 3x3 stride-2 max pool of the block input (the branch output itself).
    MaxPool,
}

/// One branch: its source, convolutions run one after the other, and the final
/// convolutions that each read the chain's result and write a channel range of the
/// block output (two for the split ends of Mixed_7b/7c, none when the head segment or
/// the max pool is the branch output).
///
/// The pooling branch of Mixed_5b..5d, 6b..6e, 7b, 7c (3x3 average pool, then a 1x1
/// conv) runs the other way round, as a segment of the head followed by the pool: both
/// are linear and the pool's weights sum to one, so `pool(W x) + b = W pool(x) + b`;
/// the 1x1 then shares the head's pass over the input and the pool runs over its few
/// output channels instead of the block's input channels. `pool` holds the bias and
/// activation applied after the pool.
#[derive(Debug)]
struct Branch {
    source: Source,
    chain: Vec<Conv2d>,
    finals: Vec<Conv2d>,
    pool: Option<(Vec<f32>, Act)>,
    offset: usize,
    width: usize,
}

#[derive(Debug)]
struct Block {
    end_point: EndPoint,
    /// The fused first 1x1 convs of the branches reading the block input; segment `i`
    /// belongs to `head_branch[i]`.
    head: Option<Conv2d>,
    head_branch: Vec<usize>,
    branches: Vec<Branch>,
    channels: usize,
    /// Stride-2 reduction block (Mixed_6a, Mixed_7a).
    reduction: bool,
}

#[derive(Debug)]
enum StemLayer {
    Conv(Conv2d),
    MaxPool,
}

impl StemLayer {
    fn forward(&self, x: &Nhwc) -> Nhwc {
        match self {
            StemLayer::Conv(c) => c.forward(x.view()),
            StemLayer::MaxPool => ops::max_pool_valid(x.view(), 3, 2),
        }
    }
}

/// Inception-v3 ready for CPU inference. Build it with [`InceptionV3Cpu::new`] from a
/// loaded (or fine-tuned) [`InceptionV3`].
#[derive(Debug)]
pub struct InceptionV3Cpu {
    config: InceptionV3Config,
    stem: Vec<(EndPoint, StemLayer)>,
    blocks: Vec<Block>,
    /// `Logits/Conv2d_1c_1x1`.
    logits: Option<Conv2d>,
}

fn act_of(a: Activation) -> Act {
    match a {
        Activation::Relu => Act::Relu,
        Activation::Relu6 => Act::Relu6,
    }
}

/// A slim conv with its batch norm folded in.
fn fold(c: &BasicConv, act: Act) -> HwioConv {
    let affine = c.bn.as_ref().map(|bn| {
        let (scale, shift) = bn.inference_affine();
        (values(scale), values(shift))
    });
    HwioConv::from_burn(&c.conv, affine, act)
}

fn is_head_conv(c: &HwioConv) -> bool {
    let g = &c.geometry;
    g.kh == 1 && g.kw == 1 && g.stride == [1, 1]
}

impl Block {
    fn new(end_point: EndPoint, m: &Mixed, act: Act, isa: Isa) -> Block {
        let fold_all = |v: &[BasicConv]| v.iter().map(|c| fold(c, act)).collect::<Vec<_>>();
        let lists = m.branches();
        let reduction = m.kind.is_reduction();
        let mut head_convs = Vec::new();
        let mut head_branch = Vec::new();
        let mut branches = Vec::new();
        let mut offset = 0;
        for (i, list) in lists.iter().enumerate() {
            let convs = fold_all(list);
            if convs.is_empty() {
                if m.kind.max_pool_branch(i) {
                    // The max-pool branch (its width is the input's, set below).
                    branches.push(Branch {
                        source: Source::MaxPool,
                        chain: Vec::new(),
                        finals: Vec::new(),
                        pool: None,
                        offset,
                        width: 0,
                    });
                }
                continue;
            }
            let mut rest: Vec<HwioConv> = convs;
            if m.kind.pools_first(i) {
                // avg pool -> 1x1 as head segment (no bias, no activation) -> avg pool.
                let mut c = rest.remove(0);
                assert!(
                    is_head_conv(&c) && rest.is_empty(),
                    "pool branch is one 1x1 conv"
                );
                let after = (std::mem::replace(&mut c.bias, vec![0.0; c.cout]), c.act);
                c.act = Act::Identity;
                let width = c.cout;
                head_branch.push(branches.len());
                head_convs.push(c);
                branches.push(Branch {
                    source: Source::Head(head_convs.len() - 1),
                    chain: Vec::new(),
                    finals: Vec::new(),
                    pool: Some(after),
                    offset,
                    width,
                });
                offset += width;
                continue;
            }
            let source = if is_head_conv(&rest[0]) {
                head_branch.push(branches.len());
                head_convs.push(rest.remove(0));
                Source::Head(head_convs.len() - 1)
            } else {
                Source::Input
            };
            // Mixed_7b/7c: the last two convs of branches 1 and 2 both read the one before.
            let split = m.kind.parallel_ends(i).min(rest.len());
            let finals: Vec<HwioConv> = rest.split_off(rest.len() - split);
            let width = match (&source, finals.is_empty()) {
                (Source::Head(h), true) => head_convs[*h].cout,
                _ => finals.iter().map(|c| c.cout).sum(),
            };
            branches.push(Branch {
                source,
                chain: rest.iter().map(|c| c.compile(isa)).collect(),
                finals: finals.iter().map(|c| c.compile(isa)).collect(),
                pool: None,
                offset,
                width,
            });
            offset += width;
        }
        // The max pool passes the block input's channels through.
        let pool_channels = m
            .branch_0
            .first()
            .map(|c| c.conv.weight.dims()[1])
            .unwrap_or(0);
        for b in &mut branches {
            if b.source == Source::MaxPool {
                b.width = pool_channels;
            }
        }
        let channels = offset + if reduction { pool_channels } else { 0 };
        Block {
            end_point,
            head: (!head_convs.is_empty()).then(|| compile_fused(isa, &head_convs)),
            head_branch,
            branches,
            channels,
            reduction,
        }
    }

    fn forward(&self, x: &Nhwc) -> Nhwc {
        let (ho, wo) = if self.reduction {
            (
                ops::pool_valid_size(x.h, 3, 2).expect("checked input size"),
                ops::pool_valid_size(x.w, 3, 2).expect("checked input size"),
            )
        } else {
            (x.h, x.w)
        };
        let mut out = Nhwc::zeros(x.n, ho, wo, self.channels);
        // Head: segments whose branch ends there write into `out`, the others to temporaries.
        let mut temps: Vec<Option<Nhwc>> = (0..self.branches.len()).map(|_| None).collect();
        if let Some(head) = &self.head {
            let couts = head.couts();
            let mut direct = None;
            for (seg, &bi) in self.head_branch.iter().enumerate() {
                let b = &self.branches[bi];
                if b.ends_at_head() {
                    assert!(direct.is_none(), "one head segment writes the block output");
                    direct = Some((seg, b.offset));
                } else {
                    temps[bi] = Some(Nhwc::zeros(x.n, x.h, x.w, couts[seg]));
                }
            }
            let mut out_slot = direct.map(|(seg, off)| out.slot(off, couts[seg]));
            let mut slots = Vec::new();
            let mut temp_iter = temps.iter_mut().filter_map(|t| t.as_mut());
            for seg in 0..couts.len() {
                if direct.is_some_and(|(s, _)| s == seg) {
                    slots.push(out_slot.take().expect("direct slot"));
                } else {
                    slots.push(temp_iter.next().expect("temporary per segment").slot_all());
                }
            }
            head.forward_into(x.view(), &mut slots);
        }
        // The branches fill disjoint channel ranges of `out`: run them concurrently (each
        // convolution still spreads over the cores that are idle).
        let mut jobs = Vec::new();
        let mut ranges = Vec::new();
        for (bi, b) in self.branches.iter().enumerate() {
            if !b.ends_at_head() {
                jobs.push((b, temps[bi].take()));
                ranges.push((b.offset, b.width));
            }
        }
        let slots = out.slots(&ranges);
        rayon::scope(|s| {
            for ((b, temp), mut slot) in jobs.into_iter().zip(slots) {
                s.spawn(move |_| b.run(x, temp, &mut slot));
            }
        });
        out
    }
}

impl Branch {
    /// Whether the branch's output is its head segment itself (written by the head
    /// straight into the block output).
    fn ends_at_head(&self) -> bool {
        matches!(self.source, Source::Head(_))
            && self.chain.is_empty()
            && self.finals.is_empty()
            && self.pool.is_none()
    }

    /// Runs the branch (from the head's temporary `temp` for head-fed branches) and
    /// writes its output into `slot`.
    fn run(&self, x: &Nhwc, temp: Option<Nhwc>, slot: &mut Slot) {
        let src = match self.source {
            Source::Head(_) => temp.as_ref().expect("head output of the branch"),
            Source::Input => x,
            Source::MaxPool => {
                ops::max_pool_valid_into(x.view(), 3, 2, slot);
                return;
            }
        };
        if let Some((bias, act)) = &self.pool {
            ops::avg_pool_same_into(src.view(), 3, bias, *act, slot);
            return;
        }
        let mut cur: Option<Nhwc> = None;
        for conv in &self.chain {
            let next = conv.forward(cur.as_ref().unwrap_or(src).view());
            cur = Some(next);
        }
        let input = cur.as_ref().unwrap_or(src);
        let mut off = 0;
        for f in &self.finals {
            let c = f.cout();
            f.forward_into(input.view(), &mut [slot.sub(off, c)]);
            off += c;
        }
    }
}

/// Blocks whose input has fewer pixels than this run on the whole batch at once (their
/// weights are then read once per batch); the layers before run image by image, so that
/// one image's activations stay in cache.
const BATCH_BELOW_PIXELS: usize = 128;

/// Output of [`InceptionV3Cpu::forward_base`].
#[derive(Debug, Clone)]
pub struct EndPointsCpu {
    /// `(end point, activation [B, H, W, C])` for every requested end point, in order.
    pub maps: Vec<(EndPoint, Nhwc)>,
    /// Output of the last block built, `[B, H, W, C]`.
    pub last: Nhwc,
}

impl EndPointsCpu {
    pub fn get(&self, e: EndPoint) -> Option<&Nhwc> {
        self.maps.iter().find(|(k, _)| *k == e).map(|(_, t)| t)
    }
}

impl InceptionV3Cpu {
    /// Compiles `model` for the best kernels of this CPU (batch norms folded, weights
    /// packed). The Burn model is only read.
    pub fn new(model: &InceptionV3) -> InceptionV3Cpu {
        Self::with_isa(model, Isa::detect())
    }

    /// Like [`InceptionV3Cpu::new`] for a given kernel set (tests run each one).
    pub fn with_isa(model: &InceptionV3, isa: Isa) -> InceptionV3Cpu {
        let config = model.config().clone();
        let act = act_of(config.activation);
        let conv = |c: &BasicConv| fold(c, act).compile(isa);
        let mut stem = Vec::new();
        let mut blocks = Vec::new();
        for (e, layer) in model.layers() {
            match layer {
                Layer::Conv(c) => stem.push((e, StemLayer::Conv(conv(c)))),
                Layer::MaxPool => stem.push((e, StemLayer::MaxPool)),
                Layer::Mixed(m) => blocks.push(Block::new(e, m, act, isa)),
            }
        }
        let logits = model
            .logits
            .as_ref()
            .map(|c| HwioConv::from_burn(c, None, Act::Identity).compile(isa));
        InceptionV3Cpu {
            config,
            stem,
            blocks,
            logits,
        }
    }

    pub fn config(&self) -> &InceptionV3Config {
        &self.config
    }

    /// Width of [`InceptionV3Cpu::forward`]'s rows: classes, or the feature size.
    pub fn output_dim(&self) -> usize {
        match &self.logits {
            Some(l) => l.cout(),
            None => self.config.feature_dim(),
        }
    }

    /// Checks hub-convention input `[B, H, W, 3]`.
    pub fn check_input(&self, x: &Nhwc) -> Result<(), InceptionError> {
        if x.c != 3 || x.n == 0 {
            return Err(InceptionError::InputShape(vec![x.n, x.h, x.w, x.c]));
        }
        let e = self.config.final_endpoint;
        if e.output_size(x.h).is_none() || e.output_size(x.w).is_none() {
            return Err(InceptionError::InputTooSmall {
                height: x.h,
                width: x.w,
                min: self.config.min_input_size(),
                end_point: e,
            });
        }
        Ok(())
    }

    /// Hub convention `[B, H, W, 3]` in `[0, 1]` -> network input in `[-1, 1]`.
    pub fn preprocess(images: &Nhwc) -> Nhwc {
        let mut x = images.clone();
        ops::map_inplace(&mut x.data, |v| v * 2.0 - 1.0);
        x
    }

    /// Logits `[B, classes]` (row-major), or the features `[B, C]` of a model without a
    /// head, for hub-convention images `[B, H, W, 3]` in `[0, 1]`.
    pub fn forward(&self, images: &Nhwc) -> Result<Vec<f32>, InceptionError> {
        self.check_input(images)?;
        Ok(self.head(&self.run(Self::preprocess(images))))
    }

    /// The feature vector (global mean of the last block), `[B, C]`, whatever the head.
    pub fn features(&self, images: &Nhwc) -> Result<Vec<f32>, InceptionError> {
        self.check_input(images)?;
        Ok(ops::spatial_mean(self.run(Self::preprocess(images)).view()))
    }

    /// The last block's activation `[B, H', W', C]` for hub-convention images.
    pub fn backbone(&self, images: &Nhwc) -> Result<Nhwc, InceptionError> {
        self.check_input(images)?;
        Ok(self.run(Self::preprocess(images)))
    }

    /// The backbone on preprocessed input, scheduled for speed: the large early layers
    /// image by image over the rayon pool (activations stay in cache, each image's
    /// convolutions split further when a core is idle), the small late blocks on the
    /// whole batch (see `BATCH_BELOW_PIXELS`).
    fn run(&self, x: Nhwc) -> Nhwc {
        use rayon::prelude::*;
        let _flushed = cpu_kernels::flush_denormals();
        if x.n == 1 {
            return self.forward_base(x, &[]).last;
        }
        let early = |mut img: Nhwc| -> (Nhwc, usize) {
            for (_, layer) in &self.stem {
                img = layer.forward(&img);
            }
            for (i, b) in self.blocks.iter().enumerate() {
                if img.h * img.w < BATCH_BELOW_PIXELS {
                    return (img, i);
                }
                img = b.forward(&img);
            }
            (img, self.blocks.len())
        };
        let px = x.h * x.w * x.c;
        let parts: Vec<(Nhwc, usize)> = x
            .data
            .par_chunks(px)
            .map(|img| early(Nhwc::from_vec(1, x.h, x.w, x.c, img.to_vec()).expect("one image")))
            .collect();
        let next = parts[0].1;
        let (h, w, c) = (parts[0].0.h, parts[0].0.w, parts[0].0.c);
        let data = parts.into_iter().flat_map(|(t, _)| t.data).collect();
        let mut y = Nhwc::from_vec(x.n, h, w, c, data).expect("batch of equal images");
        for b in &self.blocks[next..] {
            y = b.forward(&y);
        }
        y
    }

    /// The backbone on already-preprocessed input `[B, H, W, 3]`, keeping the requested
    /// end points. No size check (see [`InceptionV3Cpu::check_input`]).
    pub fn forward_base(&self, x: Nhwc, wanted: &[EndPoint]) -> EndPointsCpu {
        // Denormals flushed to zero, as TensorFlow runs.
        let _flushed = cpu_kernels::flush_denormals();
        let mut maps = Vec::new();
        let mut keep = |e: EndPoint, t: &Nhwc| {
            if wanted.contains(&e) {
                maps.push((e, t.clone()));
            }
        };
        let mut x = x;
        for (e, layer) in &self.stem {
            x = layer.forward(&x);
            keep(*e, &x);
        }
        for b in &self.blocks {
            x = b.forward(&x);
            keep(b.end_point, &x);
        }
        EndPointsCpu { maps, last: x }
    }

    /// The stem convolutions that [`InceptionV3Cpu::forward_base`] runs by Winograd
    /// F(2x2, 3x3) on `n` images of `h x w` (tests use it to know that path is covered).
    pub fn winograd_stem_layers(&self, n: usize, h: usize, w: usize) -> Vec<EndPoint> {
        self.stem
            .iter()
            .filter_map(|(e, layer)| match layer {
                StemLayer::Conv(c) => {
                    let (ho, wo) = (e.output_size(h)?, e.output_size(w)?);
                    c.uses_winograd(n, ho, wo).then_some(*e)
                }
                StemLayer::MaxPool => None,
            })
            .collect()
    }

    /// The head on the last block's output: slim's `AvgPool_1a` (kernel `min(H, 8) x
    /// min(W, 8)`, stride 2, VALID) + `Conv2d_1c_1x1` + squeeze (positions averaged when
    /// more than one is left), or the global mean without logits. `[B, D]` row-major.
    pub fn head(&self, x: &Nhwc) -> Vec<f32> {
        let Some(logits) = &self.logits else {
            return ops::spatial_mean(x.view());
        };
        let pooled = ops::avg_pool_valid(x.view(), x.h.min(8), x.w.min(8), 2);
        let y = logits.forward(pooled.view());
        if y.h == 1 && y.w == 1 {
            y.data
        } else {
            ops::spatial_mean(y.view())
        }
    }
}

impl InceptionV3Cpu {
    /// Runs the network on preprocessed input and returns the milliseconds each end point
    /// (and the head, as `Logits`) took: where the time goes.
    pub fn profile(&self, x: Nhwc) -> Vec<(String, f64)> {
        let mut rows = Vec::new();
        let mut x = x;
        let mut time = |name: String, f: &dyn Fn(&Nhwc) -> Nhwc, x: &Nhwc| -> Nhwc {
            let t0 = std::time::Instant::now();
            let y = f(x);
            rows.push((name, t0.elapsed().as_secs_f64() * 1e3));
            y
        };
        for (e, layer) in &self.stem {
            x = time(e.to_string(), &|x| layer.forward(x), &x);
        }
        for b in &self.blocks {
            x = time(b.end_point.to_string(), &|x| b.forward(x), &x);
        }
        let t0 = std::time::Instant::now();
        std::hint::black_box(self.head(&x));
        rows.push(("Logits".into(), t0.elapsed().as_secs_f64() * 1e3));
        rows
    }
}
