//! The two layers of the network: slim's batch norm and slim's `conv2d` unit.

use super::table::{ConvSpec, Padding};
use super::{Activation, InceptionV3Config};
use burn::module::{Module, ModuleMapper, Param, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::tensor::{Device, Tensor};

/// How the network's activations are laid out while it runs. The public entry points take
/// and return NCHW whatever the device; inside, float32 tensors on flex (with or without
/// autodiff) run NHWC through the CPU kernels' differentiable ops ([`cpu_train`]:
/// convolutions, batch norm + ReLU in one pass each way), other devices NCHW through
/// Burn's ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Nchw,
    Nhwc,
}

impl Layout {
    /// The layout `x`'s device runs.
    pub fn of(x: &Tensor<4>) -> Layout {
        if cpu_train::runs_on_flex(&x.clone().into_dispatch()) {
            Layout::Nhwc
        } else {
            Layout::Nchw
        }
    }

    /// The channel axis.
    pub fn channels(self) -> usize {
        match self {
            Layout::Nchw => 1,
            Layout::Nhwc => 3,
        }
    }

    /// An NCHW tensor in this layout.
    pub fn from_nchw(self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Layout::Nchw => x,
            Layout::Nhwc => x.permute([0, 2, 3, 1]),
        }
    }

    /// A tensor of this layout in NCHW.
    pub fn to_nchw(self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Layout::Nchw => x,
            Layout::Nhwc => x.permute([0, 3, 1, 2]),
        }
    }

    /// `f` (an NCHW op: Burn's pools) applied to `x` of this layout.
    pub fn via_nchw(self, x: Tensor<4>, f: impl FnOnce(Tensor<4>) -> Tensor<4>) -> Tensor<4> {
        self.from_nchw(f(self.to_nchw(x)))
    }
}

/// Sets `state`'s value for every thread. Burn's `RunningState::update` keeps one value per
/// thread and averages them at the next sync (for data-parallel replicas), and
/// `value_sync` syncs only on a thread that updated: a training step run on a thread-pool
/// worker, then the next on the other worker, read the moving averages as they were before
/// the first.
fn set_running(state: &RunningState<Tensor<1>>, value: Tensor<1>) {
    struct SetTo(Tensor<1>);
    impl ModuleMapper for SetTo {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let value = self.0.clone();
            param.map(|old| value.reshape(old.shape()))
        }
    }
    // The clone shares the state's value: setting it sets the model's.
    let _ = state.clone().map(&mut SetTo(value));
}

/// slim `batch_norm` with `center=True, scale=False`: `beta` only, no `gamma`.
#[derive(Module, Debug)]
pub struct SlimBatchNorm {
    /// `BatchNorm/beta`.
    pub beta: Param<Tensor<1>>,
    /// `BatchNorm/moving_mean`.
    pub moving_mean: RunningState<Tensor<1>>,
    /// `BatchNorm/moving_variance`.
    pub moving_variance: RunningState<Tensor<1>>,
    /// Epsilon (0.001).
    pub epsilon: f64,
    /// TF decay of the moving averages (used only when `train_stats`).
    pub decay: f64,
    /// Use batch statistics and update the moving averages on an autodiff device.
    pub train_stats: bool,
}

impl SlimBatchNorm {
    pub(super) fn new(channels: usize, cfg: &InceptionV3Config, device: &Device) -> Self {
        SlimBatchNorm {
            beta: Param::from_tensor(Tensor::zeros([channels], device)),
            moving_mean: RunningState::new(Tensor::zeros([channels], device)),
            moving_variance: RunningState::new(Tensor::ones([channels], device)),
            epsilon: cfg.batch_norm_epsilon,
            decay: cfg.batch_norm_momentum,
            train_stats: cfg.train_batch_norm,
        }
    }

    /// Per-channel `(scale, shift)` so that `bn(x) = x * scale + shift` at inference.
    pub fn inference_affine(&self) -> (Tensor<1>, Tensor<1>) {
        let mean = self.moving_mean.value_sync();
        let var = self.moving_variance.value_sync();
        let scale = var.add_scalar(self.epsilon).sqrt().recip();
        let shift = self.beta.val() - mean * scale.clone();
        (scale, shift)
    }

    /// TF's moving-average update from a batch's mean and biased variance over `n` values
    /// per channel (TF's fused batch norm takes the unbiased variance).
    fn update_moving(&self, mean: Tensor<1>, variance: Tensor<1>, n: usize) {
        let device = mean.device();
        let n = n as f64;
        let unbiased = if n > 1.0 {
            variance.mul_scalar(n / (n - 1.0))
        } else {
            variance
        };
        let d = self.decay;
        let mm = self
            .moving_mean
            .value_sync()
            .to_device(&device)
            .mul_scalar(d)
            + mean.mul_scalar(1.0 - d);
        let mv = self
            .moving_variance
            .value_sync()
            .to_device(&device)
            .mul_scalar(d)
            + unbiased.mul_scalar(1.0 - d);
        set_running(&self.moving_mean, mm.detach());
        set_running(&self.moving_variance, mv.detach());
    }

    /// `x`: `[B, C, H, W]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let device = x.device();
        let channels = self.beta.dims()[0];
        if self.train_stats && device.is_autodiff() {
            let ones = Tensor::ones([channels], &device);
            let out = burn::tensor::module::batch_norm_train(
                x.clone(),
                ones,
                self.beta.val(),
                self.epsilon,
            );
            let [b, _, h, w] = x.dims();
            self.update_moving(out.mean, out.variance, b * h * w);
            return out.output;
        }
        let (scale, shift) = self.inference_affine();
        x * scale.to_device(&device).reshape([1, channels, 1, 1])
            + shift.to_device(&device).reshape([1, channels, 1, 1])
    }
}

/// One slim `conv2d`: convolution without bias, batch norm, activation. After
/// [`InceptionV3::fuse_for_inference`] the batch norm is folded into the convolution's
/// weight and bias and `bn` is `None`.
#[derive(Module, Debug)]
pub struct BasicConv {
    pub conv: Conv2d,
    pub bn: Option<SlimBatchNorm>,
    /// `true` = ReLU6, `false` = ReLU.
    pub relu6: bool,
}

impl BasicConv {
    /// A freshly initialised convolution of the table: `c_in` input channels, `spec`'s
    /// kernel, stride and padding, `cfg.depth(spec.width)` outputs.
    pub(super) fn new(
        cfg: &InceptionV3Config,
        c_in: usize,
        spec: &ConvSpec,
        device: &Device,
    ) -> Self {
        let k = spec.kernel;
        let padding = match spec.padding {
            Padding::Valid => PaddingConfig2d::Valid,
            // stride 1, odd kernel: symmetric (k-1)/2, same as TF SAME.
            Padding::Same => PaddingConfig2d::Explicit(
                (k[0] - 1) / 2,
                (k[1] - 1) / 2,
                (k[0] - 1) / 2,
                (k[1] - 1) / 2,
            ),
        };
        let c_out = cfg.depth(spec.width);
        let fan_in = (c_in * k[0] * k[1]) as f64;
        let conv = Conv2dConfig::new([c_in, c_out], k)
            .with_stride([spec.stride, spec.stride])
            .with_padding(padding)
            .with_bias(false)
            .with_initializer(burn::nn::Initializer::Normal {
                mean: 0.0,
                std: (2.0 / fan_in).sqrt(),
            })
            .init(device);
        BasicConv {
            conv,
            bn: Some(SlimBatchNorm::new(c_out, cfg, device)),
            relu6: cfg.activation == Activation::Relu6,
        }
    }

    /// `x` in `layout` (see [`Layout::of`]) -> the unit's output in `layout`.
    pub fn forward(&self, x: Tensor<4>, layout: Layout) -> Tensor<4> {
        if layout == Layout::Nhwc {
            return self.forward_nhwc(x);
        }
        let x = self.conv.forward(x);
        let x = match &self.bn {
            Some(bn) => bn.forward(x),
            None => x,
        };
        if self.relu6 {
            x.clamp(0.0, 6.0)
        } else {
            burn::tensor::activation::relu(x)
        }
    }

    /// [`BasicConv::forward`] on flex: the convolution, then the batch norm and the
    /// activation in one pass ([`cpu_train`]).
    fn forward_nhwc(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_nhwc_with(x, None::<fn(Tensor<4>) -> Tensor<4>>)
    }

    /// The unit of a pool-first branch, `self(pool(x))`, for a 1x1 stride-1 convolution and
    /// a `pool` that averages each channel over a window (stride 1, the map's size kept),
    /// as `pool(conv(x))` before the batch norm: both are linear, the convolution per
    /// pixel and the pool per channel, so they commute (an average's weights sum to one,
    /// so a bias passes through too), and the pool then runs over the convolution's
    /// outputs instead of its inputs (Mixed_7c: 192 channels instead of 2048). The CPU
    /// inference engine runs these branches in the same order. NCHW layouts keep `pool`
    /// first.
    pub(super) fn forward_after_pool(
        &self,
        x: Tensor<4>,
        layout: Layout,
        pool: impl FnOnce(Tensor<4>) -> Tensor<4>,
    ) -> Tensor<4> {
        let [_, _, kh, kw] = self.conv.weight.dims();
        let pointwise = [kh, kw] == [1, 1]
            && self.conv.stride == [1, 1]
            && matches!(
                self.conv.padding,
                PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
            );
        if layout == Layout::Nhwc && pointwise {
            return self.forward_nhwc_with(x, Some(pool));
        }
        self.forward(pool(x), layout)
    }

    /// [`BasicConv::forward_nhwc`] with `between` (if any) applied to the convolution's
    /// output (its bias added) before the batch norm.
    fn forward_nhwc_with(
        &self,
        x: Tensor<4>,
        between: Option<impl FnOnce(Tensor<4>) -> Tensor<4>>,
    ) -> Tensor<4> {
        let [n, h, w, cin] = x.dims();
        let [cout, _, kh, kw] = self.conv.weight.dims();
        let [top, left, bottom, right] = match self.conv.padding {
            PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r],
            PaddingConfig2d::Valid => [0; 4],
            // Not built by this model (the table's SAME convs are explicit); Burn's ops
            // handle it. Never with a `between` other than the identity:
            // `forward_after_pool` comes here for unpadded 1x1s only.
            PaddingConfig2d::Same => {
                return Layout::Nhwc.via_nchw(x, |x| self.forward(x, Layout::Nchw));
            }
        };
        let spec = cpu_kernels::TrainConv {
            n,
            h,
            w,
            cin,
            cout,
            kh,
            kw,
            stride: self.conv.stride,
            pads: [top, bottom, left, right],
            depthwise: false,
        };
        // Burn's [out, in, kh, kw] as TensorFlow's HWIO, which the kernels read.
        let filter = self.conv.weight.val().permute([2, 3, 1, 0]).into_dispatch();
        let bounds = (0.0, if self.relu6 { 6.0 } else { f32::INFINITY });
        let device = x.device();
        let gamma = || Tensor::<1>::ones([cout], &device).into_dispatch();
        // The convolution and its batch norm as one op (one backward pass) where the
        // convolution has no bias and nothing runs between the two.
        let one_op = device.is_autodiff() && self.conv.bias.is_none() && between.is_none();
        if let Some(bn) = self.bn.as_ref().filter(|bn| one_op && bn.train_stats) {
            let (out, mean, var) = cpu_train::conv_batch_norm_train(
                x.into_dispatch(),
                filter,
                spec,
                gamma(),
                bn.beta.val().into_dispatch(),
                bn.epsilon as f32,
                bounds,
            );
            let out = Tensor::<4>::from_dispatch(out);
            let [n, oh, ow, _] = out.dims();
            bn.update_moving(
                Tensor::from_dispatch(mean),
                Tensor::from_dispatch(var),
                n * oh * ow,
            );
            return out;
        }
        // The batch norm's input, or with frozen statistics as one op, the convolution's
        // (`conv`: its filter and geometry).
        let (y, conv) = if one_op && self.bn.is_some() {
            (x, Some((filter, spec)))
        } else {
            let mut y =
                Tensor::<4>::from_dispatch(cpu_train::conv(x.into_dispatch(), filter, spec));
            if let Some(bias) = &self.conv.bias {
                y = y + bias.val().reshape([1, 1, 1, cout]);
            }
            let y = match between {
                Some(f) => f(y),
                None => y,
            };
            (y, None)
        };
        let Some(bn) = &self.bn else {
            return Tensor::from_dispatch(cpu_train::clamp_act(
                y.into_dispatch(),
                bounds.0,
                bounds.1,
            ));
        };
        if bn.train_stats && device.is_autodiff() {
            let [n, h, w, _] = y.dims();
            let (out, mean, var) = cpu_train::batch_norm_train(
                y.into_dispatch(),
                gamma(),
                bn.beta.val().into_dispatch(),
                bn.epsilon as f32,
                bounds,
            );
            bn.update_moving(
                Tensor::from_dispatch(mean),
                Tensor::from_dispatch(var),
                n * h * w,
            );
            return Tensor::from_dispatch(out);
        }
        let stat = |s: &RunningState<Tensor<1>>| s.value_sync().to_device(&device).into_dispatch();
        Tensor::from_dispatch(cpu_train::batch_norm_frozen(
            y.into_dispatch(),
            conv,
            gamma(),
            bn.beta.val().into_dispatch(),
            stat(&bn.moving_mean),
            stat(&bn.moving_variance),
            bn.epsilon as f32,
            bounds,
        ))
    }

    /// Folds the batch norm into the convolution (inference only).
    pub(super) fn fuse(&mut self) {
        if let Some(bn) = self.bn.take() {
            let (scale, shift) = bn.inference_affine();
            let [o, ..] = self.conv.weight.dims();
            let w = self.conv.weight.val() * scale.clone().reshape([o, 1, 1, 1]);
            let b = match &self.conv.bias {
                Some(b) => b.val() * scale + shift,
                None => shift,
            };
            self.conv.weight = Param::from_tensor(w);
            self.conv.bias = Some(Param::from_tensor(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TF's convention (slim's fused batch norm, `tf_keras` 2.21's `BatchNormalization`, what a
    /// hub module's training trace runs): the moving averages keep `decay` of the old value,
    /// `moving = decay * moving + (1 - decay) * batch`, and the moving variance takes the
    /// unbiased (n - 1) batch variance. The expected values are what TensorFlow 2.21 computes on
    /// this input (`tf_keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-3,
    /// scale=False)` with these moving statistics: [1.2, -1.6] and [4.0667, 2.05]; Keras 3's
    /// layer, which takes the biased variance, gives [3.95, 1.65]). A swapped convention or the
    /// biased variance fails.
    #[test]
    fn moving_averages_follow_tfs_decay_convention() {
        let dev = Device::flex().autodiff();
        let cfg = InceptionV3Config {
            train_batch_norm: true,
            batch_norm_momentum: 0.9,
            ..InceptionV3Config::default()
        };
        let mut bn = SlimBatchNorm::new(2, &cfg, &dev);
        bn.moving_mean = RunningState::new(Tensor::from_floats([1.0, -2.0], &dev));
        bn.moving_variance = RunningState::new(Tensor::from_floats([4.0, 0.5], &dev));
        // [B=2, C=2, H=1, W=2]: channel 0 holds 1, 2, 3, 6 (mean 3, unbiased variance 14/3),
        // channel 1 holds 0, 0, 0, 8 (mean 2, unbiased variance 16).
        let x = Tensor::<4>::from_floats(
            [[[[1.0, 2.0]], [[0.0, 0.0]]], [[[3.0, 6.0]], [[0.0, 8.0]]]],
            &dev,
        );
        // The first update on another thread (a training step on a thread-pool worker), the
        // second on this one: each starts from the value the one before left, and this
        // thread reads the last.
        std::thread::scope(|s| {
            s.spawn(|| drop(bn.forward(x.clone())));
        });
        let _ = bn.forward(x);
        let got = |t: Tensor<1>| t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
        let mean = got(bn.moving_mean.value());
        let var = got(bn.moving_variance.value());
        let twice = |old: f64, batch: f64| 0.9 * (0.9 * old + 0.1 * batch) + 0.1 * batch;
        let want_mean = [twice(1.0, 3.0), twice(-2.0, 2.0)];
        let want_var = [twice(4.0, 14.0 / 3.0), twice(0.5, 16.0)];
        let (want_mean, want_var) = (want_mean.map(|v| v as f32), want_var.map(|v| v as f32));
        for i in 0..2 {
            assert!(
                (mean[i] - want_mean[i]).abs() < 1e-5,
                "{mean:?} vs {want_mean:?}"
            );
            assert!(
                (var[i] - want_var[i]).abs() < 1e-5,
                "{var:?} vs {want_var:?}"
            );
        }
    }
}
