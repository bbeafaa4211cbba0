//! Keras' Adam update rule (tf_keras and Keras 3 on TensorFlow) for any Burn parameter, keyed by
//! name: `m += (g - m)(1 - β1)`, `v += (g² - v)(1 - β2)`,
//! `p -= lr √(1-β2^t)/(1-β1^t) · m / (√v + ε)`. Burn's Adam puts ε on the bias-corrected
//! `√v̂`, which differs for small gradients. Used by `train-imdb` and `finetune`
//! ([`KerasAdam::step_module`]: every parameter of a module, moments keyed by parameter id;
//! [`KerasAdam::save`] / [`KerasAdam::load`] for checkpoints), and checked against Keras.

use crate::{io, FinetuneError};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Gradients, Tensor, TensorData};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub struct KerasAdam {
    pub lr: f32,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub iterations: u32,
    slots: HashMap<String, Moments>,
}

impl KerasAdam {
    /// Keras' defaults (β1 0.9, β2 0.999, ε 1e-7) with learning rate `lr`.
    pub fn new(lr: f32) -> Self {
        KerasAdam {
            lr,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
            iterations: 0,
            slots: HashMap::new(),
        }
    }

    /// Counts a step; its step size `lr √(1-β2^t)/(1-β1^t)`.
    pub fn next_step(&mut self) -> f32 {
        self.iterations += 1;
        let t = self.iterations as i32;
        self.lr * (1.0 - self.beta_2.powi(t)).sqrt() / (1.0 - self.beta_1.powi(t))
    }

    /// The update of one parameter (its moments kept under `key`) with step size `alpha`.
    pub fn update<const D: usize>(
        &mut self,
        key: &str,
        p: Param<Tensor<D>>,
        grads: &Gradients,
        alpha: f32,
    ) -> Param<Tensor<D>> {
        let Some(g) = p.grad(grads) else { return p };
        let (b1, b2, eps) = (self.beta_1, self.beta_2, self.epsilon);
        p.map(|t| {
            let shape = t.shape();
            let n = shape.num_elements();
            let tracked = t.is_require_grad();
            let inner = t.inner();
            let slot = self.slots.remove(key);
            let new = if cpu_train::runs_on_flex(&inner.clone().into_dispatch()) {
                // On the CPU: one parallel pass over the parameter, its gradient and its
                // moments (kept on the host), each element's operations in Keras' order,
                // over the values in the order the gradient holds them: a convolution's
                // filter gradient is its HWIO block under Burn's [out, in, kh, kw] view, and
                // the moments and the new parameter are kept in that order too, so that
                // neither this update nor the next forward pass gathers a permuted filter.
                let dims: Vec<usize> = shape.dims::<D>().to_vec();
                let logical: Vec<usize> = (0..D).collect();
                let device = inner.device();
                let (pd, gd) = (inner.clone().into_dispatch(), g.clone().into_dispatch());
                let (g, order) = stored_values(&gd, || host_values(g.reshape([n])));
                let (p, from) = stored_values(&pd, || host_values(inner.reshape([n])));
                // A parameter not yet in its gradient's order (the first step): one gather.
                let p = if from == order {
                    p
                } else {
                    Cow::Owned(cpu_train::reorder(&p, &dims, &from, &order))
                };
                let (mut m, mut v) = match slot {
                    Some(s) => s.into_host(&dims, &order),
                    None => (vec![0f32; n], vec![0f32; n]),
                };
                let p = cpu_kernels::optim::keras_adam_step(
                    &p,
                    &g,
                    &mut m,
                    &mut v,
                    (b1, b2, eps, alpha),
                );
                self.slots.insert(
                    key.to_string(),
                    Moments::Host {
                        m,
                        v,
                        shape: dims.clone(),
                        order: order.clone(),
                    },
                );
                if order == logical {
                    Tensor::from_data(TensorData::new(p, shape.clone()), &device)
                } else {
                    // The block in storage order, viewed in the parameter's axes.
                    let block: Vec<usize> = order.iter().map(|&a| dims[a]).collect();
                    let mut axes = [0usize; D];
                    for (q, &a) in order.iter().enumerate() {
                        axes[a] = q;
                    }
                    Tensor::<D>::from_data(TensorData::new(p, block), &device).permute(axes)
                }
            } else {
                let (m, v) = match slot {
                    Some(s) => s.into_device(&g.device()),
                    None => (
                        Tensor::zeros([n], &g.device()),
                        Tensor::zeros([n], &g.device()),
                    ),
                };
                let g: Tensor<1> = g.reshape([n]);
                let m = m.clone() + (g.clone() - m) * (1.0 - b1);
                let v = v.clone() + (g.clone() * g - v) * (1.0 - b2);
                let delta = (m.clone() * alpha) / (v.clone().sqrt() + eps);
                self.slots.insert(key.to_string(), Moments::Device(m, v));
                inner - delta.reshape(shape)
            };
            let new = Tensor::from_inner(new);
            if tracked {
                new.require_grad()
            } else {
                new
            }
        })
    }

    /// One step over every float parameter of `module` that has a gradient in `grads`
    /// (moments keyed by the parameter's id, so they follow the parameter through
    /// checkpoints); parameters without a gradient (frozen, non-trainable) are left alone.
    pub fn step_module<M: Module>(&mut self, module: M, grads: &Gradients) -> M {
        let alpha = self.next_step();
        module.map(&mut AdamMapper {
            opt: self,
            grads,
            alpha,
        })
    }

    /// Writes the step count and every moment into a safetensors file (`m/<key>`, `v/<key>`,
    /// float32; the step count in its metadata), through a temporary file renamed onto `path`.
    pub fn save(&self, path: &Path) -> Result<(), FinetuneError> {
        let mut tensors: Vec<(String, Vec<u8>, usize)> = Vec::new();
        for (key, moments) in &self.slots {
            let (m, v) = moments.to_host();
            for (prefix, values) in [("m", m), ("v", v)] {
                let n = values.len();
                let bytes = values.iter().flat_map(|x| x.to_le_bytes()).collect();
                tensors.push((format!("{prefix}/{key}"), bytes, n));
            }
        }
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let views = tensors
            .iter()
            .map(|(name, bytes, n)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![*n], bytes)
                    .map(|v| (name.clone(), v))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| FinetuneError::Checkpoint {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        let meta: HashMap<String, String> = [
            ("iterations".to_string(), self.iterations.to_string()),
            ("optimizer".to_string(), "keras_adam".to_string()),
        ]
        .into_iter()
        .collect();
        let bytes =
            safetensors::serialize(views, Some(meta)).map_err(|e| FinetuneError::Checkpoint {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        crate::report::write_atomic(path, &bytes)?;
        Ok(())
    }

    /// Reads what [`KerasAdam::save`] wrote (learning rate and constants from `self`),
    /// moments onto `device`. Every moment must belong to one of `params` (the ids of the
    /// model's parameters with their numbers of values, [`param_ids`]), hold as many values
    /// and come with its pair; anything else is an error naming the file.
    pub fn load(
        mut self,
        path: &Path,
        params: &BTreeMap<String, usize>,
        device: &Device,
    ) -> Result<Self, FinetuneError> {
        let bad = |msg: String| FinetuneError::Checkpoint {
            path: path.to_path_buf(),
            msg,
        };
        let bytes = std::fs::read(path).map_err(io(path))?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let info = meta.metadata().clone().unwrap_or_default();
        if info.get("optimizer").map(String::as_str) != Some("keras_adam") {
            return Err(bad(
                "not a Keras Adam state (no optimizer=keras_adam metadata)".into(),
            ));
        }
        self.iterations = info
            .get("iterations")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad("no step count (iterations) in its metadata".into()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let mut halves: HashMap<String, [Option<Tensor<1>>; 2]> = HashMap::new();
        for (name, t) in st.tensors() {
            let (which, key) = match name.split_once('/') {
                Some(("m", k)) => (0, k),
                Some(("v", k)) => (1, k),
                _ => return Err(bad(format!("unexpected tensor `{name}`"))),
            };
            let Some(&size) = params.get(key) else {
                return Err(bad(format!(
                    "`{name}` belongs to no parameter of the model (a checkpoint of another model?)"
                )));
            };
            if t.dtype() != safetensors::Dtype::F32 || t.shape().len() != 1 {
                return Err(bad(format!("`{name}` is not a float32 vector")));
            }
            if t.shape()[0] != size {
                return Err(bad(format!(
                    "`{name}` holds {} values, its parameter {size} (a checkpoint of another model?)",
                    t.shape()[0]
                )));
            }
            let values: Vec<f32> = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let n = values.len();
            halves.entry(key.to_string()).or_default()[which] =
                Some(Tensor::from_data(TensorData::new(values, [n]), device));
        }
        self.slots.clear();
        for (key, [m, v]) in halves {
            match (m, v) {
                (Some(m), Some(v)) if m.dims() == v.dims() => {
                    self.slots.insert(key, Moments::Device(m, v));
                }
                _ => return Err(bad(format!("the moments of `{key}` are incomplete"))),
            }
        }
        Ok(self)
    }
}

impl std::fmt::Debug for KerasAdam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KerasAdam")
            .field("lr", &self.lr)
            .field("iterations", &self.iterations)
            .field("parameters", &self.slots.len())
            .finish()
    }
}

/// [`KerasAdam::step_module`]'s visit of the parameters.
struct AdamMapper<'a> {
    opt: &'a mut KerasAdam,
    grads: &'a Gradients,
    alpha: f32,
}

impl ModuleMapper for AdamMapper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let key = param.id.to_string();
        self.opt.update(&key, param, self.grads, self.alpha)
    }
}

/// The ids of every parameter of `module` (the keys of [`KerasAdam::step_module`]'s moments),
/// each with its number of values.
pub fn param_ids<M: Module>(module: &M) -> BTreeMap<String, usize> {
    struct Ids(BTreeMap<String, usize>);
    impl burn::module::ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0
                .insert(param.id.to_string(), param.shape().num_elements());
        }
    }
    let mut ids = Ids(BTreeMap::new());
    module.visit(&mut ids);
    ids.0
}

/// Adam's moments of one parameter: on the host for parameters on flex (updated by
/// [`cpu_kernels::optim::keras_adam_step`]) in the axis order `order` of the parameter's
/// `shape` (outermost first: the order its gradient holds its values in), else tensors
/// on the parameter's device (row-major).
enum Moments {
    Host {
        m: Vec<f32>,
        v: Vec<f32>,
        shape: Vec<usize>,
        order: Vec<usize>,
    },
    Device(Tensor<1>, Tensor<1>),
}

impl Moments {
    /// On the host, in the axis `order` of `shape`.
    fn into_host(self, shape: &[usize], order: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let (m, v, from) = match self {
            Moments::Host {
                m,
                v,
                shape: s,
                order: from,
            } => {
                if from != order {
                    assert_eq!(s, shape, "a parameter keeps its shape");
                }
                (m, v, from)
            }
            Moments::Device(m, v) => (host_values(m), host_values(v), (0..shape.len()).collect()),
        };
        if from == order {
            return (m, v);
        }
        (
            cpu_train::reorder(&m, shape, &from, order),
            cpu_train::reorder(&v, shape, &from, order),
        )
    }

    fn into_device(self, device: &Device) -> (Tensor<1>, Tensor<1>) {
        match self {
            Moments::Device(m, v) => (m, v),
            host => {
                let (m, v) = host.to_host();
                let t = |x: Cow<'_, [f32]>| {
                    let n = x.len();
                    Tensor::from_data(TensorData::new(x.into_owned(), [n]), device)
                };
                (t(m), t(v))
            }
        }
    }

    /// Row-major (the checkpoints' order).
    fn to_host(&self) -> (Cow<'_, [f32]>, Cow<'_, [f32]>) {
        match self {
            Moments::Host { m, v, shape, order } => {
                let logical: Vec<usize> = (0..shape.len()).collect();
                if *order == logical {
                    (Cow::Borrowed(m), Cow::Borrowed(v))
                } else {
                    (
                        Cow::Owned(cpu_train::reorder(m, shape, order, &logical)),
                        Cow::Owned(cpu_train::reorder(v, shape, order, &logical)),
                    )
                }
            }
            Moments::Device(m, v) => (
                Cow::Owned(host_values(m.clone())),
                Cow::Owned(host_values(v.clone())),
            ),
        }
    }
}

/// A float tensor's values, row-major.
/// A parameter's or gradient's values and the order of its axes they lie in: its storage
/// block where it fills one ([`cpu_train::storage_order`]), else row-major (read on the
/// thread pool where [`cpu_train::host_values`] can, otherwise by `row_major`).
fn stored_values<'a>(
    t: &'a burn::backend::DispatchTensor,
    row_major: impl FnOnce() -> Vec<f32>,
) -> (Cow<'a, [f32]>, Vec<usize>) {
    match cpu_train::storage_order(t) {
        Some((values, order)) => (Cow::Borrowed(values), order),
        None => {
            let rank = burn::backend::TensorMetadata::shape(t).len();
            let values = cpu_train::host_values(t).unwrap_or_else(|| Cow::Owned(row_major()));
            (values, (0..rank).collect())
        }
    }
}

fn host_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("float32 values")
}
