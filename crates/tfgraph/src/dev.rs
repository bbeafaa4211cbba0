//! Rank-free float tensors on a Burn device: thin wrappers over the dispatch backend's ops
//! (so that gradients flow through them on an autodiff device).

use burn::backend::ops::{ActivationOps, BoolTensorOps, FloatTensorOps, IntTensorOps, ModuleOps};
use burn::backend::{get_or_init_device_settings, Dispatch, DispatchTensor, TensorMetadata};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Float, Shape, Slice, Tensor, TensorData};

pub type B = Dispatch;
/// A float (f32) tensor of any rank on a device.
pub type FT = DispatchTensor;
/// A bool tensor of any rank on a device.
pub type BT = DispatchTensor;

pub fn shape(t: &FT) -> Vec<usize> {
    TensorMetadata::shape(t).to_vec()
}

/// Whether the device holds rank-0 tensors: burn-ndarray (deprecated) does not, so scalars
/// live there as `[1]` (numpy broadcasting treats both alike).
fn holds_rank0(d: &burn::backend::DispatchDevice) -> bool {
    !format!("{d:?}").contains("NdArray")
}

/// The shape to give a device tensor: `[]` becomes `[1]` where rank 0 is not available.
fn device_shape(s: &[usize], d: &burn::backend::DispatchDevice) -> Vec<usize> {
    if s.is_empty() && !holds_rank0(d) {
        vec![1]
    } else {
        s.to_vec()
    }
}

/// Host values to the device. Scalars travel as `[1]` and are reshaped (some backends'
/// allocators do not take rank-0 layouts).
pub fn upload(v: Vec<f32>, shape: &[usize], device: &Device) -> FT {
    if shape.is_empty() && !holds_rank0(device.as_dispatch()) {
        return B::float_from_data(TensorData::new(v, vec![1]), device.as_dispatch());
    }
    if shape.is_empty() {
        let t = B::float_from_data(TensorData::new(v, vec![1]), device.as_dispatch());
        return B::float_reshape(t, Shape::from(Vec::<usize>::new()));
    }
    B::float_from_data(TensorData::new(v, shape.to_vec()), device.as_dispatch())
}

pub fn upload_bool(v: Vec<bool>, shape: &[usize], device: &Device) -> BT {
    if shape.is_empty() && !holds_rank0(device.as_dispatch()) {
        return B::bool_from_data(TensorData::new(v, vec![1]), device.as_dispatch());
    }
    if shape.is_empty() {
        let t = B::bool_from_data(TensorData::new(v, vec![1]), device.as_dispatch());
        return B::bool_reshape(t, Shape::from(Vec::<usize>::new()));
    }
    B::bool_from_data(TensorData::new(v, shape.to_vec()), device.as_dispatch())
}

/// The values of a contiguous float32 flex tensor, borrowed: no copy, even while other
/// nodes still hold the tensor. `None` on other devices, dtypes or layouts.
pub fn flex_f32(t: &FT) -> Option<&[f32]> {
    match &t.kind {
        burn::backend::DispatchTensorKind::Flex(burn::backend::BackendTensor::Float(f)) => {
            f.as_slice::<f32>()
        }
        _ => None,
    }
}

/// Reads a device tensor back (waits for the device).
pub fn download(t: FT) -> Result<Vec<f32>, String> {
    let n: usize = shape(&t).iter().product();
    let flat = B::float_reshape(t, Shape::from(vec![n]));
    let data = Tensor::<1, Float>::from_dispatch(flat)
        .try_into_data()
        .map_err(|e| format!("reading a tensor from the device failed: {e:?}"))?;
    data.convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("reading a tensor from the device failed: {e:?}"))
}

pub fn download_bool(t: BT) -> Result<Vec<bool>, String> {
    let n: usize = shape(&t).iter().product();
    let flat = B::bool_reshape(t, Shape::from(vec![n]));
    let data = Tensor::<1, burn::tensor::Bool>::from_dispatch(flat)
        .try_into_data()
        .map_err(|e| format!("reading a tensor from the device failed: {e:?}"))?;
    data.iter::<bool>().map(Ok).collect()
}

pub fn reshape(t: FT, s: &[usize]) -> FT {
    let s = device_shape(s, &TensorMetadata::device(&t));
    B::float_reshape(t, Shape::from(s))
}
pub fn bool_reshape(t: BT, s: &[usize]) -> BT {
    let s = device_shape(s, &TensorMetadata::device(&t));
    B::bool_reshape(t, Shape::from(s))
}
pub fn permute(t: FT, axes: &[usize]) -> FT {
    B::float_permute(t, axes)
}
pub fn expand(t: FT, s: &[usize]) -> FT {
    B::float_expand(t, Shape::from(s.to_vec()))
}
pub fn bool_expand(t: BT, s: &[usize]) -> BT {
    B::bool_expand(t, Shape::from(s.to_vec()))
}
pub fn add(a: FT, b: FT) -> FT {
    B::float_add(a, b)
}
pub fn sub(a: FT, b: FT) -> FT {
    B::float_sub(a, b)
}
pub fn mul(a: FT, b: FT) -> FT {
    B::float_mul(a, b)
}
pub fn div(a: FT, b: FT) -> FT {
    B::float_div(a, b)
}
pub fn add_scalar(a: FT, s: f32) -> FT {
    B::float_add_scalar(a, s.into())
}
pub fn mul_scalar(a: FT, s: f32) -> FT {
    B::float_mul_scalar(a, s.into())
}
pub fn sub_scalar(a: FT, s: f32) -> FT {
    B::float_sub_scalar(a, s.into())
}

pub fn powf(a: FT, b: FT) -> FT {
    B::float_powf(a, b)
}
/// Batched matrix product `[.., m, k] x [.., k, n]` (equal batch dims). An empty operand
/// gives zeros of the result's shape (some backends divide by a zero dimension).
pub fn matmul(a: FT, b: FT) -> FT {
    let (sa, sb) = (shape(&a), shape(&b));
    if sa.contains(&0) || sb.contains(&0) {
        let mut out = sa.clone();
        if let (Some(last), Some(&n)) = (out.last_mut(), sb.last()) {
            *last = n;
        }
        let device = TensorMetadata::device(&a);
        return B::float_zeros(Shape::from(out), &device, burn::tensor::FloatDType::F32);
    }
    B::float_matmul(a, b)
}
pub fn neg(a: FT) -> FT {
    B::float_neg(a)
}
pub fn exp(a: FT) -> FT {
    B::float_exp(a)
}
pub fn log(a: FT) -> FT {
    B::float_log(a)
}
pub fn log1p(a: FT) -> FT {
    B::float_log1p(a)
}
pub fn sqrt(a: FT) -> FT {
    B::float_sqrt(a)
}
pub fn abs(a: FT) -> FT {
    B::float_abs(a)
}
pub fn tanh(a: FT) -> FT {
    B::float_tanh(a)
}
pub fn erf(a: FT) -> FT {
    B::float_erf(a)
}
pub fn sin(a: FT) -> FT {
    B::float_sin(a)
}
pub fn cos(a: FT) -> FT {
    B::float_cos(a)
}
pub fn floor(a: FT) -> FT {
    B::float_floor(a)
}
pub fn ceil(a: FT) -> FT {
    B::float_ceil(a)
}
pub fn round(a: FT) -> FT {
    B::float_round(a)
}
pub fn sign(a: FT) -> FT {
    B::float_sign(a)
}
pub fn recip(a: FT) -> FT {
    B::float_recip(a)
}
pub fn relu(a: FT) -> FT {
    B::relu(a)
}
pub fn clamp(a: FT, lo: f32, hi: f32) -> FT {
    B::float_clamp(a, lo.into(), hi.into())
}
pub fn detach(a: FT) -> FT {
    B::float_detach(a)
}
pub fn sum_dim(a: FT, d: usize) -> FT {
    B::float_sum_dim(a, d)
}
pub fn max_dim(a: FT, d: usize) -> FT {
    B::float_max_dim(a, d)
}
pub fn min_dim(a: FT, d: usize) -> FT {
    B::float_min_dim(a, d)
}
pub fn prod_dim(a: FT, d: usize) -> FT {
    B::float_prod_dim(a, d)
}
pub fn cumsum(a: FT, d: usize) -> FT {
    B::float_cumsum(a, d)
}
pub fn cat(ts: Vec<FT>, d: usize) -> FT {
    B::float_cat(ts, d)
}
pub fn flip(a: FT, axes: &[usize]) -> FT {
    B::float_flip(a, axes)
}
pub fn slice(a: FT, s: &[Slice]) -> FT {
    B::float_slice(a, s)
}
pub fn max_pair(a: FT, b: FT) -> FT {
    // max(a, b) = where(a < b, b, a), NaN-propagation aside.
    let m = lower(a.clone(), b.clone());
    B::float_mask_where(a, m, b)
}
pub fn min_pair(a: FT, b: FT) -> FT {
    let m = lower(b.clone(), a.clone());
    B::float_mask_where(a, m, b)
}
fn bool_dtype(t: &FT) -> burn::tensor::BoolDType {
    let device = burn::backend::TensorMetadata::device(t);
    get_or_init_device_settings::<B>(&device).bool_dtype
}
fn int_dtype(t: &FT) -> burn::tensor::IntDType {
    let device = burn::backend::TensorMetadata::device(t);
    get_or_init_device_settings::<B>(&device).int_dtype
}
pub fn lower(a: FT, b: FT) -> BT {
    let d = bool_dtype(&a);
    B::float_lower(a, b, d)
}
pub fn lower_equal(a: FT, b: FT) -> BT {
    let d = bool_dtype(&a);
    B::float_lower_equal(a, b, d)
}
pub fn greater(a: FT, b: FT) -> BT {
    let d = bool_dtype(&a);
    B::float_greater(a, b, d)
}
pub fn greater_equal(a: FT, b: FT) -> BT {
    let d = bool_dtype(&a);
    B::float_greater_equal(a, b, d)
}
pub fn equal(a: FT, b: FT) -> BT {
    let d = bool_dtype(&a);
    B::float_equal(a, b, d)
}
pub fn not_equal(a: FT, b: FT) -> BT {
    let d = bool_dtype(&a);
    B::float_not_equal(a, b, d)
}
pub fn bool_not(a: BT) -> BT {
    B::bool_not(a)
}
/// `where(mask, value, t)`.
pub fn mask_where(t: FT, mask: BT, value: FT) -> FT {
    B::float_mask_where(t, mask, value)
}
pub fn bool_to_float(a: BT) -> FT {
    B::bool_into_float(a, burn::tensor::FloatDType::F32)
}
pub fn argmax(a: FT, d: usize) -> Result<Vec<i64>, String> {
    let it = int_dtype(&a);
    let idx = B::float_argmax(a, d, it);
    read_int(idx)
}
pub fn argmin(a: FT, d: usize) -> Result<Vec<i64>, String> {
    let it = int_dtype(&a);
    let idx = B::float_argmin(a, d, it);
    read_int(idx)
}
fn read_int(t: DispatchTensor) -> Result<Vec<i64>, String> {
    let n: usize = TensorMetadata::shape(&t).iter().product();
    let flat = B::int_reshape(t, Shape::from(vec![n]));
    let data = Tensor::<1, burn::tensor::Int>::from_dispatch(flat)
        .try_into_data()
        .map_err(|e| format!("reading a tensor from the device failed: {e:?}"))?;
    Ok(data.iter::<i64>().collect())
}
/// Selects `indices` along `dim` (a gather of whole slices).
pub fn select(a: FT, dim: usize, indices: &[i64], device: &Device) -> FT {
    // i32 indices: wgpu has no 64-bit integers.
    let v: Vec<i32> = indices.iter().map(|&i| i as i32).collect();
    let idx = B::int_from_data(
        TensorData::new(v, vec![indices.len()]),
        device.as_dispatch(),
    );
    B::float_select(a, dim, idx)
}
/// `a[indices[i]] += v[i]` along `dim` (a scatter-add of whole slices).
pub fn select_add(a: FT, dim: usize, indices: &[i64], v: FT, device: &Device) -> FT {
    let iv: Vec<i32> = indices.iter().map(|&i| i as i32).collect();
    let idx = B::int_from_data(
        TensorData::new(iv, vec![indices.len()]),
        device.as_dispatch(),
    );
    B::float_select_assign(a, dim, idx, v, burn::tensor::IndexingUpdateOp::Add)
}
pub fn conv2d(x: FT, w: FT, b: Option<FT>, opts: ConvOptions<2>) -> FT {
    B::conv2d(x, w, b, opts)
}
pub fn avg_pool2d(x: FT, k: [usize; 2], s: [usize; 2]) -> FT {
    B::avg_pool2d(x, k, s, [0, 0], true, false)
}
pub fn max_pool2d(x: FT, k: [usize; 2], s: [usize; 2]) -> FT {
    B::max_pool2d(x, k, s, [0, 0], [1, 1], false)
}
pub fn zeros(shape: &[usize], device: &Device) -> FT {
    let n: usize = shape.iter().product();
    upload(vec![0.0; n], shape, device)
}
pub fn div_scalar(a: FT, s: f32) -> FT {
    B::float_div_scalar(a, s.into())
}
pub fn conv_transpose2d(x: FT, w: FT, opts: burn::tensor::ops::ConvTransposeOptions<2>) -> FT {
    B::conv_transpose2d(x, w, None, opts)
}
