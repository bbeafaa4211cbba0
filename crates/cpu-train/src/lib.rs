//! Training ops on flex through the project's CPU kernels, with their own backward passes:
//! a Burn backend extension ([`CpuTrain`]) whose flex implementation runs `cpu-kernels` on
//! row-major NHWC tensors and whose autodiff implementation (over flex) records the
//! gradients the kernels compute:
//! - convolutions ([`cpu_kernels::TrainConv`]: forward, input and filter gradients) without
//!   Burn's NCHW permutes, im2col and transposed convolutions;
//! - training-mode batch normalisation over the channels (`FusedBatchNormV3` with
//!   `is_training`: batch moments, normalisation, closed-form gradient) in three passes
//!   instead of some twenty Burn ops and their backward ops;
//! - a convolution and the batch norm that alone reads it as one op, with batch statistics
//!   ([`conv_batch_norm_train`]) or frozen ones ([`batch_norm_frozen`]): the batch
//!   norm's input gradient goes to the convolution's gradients a block of pixels at a time
//!   where it can, never written whole, and a permuted filter is gathered once; with
//!   frozen statistics and a constant scale (Inception-v3's batch norms) the batch norm runs
//!   in the convolution's epilogue ([`cpu_kernels::TrainConv::forward_batch_norm`]), the
//!   convolution's output is never written, and the backward pass reads the op's output;
//! - ReLU / ReLU6 (TensorFlow's gradient: `dy` where `lo < x < hi`) in one pass each way;
//! - max and average pooling ([`cpu_kernels::TrainPool`]) without NCHW permutes.
//!
//! Other devices (ndarray, wgpu) keep Burn's own ops: callers check [`runs_on_flex`] first.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    backend_extension, Autodiff, Backend, Dispatch, DispatchTensor, DispatchTensorKind, Flex,
    TensorMetadata,
};
use burn::tensor::{DType, Shape, Slice, TensorData};
use cpu_kernels::{train_norm, TrainConv, TrainPool};
use std::borrow::Cow;

/// Training ops the CPU kernels run (see the module docs).
#[backend_extension(Flex, Autodiff)]
pub trait CpuTrain: Backend {
    /// A convolution (regular or depthwise, see [`TrainConv`]) of an NHWC input with a
    /// TensorFlow filter: `[n, oh, ow, cout]`.
    fn nhwc_conv(
        x: FloatTensor<Self>,
        filter: FloatTensor<Self>,
        spec: TrainConv,
    ) -> FloatTensor<Self>;
    /// Per-channel (last axis) batch mean and biased variance, `[2, c]`; not differentiated.
    fn channel_moments(x: FloatTensor<Self>) -> FloatTensor<Self>;
    /// Batch normalisation over the last axis with `moments` (`[2, c]`: mean, variance),
    /// its output clamped to `[lo, hi]` (the ReLU / ReLU6 after it; infinite bounds for
    /// none). In training mode the moments are [`CpuTrain::channel_moments`] of `x`, whose
    /// dependence on `x` the gradient includes; `frozen`, they are constants (moving
    /// statistics, no gradient).
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        moments: FloatTensor<Self>,
        eps: f32,
        lo: f32,
        hi: f32,
        frozen: bool,
    ) -> FloatTensor<Self>;
    /// [`CpuTrain::batch_norm_train`] in training mode of `y`, the convolution `spec` of `x`
    /// with `filter`: `(output, moments)`, the moments (`[2, c]`, not differentiated) those
    /// of `y` ([`CpuTrain::channel_moments`]). One op, which gathers a strided filter (a
    /// model's permuted view) once for the convolution and its backward pass, and whose
    /// gradient reaches `x` and `filter` through the convolution's backward pass, which makes
    /// the batch norm's input gradient chunk by chunk where it can
    /// ([`TrainConv::grad_input_and_filter_after`]).
    #[allow(clippy::too_many_arguments)]
    fn conv_batch_norm_train(
        x: FloatTensor<Self>,
        filter: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        spec: TrainConv,
        eps: f32,
        lo: f32,
        hi: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
    /// [`CpuTrain::conv_batch_norm_train`] with frozen `moments` (`[2, c]`: the moving mean
    /// and variance, constants of the op): the convolution and the inference-mode batch norm
    /// of its output as one op (`finetune`'s default with a trained backbone). When `gamma`
    /// is a constant (not tracked), the batch norm runs in the convolution's epilogue and
    /// the convolution's output is neither written nor kept.
    #[allow(clippy::too_many_arguments)]
    fn conv_batch_norm_frozen(
        x: FloatTensor<Self>,
        filter: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        moments: FloatTensor<Self>,
        spec: TrainConv,
        eps: f32,
        lo: f32,
        hi: f32,
    ) -> FloatTensor<Self>;
    /// `x` clamped to `[lo, hi]` (ReLU, ReLU6).
    fn clamp_act(x: FloatTensor<Self>, lo: f32, hi: f32) -> FloatTensor<Self>;
    /// A max or average pool (see [`TrainPool`]) of an NHWC input: `[n, oh, ow, c]`.
    fn nhwc_pool(x: FloatTensor<Self>, spec: TrainPool) -> FloatTensor<Self>;
}

/// The values of a float32 flex tensor in row-major order (a copy only when its layout
/// is strided: a permuted filter, a slice of a concatenation's gradient; gathered on the
/// thread pool by [`cpu_kernels::ops::gather_strided`]).
fn values(t: &FlexTensor) -> Cow<'_, [f32]> {
    if let Some(s) = t.as_slice::<f32>() {
        return Cow::Borrowed(s);
    }
    let layout = t.layout();
    let strides: Option<Vec<usize>> = layout
        .strides()
        .iter()
        .map(|&s| usize::try_from(s).ok())
        .collect();
    match strides {
        Some(strides) => Cow::Owned(cpu_kernels::ops::gather_strided(
            t.storage::<f32>(),
            layout.start_offset(),
            layout.shape(),
            &strides,
        )),
        // Flipped views (negative strides): Burn's copy.
        None => Cow::Owned(t.to_contiguous().storage::<f32>().to_vec()),
    }
}

/// A float32 flex tensor as rows of its last axis (`c` values each, contiguous), a fixed
/// stride apart: its own rows, or a channel slice of a wider tensor (Burn hands on a
/// concatenation's gradient as such slices); `None` for other layouts.
fn channel_rows(t: &FlexTensor) -> Option<train_norm::Rows<'_>> {
    let layout = t.layout();
    let shape = shape_of(t);
    let strides = layout.strides();
    let d = shape.len();
    let c = *shape.last()?;
    if strides.len() != d || (c > 1 && strides[d - 1] != 1) {
        return None;
    }
    let stride = match d {
        1 => c,
        _ => usize::try_from(strides[d - 2]).ok()?,
    };
    // Every outer axis steps over whole rows of the one inside it (size-1 axes aside).
    let mut expected = stride;
    for i in (0..d.saturating_sub(1)).rev() {
        if shape[i] > 1 && usize::try_from(strides[i]).ok()? != expected {
            return None;
        }
        expected = expected.checked_mul(shape[i])?;
    }
    (stride >= c).then(|| train_norm::Rows {
        data: t.storage::<f32>(),
        offset: layout.start_offset(),
        stride,
    })
}

/// `t` itself when its values are contiguous, otherwise a contiguous copy of them.
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        return t;
    }
    let v = values(&t).into_owned();
    flex(v, shape_of(&t))
}

/// The convolution `spec` of `x` with `filter`, its moments (`frozen`: those given) and
/// the batch norm of it clamped to `[lo, hi]`: `(y, moments, output)`, the forward pass of
/// [`CpuTrain::conv_batch_norm_train`] and [`CpuTrain::conv_batch_norm_frozen`]
/// (untracked, and under their tracked op).
#[allow(clippy::too_many_arguments)]
fn conv_batch_norm_forward(
    x: FlexTensor,
    filter: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    frozen: Option<FlexTensor>,
    spec: TrainConv,
    eps: f32,
    (lo, hi): (f32, f32),
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let y = Flex::nhwc_conv(x, filter, spec);
    let is_frozen = frozen.is_some();
    let moments = frozen.unwrap_or_else(|| Flex::channel_moments(y.clone()));
    let out = Flex::batch_norm_train(
        y.clone(),
        gamma,
        beta,
        moments.clone(),
        eps,
        lo,
        hi,
        is_frozen,
    );
    (y, moments, out)
}

/// The convolution `spec` of `x` with `filter` and the inference-mode batch norm (`moments`
/// the moving ones) of its output clamped to `[lo, hi]` in one pass, the batch norm in the
/// kernels' epilogue ([`TrainConv::forward_batch_norm`]): the output of
/// [`conv_batch_norm_forward`] with frozen moments, the same values, without writing the
/// convolution's output. `None` where the kernels do not apply the clamp.
#[allow(clippy::too_many_arguments)]
fn conv_frozen_batch_norm_fused(
    x: &FlexTensor,
    filter: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    moments: &FlexTensor,
    spec: TrainConv,
    eps: f32,
    bounds: (f32, f32),
) -> Option<FlexTensor> {
    let (moments, gamma, beta) = (values(moments), values(gamma), values(beta));
    let c = gamma.len();
    let scale = train_norm::batch_norm_scale(&moments, &gamma, eps);
    let (oh, ow) = spec.output_hw().expect("checked by the caller");
    let out = spec.forward_batch_norm(
        &values(x),
        &values(filter),
        (&moments[..c], &scale, &beta),
        bounds,
    )?;
    Some(flex(out, vec![spec.n, oh, ow, spec.cout]))
}

/// A batch norm's clamp `[lo, hi]` as its backward pass takes it: `None` when both bounds
/// are infinite (no activation).
fn clamp_bounds(lo: f32, hi: f32) -> Option<(f32, f32)> {
    (lo.is_finite() || hi.is_finite()).then_some((lo, hi))
}

fn flex(v: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v, shape))
}

fn shape_of(t: &FlexTensor) -> Vec<usize> {
    TensorMetadata::shape(t).to_vec()
}

fn channels(t: &FlexTensor) -> usize {
    shape_of(t).last().copied().unwrap_or(1)
}

fn filter_shape(s: &TrainConv) -> Vec<usize> {
    let out = if s.depthwise { 1 } else { s.cout };
    vec![s.kh, s.kw, s.cin, out]
}

impl CpuTrain for Flex {
    fn nhwc_conv(x: FlexTensor, filter: FlexTensor, spec: TrainConv) -> FlexTensor {
        let (oh, ow) = spec.output_hw().expect("checked by the caller");
        let y = spec.forward(&values(&x), &values(&filter));
        flex(y, vec![spec.n, oh, ow, spec.cout])
    }

    fn channel_moments(x: FlexTensor) -> FlexTensor {
        let c = channels(&x);
        flex(train_norm::channel_moments(&values(&x), c), vec![2, c])
    }

    fn batch_norm_train(
        x: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        moments: FlexTensor,
        eps: f32,
        lo: f32,
        hi: f32,
        _frozen: bool,
    ) -> FlexTensor {
        let y = train_norm::batch_norm(
            &values(&x),
            &values(&moments),
            &values(&gamma),
            &values(&beta),
            eps,
            (lo, hi),
        );
        flex(y, shape_of(&x))
    }

    fn conv_batch_norm_train(
        x: FlexTensor,
        filter: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        spec: TrainConv,
        eps: f32,
        lo: f32,
        hi: f32,
    ) -> (FlexTensor, FlexTensor) {
        let (_, moments, out) =
            conv_batch_norm_forward(x, filter, gamma, beta, None, spec, eps, (lo, hi));
        (out, moments)
    }

    fn conv_batch_norm_frozen(
        x: FlexTensor,
        filter: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        moments: FlexTensor,
        spec: TrainConv,
        eps: f32,
        lo: f32,
        hi: f32,
    ) -> FlexTensor {
        if let Some(out) =
            conv_frozen_batch_norm_fused(&x, &filter, &gamma, &beta, &moments, spec, eps, (lo, hi))
        {
            return out;
        }
        conv_batch_norm_forward(x, filter, gamma, beta, Some(moments), spec, eps, (lo, hi)).2
    }

    fn clamp_act(x: FlexTensor, lo: f32, hi: f32) -> FlexTensor {
        flex(train_norm::clamp(&values(&x), lo, hi), shape_of(&x))
    }

    fn nhwc_pool(x: FlexTensor, spec: TrainPool) -> FlexTensor {
        let (oh, ow) = spec.output_hw().expect("checked by the caller");
        flex(
            TrainPool::forward(&spec, &values(&x)),
            vec![spec.n, oh, ow, spec.c],
        )
    }
}

thread_local! {
    /// The nodes (non-leaf) this thread's backward passes registered an input gradient for
    /// through [`register_input_gradient`], not yet taken back: a node's gradient stays
    /// registered until its own backward step consumes it, after every operation that read
    /// the node has registered its part, so a node listed here still holds one.
    static REGISTERED: std::cell::RefCell<std::collections::HashSet<u64>> =
        Default::default();
}

/// Registers `grad` as (a part of) the gradient of the node `id` (a leaf when it has no
/// parents), as `grads.register` does, and notes it for [`registered_before`].
fn register_input_gradient(grads: &mut Gradients, id: NodeId, leaf: bool, grad: FlexTensor) {
    grads.register::<Flex>(id, grad);
    if leaf {
        // A parameter: consuming its gradient does not remove it.
        return;
    }
    REGISTERED.with(|r| {
        let mut r = r.borrow_mut();
        // Nodes consumed by Burn's own steps stay listed; forgetting one only means
        // that its next part is added by Burn.
        if r.len() >= 4096 {
            r.clear();
        }
        r.insert(id.value);
    });
}

/// Whether [`register_input_gradient`] registered a gradient for the node `id` (a tensor
/// read by several operations) that is still there, forgetting it: the caller then
/// consumes it from `grads`, adds its own part (in the kernels' epilogue, instead of
/// Burn's add on one thread) and registers the sum.
fn registered_before(id: NodeId) -> bool {
    REGISTERED.with(|r| r.borrow_mut().remove(&id.value))
}

/// Forgets the node `id` once its own backward step consumed its gradient.
fn consumed(id: NodeId) {
    REGISTERED.with(|r| r.borrow_mut().remove(&id.value));
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 2> for ConvBackward {
    /// The input's checkpoint, the filter as the kernels read it (contiguous HWIO).
    type State = (NodeId, FlexTensor, TrainConv);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_filter] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        consumed(ops.node.id);
        let (x_state, filter, spec) = ops.state;
        let dy = values(&dy);
        let filter = values(&filter);
        conv_gradients!(
            grads,
            checkpointer,
            [node_x, node_filter],
            x_state,
            spec,
            &filter,
            both: |x: &[f32], prior| spec.grad_input_and_filter(x, &dy, &filter, prior),
            dy: dy
        );
    }
}

/// A convolution's gradients for its parents `node_x`, `node_filter` (`x_state` the input's
/// checkpoint): where both are tracked, by one call, `both(x, prior)` (the input and the
/// part of its gradient other ops registered); otherwise each from the whole output
/// gradient `dy` (a slice, evaluated only then). A macro: the autodiff graph's node type
/// cannot be named outside Burn.
macro_rules! conv_gradients {
    ($grads:ident, $checkpointer:ident, [$node_x:ident, $node_filter:ident], $x_state:expr,
     $spec:expr, $filter:expr, both: $both:expr, dy: $dy:expr) => {{
        let spec: TrainConv = $spec;
        let filter: &[f32] = $filter;
        let x_shape = vec![spec.n, spec.h, spec.w, spec.cin];
        if let (Some(nx), Some(nf)) = (&$node_x, &$node_filter) {
            let prior = registered_before(nx.id).then(|| $grads.consume::<Flex>(nx));
            let x = $checkpointer.retrieve_node_output::<FlexTensor>($x_state);
            let (dx, dw) = $both(&values(&x), prior.as_ref().map(values).as_deref());
            register_input_gradient($grads, nx.id, nx.parents.is_empty(), flex(dx, x_shape));
            $grads.register::<Flex>(nf.id, flex(dw, filter_shape(&spec)));
        } else {
            let dy = $dy;
            if let Some(node) = $node_x {
                let dx = if registered_before(node.id) {
                    let prior = $grads.consume::<Flex>(&node);
                    spec.grad_input_onto(&dy, filter, &values(&prior))
                } else {
                    spec.grad_input(&dy, filter)
                };
                register_input_gradient(
                    $grads,
                    node.id,
                    node.parents.is_empty(),
                    flex(dx, x_shape),
                );
            }
            if let Some(node) = $node_filter {
                let x = $checkpointer.retrieve_node_output::<FlexTensor>($x_state);
                let dw = spec.grad_filter(&values(&x), &dy);
                $grads.register::<Flex>(node.id, flex(dw, filter_shape(&spec)));
            }
        }
    }};
}
use conv_gradients;

/// The rows of an output gradient `dy` for `f`: where they lie (a channel slice of a
/// concatenation's gradient), or gathered into a tensor of their own first.
fn with_gradient_rows<R>(dy: &FlexTensor, f: impl FnOnce(train_norm::Rows) -> R) -> R {
    match channel_rows(dy) {
        Some(rows) => f(rows),
        None => {
            let gathered = values(dy);
            f(train_norm::Rows::of(&gathered, channels(dy)))
        }
    }
}

#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    /// Input, gamma, beta, moments, epsilon, the activation's bounds, frozen. The output is
    /// not kept: the activation's mask is recomputed from the input.
    type State = (
        NodeId,
        NodeId,
        FlexTensor,
        FlexTensor,
        f32,
        Option<(f32, f32)>,
        bool,
    );

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        consumed(ops.node.id);
        let (x_state, gamma_state, beta, moments, eps, bounds, frozen) = ops.state;
        let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
        let gamma = checkpointer.retrieve_node_output::<FlexTensor>(gamma_state);
        let (dx, dgamma, dbeta) = with_gradient_rows(&dy, |dy_rows| {
            train_norm::batch_norm_grad(
                &values(&x),
                dy_rows,
                &values(&moments),
                &values(&gamma),
                &values(&beta),
                eps,
                bounds,
                frozen,
            )
        });
        if let Some(node) = node_x {
            let leaf = node.parents.is_empty();
            register_input_gradient(grads, node.id, leaf, flex(dx, shape_of(&x)));
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, flex(dgamma, shape_of(&gamma)));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, flex(dbeta, shape_of(&gamma)));
        }
    }
}

#[derive(Debug)]
struct ConvBatchNormBackward;

/// Which moments a [`ConvBatchNormBackward`] normalised with, and which tensor it kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moments {
    /// The batch's; the convolution's output (the batch norm's input) kept.
    Batch,
    /// Frozen; the convolution's output kept (gamma is tracked: its gradient needs it).
    Frozen,
    /// Frozen, the batch norm's clamped output kept instead (gamma is a constant, the
    /// convolution's output was never written: [`conv_frozen_batch_norm_fused`]).
    FrozenOutputKept,
}

impl Backward<Flex, 4> for ConvBatchNormBackward {
    /// The convolution's input checkpoint, its filter (contiguous HWIO), the convolution's
    /// output (the batch norm's input) or with [`Moments::FrozenOutputKept`] the op's
    /// output, gamma's checkpoint, beta, the moments, the convolution, epsilon, the
    /// activation's bounds, which moments.
    type State = (
        NodeId,
        FlexTensor,
        FlexTensor,
        NodeId,
        FlexTensor,
        FlexTensor,
        TrainConv,
        f32,
        Option<(f32, f32)>,
        Moments,
    );

    fn backward(
        self,
        ops: Ops<Self::State, 4>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_filter, node_gamma, node_beta] = ops.parents;
        let d_out = grads.consume::<Flex>(&ops.node);
        consumed(ops.node.id);
        let (x_state, filter, kept, gamma_state, beta, moments, spec, eps, bounds, stats) =
            ops.state;
        let gamma = checkpointer.retrieve_node_output::<FlexTensor>(gamma_state);
        let (kept_v, moments_v, gamma_v, beta_v) = (
            values(&kept),
            values(&moments),
            values(&gamma),
            values(&beta),
        );
        let filter = values(&filter);
        with_gradient_rows(&d_out, |d_rows| {
            let bn = match stats {
                Moments::FrozenOutputKept => train_norm::BatchNormGrad::frozen_from_output(
                    &kept_v, d_rows, &moments_v, &gamma_v, &beta_v, eps, bounds,
                ),
                _ => train_norm::BatchNormGrad::new(
                    &kept_v,
                    d_rows,
                    &moments_v,
                    &gamma_v,
                    &beta_v,
                    eps,
                    bounds,
                    stats == Moments::Frozen,
                ),
            };
            // The batch norm's input gradient made block by block for the convolution's
            // (whole, where only one of its gradients is wanted: the first convolution
            // reads the untracked image); with frozen statistics its channel sums are taken
            // in the same pass, so gamma's and beta's gradients come after.
            conv_gradients!(
                grads,
                checkpointer,
                [node_x, node_filter],
                x_state,
                spec,
                &filter,
                both: |x: &[f32], prior| spec.grad_input_and_filter_after(x, &bn, &filter, prior),
                dy: bn.input_gradient()
            );
            let (dgamma, dbeta) = bn.parameter_gradients();
            // Only a constant gamma keeps the output (`conv_batch_norm_tracked`).
            debug_assert!(stats != Moments::FrozenOutputKept || node_gamma.is_none());
            if let Some(node) = node_gamma.filter(|_| stats != Moments::FrozenOutputKept) {
                grads.register::<Flex>(node.id, flex(dgamma, shape_of(&gamma)));
            }
            if let Some(node) = node_beta {
                grads.register::<Flex>(node.id, flex(dbeta, shape_of(&gamma)));
            }
        });
    }
}

/// An op of one input whose gradient needs that input: ReLU / ReLU6 clamps and pools.
trait SingleInputOp: Copy + Send + Sync + std::fmt::Debug + 'static {
    fn forward(self, x: FlexTensor) -> FlexTensor;
    /// The input gradient for the output gradient `dy`.
    fn grad_input(self, x: &FlexTensor, dy: &[f32]) -> FlexTensor;
}

/// `clamp_act`'s bounds.
#[derive(Clone, Copy, Debug)]
struct Clamp(f32, f32);

impl SingleInputOp for Clamp {
    fn forward(self, x: FlexTensor) -> FlexTensor {
        Flex::clamp_act(x, self.0, self.1)
    }
    fn grad_input(self, x: &FlexTensor, dy: &[f32]) -> FlexTensor {
        flex(
            train_norm::clamp_grad(&values(x), dy, self.0, self.1),
            shape_of(x),
        )
    }
}

impl SingleInputOp for TrainPool {
    fn forward(self, x: FlexTensor) -> FlexTensor {
        Flex::nhwc_pool(x, self)
    }
    fn grad_input(self, x: &FlexTensor, dy: &[f32]) -> FlexTensor {
        let dx = TrainPool::grad_input(&self, &values(x), dy);
        flex(dx, vec![self.n, self.h, self.w, self.c])
    }
}

#[derive(Debug)]
struct SingleInputBackward<K>(std::marker::PhantomData<K>);

impl<K: SingleInputOp> Backward<Flex, 1> for SingleInputBackward<K> {
    type State = (NodeId, K);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        consumed(ops.node.id);
        let (x_state, op) = ops.state;
        if let Some(node) = node_x {
            let x = checkpointer.retrieve_node_output::<FlexTensor>(x_state);
            let dx = op.grad_input(&x, &values(&dy));
            register_input_gradient(grads, node.id, node.parents.is_empty(), dx);
        }
    }
}

/// `op` of `x` on autodiff over flex, recording its backward pass when `x` is tracked.
fn single_input<C: CheckpointStrategy, K: SingleInputOp>(
    x: FloatTensor<Autodiff<Flex, C>>,
    op: K,
) -> FloatTensor<Autodiff<Flex, C>> {
    match SingleInputBackward::<K>(std::marker::PhantomData)
        .prepare::<C>([x.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(&x);
            let y = op.forward(x.into_primitive());
            prep.finish((x_state, op), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(op.forward(x.into_primitive())),
    }
}

impl<C: CheckpointStrategy> CpuTrain for Autodiff<Flex, C> {
    fn nhwc_conv(
        x: FloatTensor<Self>,
        filter: FloatTensor<Self>,
        spec: TrainConv,
    ) -> FloatTensor<Self> {
        match ConvBackward
            .prepare::<C>([x.node(), filter.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                // A model keeping Burn's [out, in, kh, kw] filters passes a permuted view:
                // gathered once here for both passes, not again for the input gradient.
                let filter = contiguous(filter.into_primitive());
                let y = Flex::nhwc_conv(x.into_primitive(), filter.clone(), spec);
                prep.finish((x_state, filter, spec), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::nhwc_conv(
                x.into_primitive(),
                filter.into_primitive(),
                spec,
            )),
        }
    }

    fn channel_moments(x: FloatTensor<Self>) -> FloatTensor<Self> {
        <FloatTensor<Self>>::new(Flex::channel_moments(x.into_primitive()))
    }

    fn batch_norm_train(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        moments: FloatTensor<Self>,
        eps: f32,
        lo: f32,
        hi: f32,
        frozen: bool,
    ) -> FloatTensor<Self> {
        let moments = moments.into_primitive();
        match BatchNormBackward
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let gamma_state = prep.checkpoint(&gamma);
                let beta = beta.into_primitive();
                let y = Flex::batch_norm_train(
                    x.into_primitive(),
                    gamma.into_primitive(),
                    beta.clone(),
                    moments.clone(),
                    eps,
                    lo,
                    hi,
                    frozen,
                );
                let bounds = clamp_bounds(lo, hi);
                prep.finish(
                    (x_state, gamma_state, beta, moments, eps, bounds, frozen),
                    y,
                )
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::batch_norm_train(
                x.into_primitive(),
                gamma.into_primitive(),
                beta.into_primitive(),
                moments,
                eps,
                lo,
                hi,
                frozen,
            )),
        }
    }

    fn conv_batch_norm_train(
        x: FloatTensor<Self>,
        filter: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        spec: TrainConv,
        eps: f32,
        lo: f32,
        hi: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (out, moments) =
            conv_batch_norm_tracked::<C>(x, filter, gamma, beta, None, spec, eps, (lo, hi));
        (out, <FloatTensor<Self>>::new(moments))
    }

    fn conv_batch_norm_frozen(
        x: FloatTensor<Self>,
        filter: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        moments: FloatTensor<Self>,
        spec: TrainConv,
        eps: f32,
        lo: f32,
        hi: f32,
    ) -> FloatTensor<Self> {
        let moments = Some(moments.into_primitive());
        conv_batch_norm_tracked::<C>(x, filter, gamma, beta, moments, spec, eps, (lo, hi)).0
    }

    fn clamp_act(x: FloatTensor<Self>, lo: f32, hi: f32) -> FloatTensor<Self> {
        single_input::<C, _>(x, Clamp(lo, hi))
    }

    fn nhwc_pool(x: FloatTensor<Self>, spec: TrainPool) -> FloatTensor<Self> {
        single_input::<C, _>(x, spec)
    }
}

/// Whether autodiff tracks `t`: a parameter, or computed from one (a gradient would reach
/// it), as an op reading it alone would be recorded.
fn is_tracked<C: CheckpointStrategy>(t: &FloatTensor<Autodiff<Flex, C>>) -> bool {
    matches!(
        SingleInputBackward::<Clamp>(std::marker::PhantomData)
            .prepare::<C>([t.node()])
            .compute_bound()
            .stateful(),
        OpsKind::Tracked(_)
    )
}

/// The autodiff op of [`CpuTrain::conv_batch_norm_train`] (`frozen` `None`: the batch's
/// moments) and [`CpuTrain::conv_batch_norm_frozen`] (`frozen`: the given moments, no
/// gradient through them): the output and the moments.
#[allow(clippy::too_many_arguments)]
fn conv_batch_norm_tracked<C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<Flex, C>>,
    filter: FloatTensor<Autodiff<Flex, C>>,
    gamma: FloatTensor<Autodiff<Flex, C>>,
    beta: FloatTensor<Autodiff<Flex, C>>,
    frozen: Option<FlexTensor>,
    spec: TrainConv,
    eps: f32,
    (lo, hi): (f32, f32),
) -> (FloatTensor<Autodiff<Flex, C>>, FlexTensor) {
    match ConvBatchNormBackward
        .prepare::<C>([x.node(), filter.node(), gamma.node(), beta.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let x_state = prep.checkpoint(&x);
            let gamma_state = prep.checkpoint(&gamma);
            // A model keeping Burn's [out, in, kh, kw] filters passes a permuted view:
            // gathered once here for both passes.
            let filter = contiguous(filter.into_primitive());
            let beta = beta.into_primitive();
            let bounds = clamp_bounds(lo, hi);
            // Frozen moments and a constant gamma (no gradient needs the convolution's
            // output): the batch norm in the convolution's epilogue, its backward pass
            // from the output.
            let constant_gamma = !is_tracked::<C>(&gamma);
            let (x, gamma) = (x.into_primitive(), gamma.into_primitive());
            let fused = frozen.as_ref().filter(|_| constant_gamma).and_then(|m| {
                conv_frozen_batch_norm_fused(&x, &filter, &gamma, &beta, m, spec, eps, (lo, hi))
            });
            let (kept, moments, out, stats) = match (fused, frozen) {
                (Some(out), Some(m)) => (out.clone(), m, out, Moments::FrozenOutputKept),
                (_, frozen) => {
                    let stats = match frozen {
                        Some(_) => Moments::Frozen,
                        None => Moments::Batch,
                    };
                    let (y, moments, out) = conv_batch_norm_forward(
                        x,
                        filter.clone(),
                        gamma,
                        beta.clone(),
                        frozen,
                        spec,
                        eps,
                        (lo, hi),
                    );
                    (y, moments, out, stats)
                }
            };
            let state = (
                x_state,
                filter,
                kept,
                gamma_state,
                beta,
                moments.clone(),
                spec,
                eps,
                bounds,
                stats,
            );
            (prep.finish(state, out), moments)
        }
        OpsKind::UnTracked(prep) => {
            // Untracked: the flex ops themselves (the frozen one fused where it can be).
            let (x, filter) = (x.into_primitive(), filter.into_primitive());
            let (gamma, beta) = (gamma.into_primitive(), beta.into_primitive());
            let (out, moments) = match frozen {
                Some(m) => (
                    Flex::conv_batch_norm_frozen(
                        x,
                        filter,
                        gamma,
                        beta,
                        m.clone(),
                        spec,
                        eps,
                        lo,
                        hi,
                    ),
                    m,
                ),
                None => Flex::conv_batch_norm_train(x, filter, gamma, beta, spec, eps, lo, hi),
            };
            (prep.finish(out), moments)
        }
    }
}

/// A float32 flex tensor (not tracked by autodiff) whose elements fill a block of its
/// storage once, in some order of its axes: `(the block, the axes outermost first)`. A
/// contiguous tensor's order is `0..rank`; a filter Burn keeps as `[out, in, kh, kw]` over
/// TensorFlow's HWIO block (a convolution's filter gradient here) is `[2, 3, 1, 0]`. `None`
/// for other layouts (strided slices, broadcasts, flips) and other tensors.
pub fn storage_order(t: &DispatchTensor) -> Option<(&[f32], Vec<usize>)> {
    let DispatchTensorKind::Flex(burn::backend::BackendTensor::Float(f)) = &t.kind else {
        return None;
    };
    if f.dtype() != DType::F32 {
        return None;
    }
    let layout = f.layout();
    let shape: &[usize] = layout.shape();
    let n: usize = shape.iter().product();
    let storage = f.storage::<f32>();
    let block = storage.get(layout.start_offset()..layout.start_offset().checked_add(n)?)?;
    if layout.is_contiguous() {
        return Some((block, (0..shape.len()).collect()));
    }
    let strides = layout.strides();
    // Axes of one element first (their strides say nothing), then by falling stride.
    let mut axes: Vec<usize> = (0..shape.len()).collect();
    axes.sort_by_key(|&a| (shape[a] != 1, std::cmp::Reverse(strides[a]), a));
    let mut expected = 1usize;
    for &a in axes.iter().rev() {
        if shape[a] != 1 && usize::try_from(strides[a]).ok()? != expected {
            return None;
        }
        expected *= shape[a];
    }
    Some((block, axes))
}

/// `values` of a tensor of `shape` laid out with its axes in the order `from` (outermost
/// first, as [`storage_order`] gives them), laid out in the order `to` (gathered on the
/// thread pool; a copy when the orders are the same).
pub fn reorder(values: &[f32], shape: &[usize], from: &[usize], to: &[usize]) -> Vec<f32> {
    assert_eq!(
        values.len(),
        shape.iter().product::<usize>(),
        "values of the shape"
    );
    if from == to {
        return values.to_vec();
    }
    let mut stride = vec![0usize; shape.len()];
    let mut s = 1;
    for &a in from.iter().rev() {
        stride[a] = s;
        s *= shape[a];
    }
    let dims: Vec<usize> = to.iter().map(|&a| shape[a]).collect();
    let strides: Vec<usize> = to.iter().map(|&a| stride[a]).collect();
    cpu_kernels::ops::gather_strided(values, 0, &dims, &strides)
}

/// Whether a float32 tensor lives on flex (with or without autodiff), where [`CpuTrain`]
/// runs.
pub fn runs_on_flex(t: &DispatchTensor) -> bool {
    let on_flex = match &t.kind {
        DispatchTensorKind::Flex(_) => true,
        DispatchTensorKind::Autodiff(inner) => matches!(**inner, DispatchTensorKind::Flex(_)),
        #[allow(unreachable_patterns)]
        _ => false,
    };
    on_flex && TensorMetadata::dtype(t) == DType::F32
}

/// The values of a float32 flex tensor (not tracked by autodiff) in row-major order: its
/// own storage when contiguous, else a strided view (a permuted filter's gradient) gathered
/// on the thread pool; `None` for other tensors.
pub fn host_values(t: &DispatchTensor) -> Option<Cow<'_, [f32]>> {
    match &t.kind {
        DispatchTensorKind::Flex(burn::backend::BackendTensor::Float(f))
            if f.dtype() == DType::F32 =>
        {
            Some(values(f))
        }
        _ => None,
    }
}

/// The convolution of `x` with `filter` (both checked by the caller with [`runs_on_flex`],
/// shapes matching `spec`).
pub fn conv(x: DispatchTensor, filter: DispatchTensor, spec: TrainConv) -> DispatchTensor {
    <Dispatch as CpuTrain>::nhwc_conv(x, filter, spec)
}

/// Training-mode batch normalisation of `x` over its last axis (`c` channels; `gamma`,
/// `beta` of shape `[c]`, all on flex), clamped to `[lo, hi]`: `(y, batch mean, biased
/// batch variance)`, the statistics not differentiated.
pub fn batch_norm_train(
    x: DispatchTensor,
    gamma: DispatchTensor,
    beta: DispatchTensor,
    eps: f32,
    (lo, hi): (f32, f32),
) -> (DispatchTensor, DispatchTensor, DispatchTensor) {
    let moments = <Dispatch as CpuTrain>::channel_moments(x.clone());
    let y = <Dispatch as CpuTrain>::batch_norm_train(
        x,
        gamma,
        beta,
        moments.clone(),
        eps,
        lo,
        hi,
        false,
    );
    let (mean, var) = mean_and_variance(moments);
    (y, mean, var)
}

/// The convolution `spec` of `x` with `filter` (checked as for [`conv`]), then
/// [`batch_norm_train`] of its output: `(y, batch mean, biased batch variance)`, the same
/// values, as one op whose backward pass hands the batch norm's input gradient to the
/// convolution's a block of pixels at a time where it can, instead of writing it whole and
/// reading it back (an unpadded 1x1 convolution to more channels over many pixels: [`TrainConv::grad_input_and_filter_after`]).
pub fn conv_batch_norm_train(
    x: DispatchTensor,
    filter: DispatchTensor,
    spec: TrainConv,
    gamma: DispatchTensor,
    beta: DispatchTensor,
    eps: f32,
    (lo, hi): (f32, f32),
) -> (DispatchTensor, DispatchTensor, DispatchTensor) {
    let (out, moments) =
        <Dispatch as CpuTrain>::conv_batch_norm_train(x, filter, gamma, beta, spec, eps, lo, hi);
    let (mean, var) = mean_and_variance(moments);
    (out, mean, var)
}

/// The mean and variance rows of `[2, c]` moments, each `[c]`.
fn mean_and_variance(moments: DispatchTensor) -> (DispatchTensor, DispatchTensor) {
    let c = TensorMetadata::shape(&moments)[1];
    let both = Dispatch::float_reshape(moments, Shape::from([2 * c]));
    let mean = Dispatch::float_slice(both.clone(), &[Slice::new(0, Some(c as isize), 1)]);
    let var = Dispatch::float_slice(both, &[Slice::new(c as isize, Some(2 * c as isize), 1)]);
    (mean, var)
}

/// Inference-mode batch normalisation over the last axis with the moving `mean` and `var`
/// (all `[c]`, on flex; no gradient reaches them), clamped to `[lo, hi]`: of `x`, or, with
/// `conv` (a filter and its convolution, checked as for [`conv`]), of the convolution of `x`,
/// the same values as one op whose backward pass hands the batch norm's input gradient to
/// the convolution's a block of pixels at a time where it can (see
/// [`conv_batch_norm_train`]) and which gathers a permuted filter once for both passes.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_frozen(
    x: DispatchTensor,
    conv: Option<(DispatchTensor, TrainConv)>,
    gamma: DispatchTensor,
    beta: DispatchTensor,
    mean: DispatchTensor,
    var: DispatchTensor,
    eps: f32,
    (lo, hi): (f32, f32),
) -> DispatchTensor {
    let c = TensorMetadata::shape(&mean)[0];
    let moments =
        Dispatch::float_reshape(Dispatch::float_cat(vec![mean, var], 0), Shape::from([2, c]));
    match conv {
        Some((filter, spec)) => <Dispatch as CpuTrain>::conv_batch_norm_frozen(
            x, filter, gamma, beta, moments, spec, eps, lo, hi,
        ),
        None => {
            <Dispatch as CpuTrain>::batch_norm_train(x, gamma, beta, moments, eps, lo, hi, true)
        }
    }
}

/// The range `Relu` / `Relu6` clamp to, `None` for other ops.
pub fn relu_bounds(op: &str) -> Option<(f32, f32)> {
    match op {
        "Relu" => Some((0.0, f32::INFINITY)),
        "Relu6" => Some((0.0, 6.0)),
        _ => None,
    }
}

/// The pool `spec` of `x` on flex (checked by the caller with [`runs_on_flex`], shape and
/// geometry matching `spec`: [`TrainPool::output_hw`] is `Some`).
pub fn pool(x: DispatchTensor, spec: TrainPool) -> DispatchTensor {
    <Dispatch as CpuTrain>::nhwc_pool(x, spec)
}

/// `x` clamped to `[lo, hi]` on flex (checked by the caller with [`runs_on_flex`]).
pub fn clamp_act(x: DispatchTensor, lo: f32, hi: f32) -> DispatchTensor {
    <Dispatch as CpuTrain>::clamp_act(x, lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Device, Tensor};

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| {
                let h = (i ^ seed.wrapping_mul(0x9e37_79b9)).wrapping_mul(0x85eb_ca6b);
                ((h >> 8) % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    /// A convolution of `[n, h, w, c]` inputs: `(kh, kw, cout, stride, pad)`, pads alike.
    fn spec(
        [n, h, w, c]: [usize; 4],
        (kh, kw, cout, s, p): (usize, usize, usize, usize, usize),
    ) -> TrainConv {
        TrainConv {
            n,
            h,
            w,
            cin: c,
            cout,
            kh,
            kw,
            stride: [s, s],
            pads: [p; 4],
            depthwise: false,
        }
    }

    /// The same convolution by Burn's own NCHW op, NHWC in and out (the reference).
    fn burn_conv(x: Tensor<4>, hwio: Tensor<4>, s: usize, p: usize) -> Tensor<4> {
        let options = ConvOptions::new([s, s], [p, p], [1, 1], 1);
        conv2d(
            x.permute([0, 3, 1, 2]),
            hwio.permute([3, 2, 0, 1]),
            None,
            options,
        )
        .permute([0, 2, 3, 1])
    }

    /// An input read by several convolutions (a Mixed block's branch heads) and a pool gets
    /// the sum of their input gradients, whichever adds them (Burn, the kernels' epilogue,
    /// a pass of their own): the same as Burn's own NCHW ops give.
    #[test]
    fn an_input_read_by_several_operations_gets_the_sum_of_their_gradients() {
        let device = Device::flex().autodiff();
        let (n, h, w, c) = (2, 9, 8, 12);
        let x0 = values(n * h * w * c, 1);
        // (kh, kw, cout, stride, pad): 1x1 heads (their input gradient runs directly,
        // taking the previous part in its epilogue), a 3x3 SAME one, a strided 3x3.
        let convs = [
            (1, 1, 16, 1, 0),
            (1, 1, 7, 1, 0),
            (3, 3, 20, 1, 1),
            (3, 3, 5, 2, 0),
        ];
        let filters: Vec<Vec<f32>> = convs
            .iter()
            .enumerate()
            .map(|(i, &(kh, kw, co, ..))| values(kh * kw * c * co, 10 + i as u32))
            .collect();
        let grad = |ours: bool| -> Vec<f32> {
            let leaf = Tensor::<4>::from_data(TensorData::new(x0.clone(), [n, h, w, c]), &device)
                .require_grad();
            // An operation's output, as a Mixed block's input is (a leaf's gradient is
            // never taken back).
            let x = leaf.clone().mul_scalar(1.0);
            let mut total = Tensor::<1>::zeros([1], &device);
            for (k, (&(kh, kw, co, s, p), f)) in convs.iter().zip(&filters).enumerate() {
                let hwio =
                    Tensor::<4>::from_data(TensorData::new(f.clone(), [kh, kw, c, co]), &device);
                let y = if ours {
                    Tensor::<4>::from_dispatch(conv(
                        x.clone().into_dispatch(),
                        hwio.into_dispatch(),
                        spec([n, h, w, c], (kh, kw, co, s, p)),
                    ))
                } else {
                    burn_conv(x.clone(), hwio, s, p)
                };
                let weight = (k + 1) as f32;
                total = total + (y.clone() * y).sum().mul_scalar(weight);
            }
            // The pool's part too (its gradient registered through the same path).
            let pooled = if ours {
                let spec = cpu_kernels::TrainPool {
                    n,
                    h,
                    w,
                    c,
                    kh: 3,
                    kw: 3,
                    stride: [1, 1],
                    pads: [1; 4],
                    max: true,
                };
                Tensor::<4>::from_dispatch(pool(x.clone().into_dispatch(), spec))
            } else {
                let nchw = x.clone().permute([0, 3, 1, 2]);
                let options = burn::tensor::ops::MaxPoolOptions {
                    kernel_size: [3, 3],
                    stride: [1, 1],
                    padding: [(1, 1), (1, 1)],
                    dilation: [1, 1],
                    ceil_mode: false,
                };
                burn::tensor::module::max_pool2d(nchw, options).permute([0, 2, 3, 1])
            };
            total = total + pooled.sum();
            let grads = total.backward();
            leaf.grad(&grads)
                .expect("a gradient for the input")
                .into_data()
                .try_into_vec::<f32>()
                .unwrap()
        };
        let (got, want) = (grad(true), grad(false));
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!((g - w).abs() <= 1e-5 * scale, "[{i}]: {g} vs Burn's {w}");
        }
    }

    /// A convolution and its frozen batch norm as one op gives the gradients Burn's own
    /// ops give for the same computation (NCHW convolution, broadcast batch norm, clamp), for
    /// the input, the filter, gamma and beta; the moving statistics get none.
    #[test]
    fn a_convolution_with_its_frozen_batch_norm_gets_burns_gradients() {
        let device = Device::flex().autodiff();
        let (n, h, w, c) = (2, 9, 8, 12);
        // (kh, kw, cout, stride, pad, clamp): a 1x1 with ReLU6 (both gradients in one pass
        // over the batch norm's blocks), a 3x3 SAME with ReLU, a strided 3x3 without.
        let cases = [
            (1, 1, 40, 1, 0, (0.0, 6.0)),
            (3, 3, 20, 1, 1, (0.0, f32::INFINITY)),
            (3, 3, 5, 2, 0, (f32::NEG_INFINITY, f32::INFINITY)),
        ];
        for (case, &(kh, kw, co, s, p, (lo, hi))) in cases.iter().enumerate() {
            let f0 = values(kh * kw * c * co, 20 + case as u32);
            let x0 = values(n * h * w * c, 1);
            let up = values(n * h * w * co, 7);
            let run = |ours: bool| -> Vec<Vec<f32>> {
                let t4 = |v: &[f32], shape: [usize; 4]| {
                    Tensor::<4>::from_data(TensorData::new(v.to_vec(), shape), &device)
                };
                let t1 = |v: Vec<f32>| {
                    let k = v.len();
                    Tensor::<1>::from_data(TensorData::new(v, [k]), &device)
                };
                let x = t4(&x0, [n, h, w, c]).require_grad();
                let hwio = t4(&f0, [kh, kw, c, co]).require_grad();
                let gamma = t1(values(co, 5).iter().map(|v| v + 1.5).collect()).require_grad();
                let beta = t1(values(co, 6)).require_grad();
                let mean = t1(values(co, 3));
                let var = t1(values(co, 4).iter().map(|v| v.abs() + 0.5).collect());
                let y: Tensor<4> = if ours {
                    Tensor::from_dispatch(batch_norm_frozen(
                        x.clone().into_dispatch(),
                        Some((
                            hwio.clone().into_dispatch(),
                            spec([n, h, w, c], (kh, kw, co, s, p)),
                        )),
                        gamma.clone().into_dispatch(),
                        beta.clone().into_dispatch(),
                        mean.into_dispatch(),
                        var.into_dispatch(),
                        1e-3,
                        (lo, hi),
                    ))
                } else {
                    let z = burn_conv(x.clone(), hwio.clone(), s, p);
                    let scale = gamma.clone() / var.add_scalar(1e-3).sqrt();
                    let u = (z - mean.reshape([1, 1, 1, co])) * scale.reshape([1, 1, 1, co])
                        + beta.clone().reshape([1, 1, 1, co]);
                    u.clamp(lo.max(-1e30), hi.min(1e30))
                };
                let [_, oh, ow, _] = y.dims();
                let weights = t4(&up[..n * oh * ow * co], [n, oh, ow, co]);
                let grads = (y * weights).sum().backward();
                let v4 = |g: Option<Tensor<4>>| g.unwrap().into_data().try_into_vec().unwrap();
                let v1 = |g: Option<Tensor<1>>| g.unwrap().into_data().try_into_vec().unwrap();
                vec![
                    v4(x.grad(&grads)),
                    v4(hwio.grad(&grads)),
                    v1(gamma.grad(&grads)),
                    v1(beta.grad(&grads)),
                ]
            };
            let (got, want) = (run(true), run(false));
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                let scale = w.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert!(scale > 0.0, "case {case}: gradient {k} all zeros");
                for (i, (a, b)) in g.iter().zip(w).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5 * scale,
                        "case {case}, gradient {k} [{i}]: {a} vs Burn's {b}"
                    );
                }
            }
        }
    }
}
