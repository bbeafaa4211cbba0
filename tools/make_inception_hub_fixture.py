"""A TF-Slim Inception-v3 feature vector exported the way TF Hub's reusable SavedModels are
(`__call__(images, training=False|True)`, `variables`, `trainable_variables`,
`regularization_losses`), so that `hub.KerasLayer(..., trainable=True)` fine-tunes it, for the
fine-tuning parity of the hand-written Inception-v3 (issue 13).

Usage: tools/.venv/bin/python tools/make_inception_hub_fixture.py [OUT]
       (default tests/fixtures/inception_v3/hub_fv_small/saved_model)
       tools/.venv/bin/python tools/make_inception_hub_fixture.py --full [OUT]
       (the real widths, depth_multiplier 1.0, 2048 features, for tools/bench_finetune.py;
       default tools/out/inception_v3_hub_fv/saved_model, never committed)

The network is tools/make_inception_fixture.py's slim template (depth_multiplier 0.05,
min_depth 4, its seed-0 weights; images in [0, 1], x * 2 - 1 inside) cut at Mixed_7c; the
feature vector is Mixed_7c's spatial mean. training=True runs slim's batch norm with batch
statistics, updating the moving averages in place (fused batch norm, decay 0.9997, the
unbiased batch variance). Then `tools/keras_finetune_step.py OUT tests/fixtures/keras_step/
inception_v3_small 139` records Keras' two Adam steps on it.
"""

import os
import sys

import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import make_inception_fixture as mif  # noqa: E402


def main():
    args = sys.argv[1:]
    full = "--full" in args
    args = [a for a in args if a != "--full"]
    default = "tools/out/inception_v3_hub_fv/saved_model" if full else "tests/fixtures/inception_v3/hub_fv_small/saved_model"
    out = args[0] if args else os.path.join(ROOT, default)
    depth, min_depth = (1.0, 16) if full else (0.05, 4)
    model, tmpl = mif.build(num_classes=None, depth_multiplier=depth, min_depth=min_depth, with_function=False,
                            final_endpoint="Mixed_7c")
    mif.randomise(model.all_variables)
    obj = tf.__internal__.tracking.AutoTrackable()
    obj.tmpl = tmpl
    obj.variables = list(tmpl.variables)
    obj.trainable_variables = [v for v in tmpl.variables if "moving_" not in v.name]
    obj.regularization_losses = []

    def call(images, training=False):
        _, eps = tmpl(images, final_endpoint="Mixed_7c", is_training=training)
        return tf.reduce_mean(eps["Mixed_7c"], axis=[1, 2])

    call.__name__ = "__call__"
    obj.__call__ = tf.function(call)
    ts = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
    serving = obj.__call__.get_concrete_function(ts, training=False)
    obj.__call__.get_concrete_function(ts, training=True)
    tf.saved_model.save(obj, out, signatures={"serving_default": serving})
    loaded = tf.saved_model.load(out)
    x = tf.random.stateless_uniform([2, 80, 80, 3], seed=[1, 2])
    print(out, loaded(x, training=False).shape, len(obj.trainable_variables), "trainable of", len(obj.variables))


if __name__ == "__main__":
    main()
