"""What a recipe measures about a model besides accuracy: compute per image and memory."""

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from tfkd.bench.local import RssSampler

__all__ = ["RssSampler", "macs_per_image"]


def macs_per_image(model):
    """Multiply-accumulates of one inference at batch 1, counted by TensorFlow's profiler.

    The profiler counts floating-point operations of the frozen inference graph (a
    multiply-add is two); half of that is the MACs figure papers quote.
    """
    spec = tf.TensorSpec((1, *model.inputs[0].shape[1:]), tf.float32)

    @tf.autograph.experimental.do_not_convert
    def forward(images):
        return model(images, training=False)

    frozen = convert_variables_to_constants_v2(tf.function(forward).get_concrete_function(spec))
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    logger, level = tf.get_logger(), tf.get_logger().level
    logger.setLevel("ERROR")  # the v1 profiler warns that it is v1 API on every first use
    try:
        profile = tf.compat.v1.profiler.profile(graph=frozen.graph, cmd="op", options=options,
                                                run_meta=tf.compat.v1.RunMetadata())
    finally:
        logger.setLevel(level)
    return profile.total_float_ops // 2
