//! A SavedModel as a Burn module: TF Hub's `hub.KerasLayer`.

use crate::{dev, entry_points, EntryKind, Error, Model, Options, Value};
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// The callable of a TF2 SavedModel (a TF Hub model) as a layer of a Burn network, like
/// `hub.KerasLayer(handle, trainable=...)`.
///
/// The SavedModel's float variables are the module's parameters (flattened; saved and
/// loaded with the rest of the network, seen by optimizers). `forward` runs the graph with
/// them: the `__call__(training=True)` trace when the layer is trainable, the device is an
/// autodiff device and the model has that trace (batch norms then use batch statistics, as
/// Keras does in `fit`), otherwise the inference entry point. Gradients flow into the
/// parameters through every op of the graph.
///
/// ```no_run
/// use burn::tensor::{Device, Tensor};
/// let device = Device::flex().autodiff();
/// let layer = tfgraph::KerasLayer::open(std::path::Path::new("feature_vector"), &device, true)?;
/// let x = Tensor::<4>::zeros([2, 224, 224, 3], &device);
/// let features: Tensor<2> = layer.forward(x)?; // [2, 1280]
/// # Ok::<(), tfgraph::Error>(())
/// ```
#[derive(Module, Debug)]
pub struct KerasLayer {
    /// The float variables, flattened, in [`KerasLayer::variable_shapes`] order.
    pub variables: Vec<Param<Tensor<1>>>,
    #[module(skip)]
    graphs: Arc<Graphs>,
}

#[derive(Debug)]
struct Graphs {
    inference: Model,
    training: Option<Model>,
    /// Object-graph node and shape of each parameter.
    objects: Vec<(usize, Vec<usize>)>,
    /// Each parameter's variable name in the SavedModel (`Conv1/kernel`).
    names: Vec<String>,
    /// Each parameter's checkpoint key (`None`: not stored in the checkpoint).
    keys: Vec<Option<String>>,
    /// The SavedModel folder the layer was loaded from.
    source: std::path::PathBuf,
    trainable: bool,
}

impl KerasLayer {
    /// Loads the SavedModel in `dir` onto `device`. Not `trainable`: the parameters get no
    /// gradients and the inference trace always runs.
    pub fn open(dir: &std::path::Path, device: &Device, trainable: bool) -> Result<Self, Error> {
        let sm = savedmodel::read(dir)?;
        Self::load(&sm, device, trainable)
    }

    /// [`KerasLayer::open`] on a SavedModel already read.
    pub fn load(
        sm: &savedmodel::SavedModel,
        device: &Device,
        trainable: bool,
    ) -> Result<Self, Error> {
        // Every float variable becomes a float32 parameter (float64 tables included).
        let options = Options {
            cpu_fast_path: false,
            float64_on_host: false,
        };
        let mut inference = Model::load_with(sm, None, device, &options)?;
        let entries = entry_points(sm)?;
        let mut training = match entries.iter().find(|e| {
            e.kind
                == EntryKind::Call {
                    training: Some(true),
                }
        }) {
            Some(e) if trainable => Some(Model::load_with(sm, Some(e), device, &options)?),
            _ => None,
        };
        let mut variables = Vec::new();
        let mut objects = Vec::new();
        let mut names = Vec::new();
        let mut keys = Vec::new();
        let og = sm.meta_graph().object_graph_def.as_ref();
        let mut seen = std::collections::HashSet::new();
        let all = inference
            .variables()
            .chain(training.iter().flat_map(|m| m.variables()));
        for (obj, v) in all {
            let Value::Dev(t) = v else { continue };
            if !seen.insert(obj) {
                continue;
            }
            let shape = dev::shape(t);
            let n = shape.iter().product::<usize>();
            let flat = Tensor::<1>::from_dispatch(dev::reshape(t.clone(), &[n]));
            let p = Param::from_tensor(flat);
            // Keras' non-trainable variables (batch-norm moving statistics) get no gradient
            // even in a trainable layer: the training trace's assignments update them.
            let saved = og
                .and_then(|g| g.nodes.get(obj))
                .and_then(|n| n.variable.as_ref());
            let var_trainable = saved.is_none_or(|v| v.trainable);
            variables.push(if trainable && var_trainable {
                p
            } else {
                p.set_require_grad(false)
            });
            names.push(
                sm.variable_of_node(obj)
                    .map(|v| v.name.clone())
                    .or_else(|| saved.map(|v| v.name.clone()))
                    .unwrap_or_else(|| format!("object {obj}")),
            );
            keys.push(sm.variable_of_node(obj).map(|v| v.key.clone()));
            objects.push((obj, shape));
        }
        // The parameters hold the values now; the graphs get them at every call.
        inference.release_float_variables();
        if let Some(t) = &mut training {
            t.release_float_variables();
        }
        Ok(KerasLayer {
            variables,
            graphs: Arc::new(Graphs {
                inference,
                training,
                objects,
                names,
                keys,
                source: sm.dir().to_path_buf(),
                trainable,
            }),
        })
    }

    /// Each parameter's variable name in the SavedModel (`Conv1/kernel`, as Keras names it
    /// without `:0`).
    pub fn variable_names(&self) -> &[String] {
        &self.graphs.names
    }

    /// The SavedModel folder the layer was loaded from.
    pub fn source(&self) -> &std::path::Path {
        &self.graphs.source
    }

    /// Whether the SavedModel has a `__call__(training=True)` trace.
    pub fn has_training_trace(&self) -> bool {
        self.graphs.training.is_some()
    }

    /// Runs the graph as `layer(x, training=training)` does in Keras: the training trace
    /// (batch statistics; its batch-norm moving averages come back as updates for
    /// [`KerasLayer::with_updates`], as Keras applies them after the call) or the inference
    /// trace (moving statistics; no updates). Gradients reach the trainable parameters either
    /// way on an autodiff device.
    pub fn forward_values_in(
        &self,
        inputs: Vec<Value>,
        device: &Device,
        training: bool,
    ) -> Result<(Vec<Value>, LayerUpdates), Error> {
        let g = &self.graphs;
        let vars = self.variable_values();
        if !training {
            return Ok((
                g.inference.run_with_variables(&vars, device, inputs)?,
                LayerUpdates(Vec::new()),
            ));
        }
        let model = g.training.as_ref().ok_or_else(|| {
            Error::Graph("this SavedModel has no __call__(training=True) trace".into())
        })?;
        let (outs, assigned) = model.run_training(&vars, device, inputs)?;
        let index: HashMap<usize, usize> = g
            .objects
            .iter()
            .enumerate()
            .map(|(i, (o, _))| (*o, i))
            .collect();
        let mut updates = Vec::new();
        for (obj, v) in assigned {
            let Some(&i) = index.get(&obj) else { continue };
            let t = match v {
                Value::Dev(t) => t,
                Value::Host(h) => dev::upload(h.to_f32().map_err(Error::Graph)?, &h.shape, device),
                _ => continue,
            };
            let n = g.objects[i].1.iter().product::<usize>();
            updates.push((i, Tensor::<1>::from_dispatch(dev::reshape(t, &[n]))));
        }
        Ok((outs, LayerUpdates(updates)))
    }

    /// The layer with the variables a training call assigned (batch-norm moving averages)
    /// set to their new values (as constants: they get no gradient).
    pub fn with_updates(mut self, updates: LayerUpdates) -> Self {
        for (i, t) in updates.0 {
            if let Some(p) = self.variables.get_mut(i) {
                *p = Param::initialized(p.id, t.detach()).set_require_grad(false);
            }
        }
        self
    }

    fn variable_values(&self) -> HashMap<usize, Value> {
        self.graphs
            .objects
            .iter()
            .zip(&self.variables)
            .map(|((obj, shape), p)| {
                (
                    *obj,
                    Value::Dev(dev::reshape(p.val().into_dispatch(), shape)),
                )
            })
            .collect()
    }

    /// Writes the SavedModel this layer was loaded from into the folder `dst` with the
    /// layer's current variable values (fine-tuned weights, updated batch-norm statistics):
    /// the same graph, a checkpoint TensorFlow loads as it loads the original. Values are
    /// stored in each variable's own dtype (float32, float64, float16, bfloat16).
    pub fn write_saved_model(&self, dst: &std::path::Path) -> Result<(), Error> {
        let g = &self.graphs;
        let sm = savedmodel::read(&g.source)?;
        let mut updates = std::collections::BTreeMap::new();
        for (i, p) in self.variables.iter().enumerate() {
            let Some(key) = &g.keys[i] else { continue };
            let info = sm.variable(key).ok_or_else(|| {
                model_error(
                    &g.source,
                    format!("variable {} is not in its checkpoint", g.names[i]),
                )
            })?;
            let values = p
                .val()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| model_error(&g.source, format!("variable {}: {e:?}", g.names[i])))?;
            let bytes: Vec<u8> = match info.dtype {
                savedmodel::DType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                savedmodel::DType::F64 => values
                    .iter()
                    .flat_map(|&v| f64::from(v).to_le_bytes())
                    .collect(),
                savedmodel::DType::F16 => values
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect(),
                savedmodel::DType::BF16 => values
                    .iter()
                    .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                    .collect(),
                other => {
                    return Err(model_error(
                        &g.source,
                        format!(
                            "variable {} is stored as {other}; only float variables can be written",
                            g.names[i]
                        ),
                    ))
                }
            };
            updates.insert(key.clone(), bytes);
        }
        sm.write_with_variables(dst, &updates)?;
        Ok(())
    }

    /// The shape of each parameter in the SavedModel.
    pub fn variable_shapes(&self) -> Vec<Vec<usize>> {
        self.graphs.objects.iter().map(|(_, s)| s.clone()).collect()
    }

    /// The inference entry point (its variables live in this layer's parameters, so the
    /// graph runs through the layer, not on its own).
    pub fn entry(&self) -> &crate::EntryPoint {
        self.graphs.inference.entry()
    }

    /// The inference graph.
    pub fn graph(&self) -> &crate::graph::Graph {
        self.graphs.inference.graph()
    }

    /// Runs the graph on `inputs`; see the type's docs for which trace runs.
    pub fn forward_values(&self, inputs: Vec<Value>, device: &Device) -> Result<Vec<Value>, Error> {
        let g = &self.graphs;
        let model = match &g.training {
            Some(t) if g.trainable && device.is_autodiff() => t,
            _ => &g.inference,
        };
        model.run_with_variables(&self.variable_values(), device, inputs)
    }

    /// Runs the graph on one image batch and returns its first output as a rank-`D` tensor
    /// (e.g. `[batch, features]`).
    pub fn forward<const D: usize>(&self, x: Tensor<4>) -> Result<Tensor<D>, Error> {
        let device = x.device();
        let out = self
            .forward_values(vec![Value::Dev(x.into_dispatch())], &device)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::Graph("the model has no output".into()))?;
        let t = match out {
            Value::Dev(t) => t,
            Value::Host(h) => dev::upload(h.to_f32().map_err(Error::Graph)?, &h.shape, &device),
            _ => {
                return Err(Error::Graph(
                    "the first output is not a float tensor".into(),
                ))
            }
        };
        let shape = dev::shape(&t);
        if shape.len() != D {
            return Err(Error::Graph(format!(
                "the first output has shape {shape:?}, not rank {D}"
            )));
        }
        Ok(Tensor::<D>::from_dispatch(t))
    }
}

fn model_error(path: &std::path::Path, msg: String) -> Error {
    Error::Model {
        path: path.to_path_buf(),
        msg,
    }
}

/// The variables a training call of a [`KerasLayer`] assigned (parameter index, new value).
#[derive(Debug, Default)]
pub struct LayerUpdates(Vec<(usize, Tensor<1>)>);

impl LayerUpdates {
    /// How many variables were assigned.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
