//! Keras' Adam update rule (tf_keras and Keras 3 on TensorFlow) for any Burn parameter, keyed by
//! name: `m += (g - m)(1 - β1)`, `v += (g² - v)(1 - β2)`,
//! `p -= lr √(1-β2^t)/(1-β1^t) · m / (√v + ε)`. Burn's Adam puts ε on the bias-corrected
//! `√v̂`, which differs for small gradients. Used by `train-imdb` and to check fine-tuning
//! steps against Keras.

use burn::module::Param;
use burn::tensor::{Gradients, Tensor};
use std::collections::HashMap;

pub struct KerasAdam {
    pub lr: f32,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    pub iterations: u32,
    slots: HashMap<String, (Tensor<1>, Tensor<1>)>,
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
            let g: Tensor<1> = g.reshape([n]);
            let (m, v) = match self.slots.remove(key) {
                Some(s) => s,
                None => (
                    Tensor::zeros([n], &g.device()),
                    Tensor::zeros([n], &g.device()),
                ),
            };
            let m = m.clone() + (g.clone() - m) * (1.0 - b1);
            let v = v.clone() + (g.clone() * g - v) * (1.0 - b2);
            let delta = (m.clone() * alpha) / (v.clone().sqrt() + eps);
            self.slots.insert(key.to_string(), (m, v));
            let new = inner - delta.reshape(shape);
            let new = Tensor::from_inner(new);
            if tracked {
                new.require_grad()
            } else {
                new
            }
        })
    }
}
