//! NHWC f32 inference kernels for the CPU, used by `models` for fast inference of the
//! convolutional networks (Inception-v3, Magenta's style transfer network).
//!
//! - [`Conv2d`]: convolution as an indirect GEMM over weights packed once, with bias and
//!   activation fused into the store, several same-input convolutions fused into one
//!   pass ([`ConvWeights`] segments), zero / TF-SAME / reflection padding, strides and
//!   nearest upsampling of the input; register-tiled kernels for AVX-512 (12x32),
//!   AVX2+FMA (6x16) and portable Rust (4x8), picked at run time ([`Isa`]); 3x3
//!   stride-1 convolutions by Winograd F(4x4, 3x3) (training: F(2x2, 3x3)) and the other
//!   stride-1 ones at least 3 taps wide (`1 x r`, `r x 1`, 5x5, ...) by a one-dimensional
//!   Winograd F(3, 3) along the kernel, one line per kernel row, on the same kernels.
//!   [`GroupedConv2d`]: grouped convolutions as one `Conv2d` per group. [`TrainConv`]: a
//!   convolution's forward pass and both gradients for training (regular and depthwise).
//! - [`DepthwiseConv2d`]: depthwise convolution (TensorFlow filter layout, depth
//!   multiplier, strides, dilation, padding), SIMD over channels, bias and activation
//!   fused. [`Bottleneck`]: MobileNet's inverted-residual block (1x1 expansion,
//!   depthwise, 1x1 projection) computed strip by strip with its middle tensors in cache.
//!   Activations ([`Act`]): ReLU, ReLU6, hard-swish, swish, sigmoid, hard-sigmoid.
//! - [`ops`]: pooling, spatial means, conditional instance norm, elementwise maps.
//!   [`rowwise`]: softmax and layer normalisation over the last axis. [`train_norm`]:
//!   training-mode batch normalisation and clamping activations with their gradients;
//!   [`TrainPool`]: max and average pooling with their input gradients.
//!   [`matmul_batches`]: batches of small strided matrix products (attention). [`optim`]:
//!   Keras' Adam step over a parameter's values.
//!
//! Activations are [`Nhwc`] buffers; [`View`] / [`Slot`] address a channel slice of one,
//! so the branches of a block write straight into their part of the concatenation.
//! Work is spread over rayon's global pool; [`flush_denormals`] flushes denormal floats to
//! zero while a model runs, as TensorFlow does. [`CachingAllocator`] keeps freed activation
//! buffers for reuse (a global allocator for programs).

mod aligned;
mod alloc;
mod bottleneck;
mod conv;
mod conv_grad;
mod denormals;
mod depthwise;
mod depthwise_grad;
mod matmul;
mod microkernel;
pub mod ops;
pub mod optim;
mod ordered;
pub mod rowwise;
mod scratch;
mod simd;
mod tensor;
pub mod train_norm;
mod train_pool;
mod transpose;
mod winograd;
mod winograd_line;

pub use alloc::{retain_heap, CachingAllocator};
pub use bottleneck::Bottleneck;
pub use conv::{Conv2d, ConvGeometry, ConvWeights, GroupedConv2d, Padding};
pub use conv_grad::TrainConv;
pub use denormals::{denormals_flushed, flush_denormals, FlushDenormals};
pub use depthwise::{DepthwiseConv2d, DepthwiseGeometry};
pub use matmul::{matmul_batches, Layout};
pub use microkernel::{Act, Isa, GELU_TANH_C, GELU_TANH_K};
pub use tensor::{Nhwc, Slot, View};
pub use train_pool::TrainPool;
