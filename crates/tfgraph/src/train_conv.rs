//! Convolutions on flex through the project's CPU kernels, with their own backward pass:
//! a Burn backend extension (`NhwcConv`) whose flex implementation runs
//! [`cpu_kernels::TrainConv`] on NHWC tensors and whose autodiff implementation records the
//! input and filter gradients ([`TrainConv::grad_input`], [`TrainConv::grad_filter`]).
//! Training through a graph's `training=True` trace then runs its convolutions without
//! Burn's NCHW permutes, im2col and transposed convolutions.
//!
//! Other devices (ndarray, wgpu) keep Burn's own convolution: callers check
//! [`runs_on_flex`] first.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::NodeId;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    backend_extension, Autodiff, Backend, Dispatch, DispatchTensor, DispatchTensorKind, Flex,
    TensorMetadata,
};
use burn::tensor::{DType, TensorData};
use cpu_kernels::TrainConv;

/// A convolution (regular or depthwise, see [`TrainConv`]) on NHWC tensors with a
/// TensorFlow filter, and its two gradients.
#[backend_extension(Flex, Autodiff)]
pub trait NhwcConv: Backend {
    /// `y = conv(x, filter)`, `[n, oh, ow, cout]`.
    fn nhwc_conv(
        x: FloatTensor<Self>,
        filter: FloatTensor<Self>,
        spec: TrainConv,
    ) -> FloatTensor<Self>;
    /// The input's gradient from the output's, `[n, h, w, cin]`.
    fn nhwc_conv_grad_input(
        dy: FloatTensor<Self>,
        filter: FloatTensor<Self>,
        spec: TrainConv,
    ) -> FloatTensor<Self>;
    /// The filter's gradient from the input and the output's gradient (the filter's shape).
    fn nhwc_conv_grad_filter(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        spec: TrainConv,
    ) -> FloatTensor<Self>;
}

/// The values of a float32 flex tensor in row-major order (a copy only when its layout
/// is strided).
fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.to_contiguous().storage::<f32>().to_vec()),
    }
}

fn flex(v: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v, shape))
}

fn filter_shape(s: &TrainConv) -> Vec<usize> {
    let out = if s.depthwise { 1 } else { s.cout };
    vec![s.kh, s.kw, s.cin, out]
}

impl NhwcConv for Flex {
    fn nhwc_conv(x: FlexTensor, filter: FlexTensor, spec: TrainConv) -> FlexTensor {
        let (oh, ow) = spec.output_hw().expect("checked by `train_conv::spec`");
        let y = spec.forward(&values(&x), &values(&filter));
        flex(y, vec![spec.n, oh, ow, spec.cout])
    }

    fn nhwc_conv_grad_input(dy: FlexTensor, filter: FlexTensor, spec: TrainConv) -> FlexTensor {
        let dx = spec.grad_input(&values(&dy), &values(&filter));
        flex(dx, vec![spec.n, spec.h, spec.w, spec.cin])
    }

    fn nhwc_conv_grad_filter(x: FlexTensor, dy: FlexTensor, spec: TrainConv) -> FlexTensor {
        let dw = spec.grad_filter(&values(&x), &values(&dy));
        flex(dw, filter_shape(&spec))
    }
}

#[derive(Debug)]
struct ConvBackward;

impl<B: NhwcConv> Backward<B, 2> for ConvBackward {
    type State = (NodeId, NodeId, TrainConv);

    fn backward(
        self,
        ops: Ops<Self::State, 2>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_filter] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (x_state, filter_state, spec) = ops.state;
        let x = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(x_state);
        let filter = checkpointer.retrieve_node_output::<B::FloatTensorPrimitive>(filter_state);
        if let Some(node) = node_x {
            let dx = B::nhwc_conv_grad_input(grad.clone(), filter, spec);
            grads.register::<B>(node.id, dx);
        }
        if let Some(node) = node_filter {
            grads.register::<B>(node.id, B::nhwc_conv_grad_filter(x, grad, spec));
        }
    }
}

impl<B: NhwcConv, C: CheckpointStrategy> NhwcConv for Autodiff<B, C> {
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
                let filter_state = prep.checkpoint(&filter);
                let y = B::nhwc_conv(x.into_primitive(), filter.into_primitive(), spec);
                prep.finish((x_state, filter_state, spec), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::nhwc_conv(
                x.into_primitive(),
                filter.into_primitive(),
                spec,
            )),
        }
    }

    // The gradients themselves are not differentiated again (no second-order training).
    fn nhwc_conv_grad_input(
        dy: FloatTensor<Self>,
        filter: FloatTensor<Self>,
        spec: TrainConv,
    ) -> FloatTensor<Self> {
        <FloatTensor<Self>>::new(B::nhwc_conv_grad_input(
            dy.into_primitive(),
            filter.into_primitive(),
            spec,
        ))
    }

    fn nhwc_conv_grad_filter(
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        spec: TrainConv,
    ) -> FloatTensor<Self> {
        <FloatTensor<Self>>::new(B::nhwc_conv_grad_filter(
            x.into_primitive(),
            dy.into_primitive(),
            spec,
        ))
    }
}

/// Whether a float32 tensor lives on flex (with or without autodiff), where [`NhwcConv`]
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

/// The convolution of `x` with `filter` through [`NhwcConv`] (both checked by the caller
/// with [`runs_on_flex`], shapes matching `spec`).
pub fn conv(x: DispatchTensor, filter: DispatchTensor, spec: TrainConv) -> DispatchTensor {
    <Dispatch as NhwcConv>::nhwc_conv(x, filter, spec)
}
