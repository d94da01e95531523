"""Small models and batches shared by the tests."""

import keras
import numpy as np
from keras import layers


def tiny_cnn(image_size, num_classes=3, *, batch_norm=True, name="tiny_cnn", activation=None):
    """A two-layer CNN taking raw 0..255 pixels: fast enough for many tests."""
    inputs = keras.Input((image_size, image_size, 3))
    x = layers.Rescaling(1.0 / 255.0)(inputs)
    x = layers.Conv2D(4, 3, strides=2, padding="same")(x)
    if batch_norm:
        x = layers.BatchNormalization(momentum=0.9)(x)
    x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(num_classes, activation=activation)(x)
    return keras.Model(inputs, outputs, name=name)


def batch(image_size, n=8, num_classes=3, seed=0):
    """Random uint8 images and integer labels."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, image_size, image_size, 3)).astype("uint8")
    y = rng.integers(0, num_classes, n).astype("int32")
    return x, y


def write_keras_backbone_file(builder, path, image_size, **kwargs):
    """A randomly initialized keras.applications backbone saved as the "notop" .h5 file Keras
    downloads for weights="imagenet" (legacy HDF5, weights only); returns the backbone."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    backbone = builder(include_top=False, weights=None, input_shape=(image_size, image_size, 3),
                       **kwargs)
    rng = np.random.default_rng(0)
    for variable in backbone.weights:  # off the initializers' zeros and ones (comparable), but
        noise = rng.normal(0.0, 0.02, variable.shape).astype(variable.dtype)  # still trainable
        variable.assign(variable.numpy() + (np.abs(noise) if "variance" in variable.path
                                            else noise))
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, backbone)
    return backbone


def save_tiny_hub_preset(folder, kind, num_classes=4):
    """A keras-hub preset folder, as `save_to_preset` writes it, of a small randomly initialized
    image classifier: kind "vit" (ViT, 32x32 fixed), "deit" (DeiT, 32x32) or "resnet" (any
    size). Returns the keras-hub classifier."""
    import keras_hub

    models, hub_layers = keras_hub.models, keras_hub.layers
    if kind == "resnet":
        backbone = models.ResNetBackbone(
            input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
            stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block")
        converter = hub_layers.ResNetImageConverter(
            image_size=(64, 64), scale=[1 / (255 * s) for s in (0.229, 0.224, 0.225)],
            offset=[-m / s for m, s in zip((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
        task = models.ResNetImageClassifier(
            backbone=backbone, num_classes=num_classes,
            preprocessor=models.ResNetImageClassifierPreprocessor(image_converter=converter))
    elif kind == "vit":
        backbone = models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2,
                                      num_heads=2, hidden_dim=16, mlp_dim=32)
        converter = hub_layers.ViTImageConverter(image_size=(32, 32), scale=1 / 127.5, offset=-1)
        task = models.ViTImageClassifier(
            backbone=backbone, num_classes=num_classes,
            preprocessor=models.ViTImageClassifierPreprocessor(image_converter=converter))
    else:
        backbone = models.DeiTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2,
                                       num_heads=2, hidden_dim=16, intermediate_dim=32)
        converter = hub_layers.DeiTImageConverter(image_size=(32, 32), scale=1 / 255)
        task = models.DeiTImageClassifier(
            backbone=backbone, num_classes=num_classes,
            preprocessor=models.DeiTImageClassifierPreprocessor(image_converter=converter))
    task.save_to_preset(str(folder))
    return task
