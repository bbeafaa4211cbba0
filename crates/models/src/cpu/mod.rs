//! Inference on the CPU with fused kernels ([`cpu_kernels`]): the convolutional networks
//! compiled from their Burn modules into NHWC graphs with batch norms folded into the
//! convolutions, sibling 1x1 convolutions fused, prepacked weights and no layout
//! transposes. Same numbers as the Burn modules (and TensorFlow) up to float rounding;
//! used by the programs on the `flex` backend for inference. Training stays on Burn.
//!
//! - [`InceptionV3Cpu`]: [`crate::inception_v3::InceptionV3`] (classifier, feature
//!   vector, any width, ReLU or ReLU6, any final end point).
//! - [`TransformerCpu`]: Magenta's style transfer network
//!   ([`crate::stylization::Transformer`]).

pub mod inception_v3;
pub mod stylization;

pub use cpu_kernels::{Isa, Nhwc};
pub use inception_v3::InceptionV3Cpu;
pub use stylization::{InceptionPredictorCpu, TransformerCpu};

use burn::nn::conv::Conv2d as BurnConv2d;
use burn::nn::PaddingConfig2d;
use burn::tensor::{Device, Tensor};

/// Whether the CPU engine stands in for a Burn forward pass on `device`: a CPU backend
/// (flex or ndarray), where the engine computes the same function faster. On a GPU device
/// the Burn model runs there.
pub fn serves(device: &Device) -> bool {
    matches!(
        device.as_dispatch(),
        burn::backend::DispatchDevice::Flex(_) | burn::backend::DispatchDevice::NdArray(_)
    )
}
use cpu_kernels::{Act, ConvGeometry, Padding};

/// The values of a Burn tensor (any backend).
pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 tensor data")
}

/// A convolution's weights read off a Burn `Conv2d`, in TensorFlow's HWIO layout, with
/// an optional per-output affine map folded in (batch norm at inference).
pub(crate) struct HwioConv {
    pub geometry: ConvGeometry,
    pub cout: usize,
    pub hwio: Vec<f32>,
    pub bias: Vec<f32>,
    pub act: Act,
}

impl HwioConv {
    /// `conv` with `y = scale * conv(x) + shift` per output channel folded into the
    /// weights and bias (`None`: the conv's own bias, or zeros).
    pub(crate) fn from_burn(
        conv: &BurnConv2d,
        affine: Option<(Vec<f32>, Vec<f32>)>,
        act: Act,
    ) -> Self {
        let [cout, cin, kh, kw] = conv.weight.dims();
        assert_eq!(conv.groups, 1, "grouped convolutions are not compiled");
        assert_eq!(
            conv.dilation,
            [1, 1],
            "dilated convolutions are not compiled"
        );
        let w = values(conv.weight.val());
        let own_bias = conv
            .bias
            .as_ref()
            .map(|b| values(b.val()))
            .unwrap_or_else(|| vec![0.0; cout]);
        let (scale, shift) = affine.unwrap_or_else(|| (vec![1.0; cout], vec![0.0; cout]));
        let mut hwio = vec![0f32; w.len()];
        for o in 0..cout {
            for i in 0..cin {
                for y in 0..kh {
                    for x in 0..kw {
                        hwio[((y * kw + x) * cin + i) * cout + o] =
                            w[((o * cin + i) * kh + y) * kw + x] * scale[o];
                    }
                }
            }
        }
        let bias = (0..cout)
            .map(|o| own_bias[o] * scale[o] + shift[o])
            .collect();
        let padding = match conv.padding {
            PaddingConfig2d::Valid => Padding::Valid,
            PaddingConfig2d::Same => Padding::Same,
            PaddingConfig2d::Explicit(t, l, b, r) => Padding::Zero([t, b, l, r]),
        };
        let mut geometry = ConvGeometry::new(kh, kw, cin).padding(padding);
        geometry.stride = conv.stride;
        HwioConv {
            geometry,
            cout,
            hwio,
            bias,
            act,
        }
    }

    pub(crate) fn weights(&self) -> cpu_kernels::ConvWeights<'_> {
        cpu_kernels::ConvWeights {
            hwio: &self.hwio,
            bias: Some(&self.bias),
            cout: self.cout,
            act: self.act,
        }
    }

    /// Packs this convolution alone.
    pub(crate) fn compile(&self, isa: Isa) -> cpu_kernels::Conv2d {
        cpu_kernels::Conv2d::with_isa(isa, self.geometry, &[self.weights()])
    }
}

/// Packs convolutions with one input and geometry into one pass (one segment each).
pub(crate) fn compile_fused(isa: Isa, convs: &[HwioConv]) -> cpu_kernels::Conv2d {
    let g = convs[0].geometry;
    assert!(
        convs.iter().all(|c| c.geometry == g),
        "fused convs share their geometry"
    );
    let w: Vec<_> = convs.iter().map(HwioConv::weights).collect();
    cpu_kernels::Conv2d::with_isa(isa, g, &w)
}
