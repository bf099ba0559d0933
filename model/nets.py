"""The course's networks, as keras-io style builders.

- ``make_cnn``: the article's small convnet from scratch (Conv 32-32-64 with
  max-pooling, Dense 64, dropout, softmax).
- ``make_vgg16``: ``keras.applications.VGG16(include_top=False)`` with a small
  head. ``bottleneck`` freezes the whole base and trains the head;
  ``finetune`` also unfreezes the last convolutional block (block5), to be
  trained with a small learning rate (keras-io's transfer learning guide).

Every model takes raw pixels in [0, 255] (uint8 or float) and does its own
augmentation (training only) and preprocessing, so ``predict`` and the
report feed images exactly as training did. The last layer is float32 so
mixed precision keeps a stable softmax.
"""

from __future__ import annotations

import keras
from keras import layers

from model import MODES, NETS, VGG16_MIN_SIZE

# Caffe-style ImageNet means (BGR) that VGG16's weights were trained with.
_VGG_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="trainbox")
class VGG16Preprocess(layers.Layer):
    """RGB [0, 255] -> BGR minus the ImageNet mean: what VGG16 expects.

    A layer rather than a Lambda, so saved models load without unsafe
    deserialization (``keras.applications.vgg16.preprocess_input`` does the
    same thing to arrays).
    """

    def call(self, x):
        x = keras.ops.flip(x, axis=-1)
        return x - keras.ops.convert_to_tensor(_VGG_MEAN_BGR, dtype=x.dtype)


def augmentation(seed: int | None = None) -> keras.Sequential:
    """The course's geometric augmentation, as Keras layers inside the model.

    Active only in training; on the GPU it runs on the device (keras-io's
    advice), so the CPU pipeline only crops and flips. Shear is left out:
    the course's ``shear_range=0.2`` was in degrees, i.e. nothing.
    """
    return keras.Sequential(
        [
            layers.RandomRotation(0.04, fill_mode="reflect", seed=seed),
            layers.RandomZoom(0.2, fill_mode="reflect", seed=seed),
        ],
        name="augment",
    )


def _inputs(image_size: int, augment: bool, seed: int | None):
    # Keras casts the pipeline's uint8 batches to the input's float32 in the graph.
    inputs = keras.Input((image_size, image_size, 3), name="image")
    return inputs, (augmentation(seed)(inputs) if augment else inputs)


def make_cnn(image_size: int, num_classes: int = 2, augment: bool = True, seed: int | None = None) -> keras.Model:
    """The article's scratch CNN (its 89.4 % baseline on cats vs dogs)."""
    inputs, x = _inputs(image_size, augment, seed)
    x = layers.Rescaling(1.0 / 255)(x)
    for filters in (32, 32, 64):
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    return keras.Model(inputs, outputs, name="cnn")


def make_vgg16(
    image_size: int,
    num_classes: int = 2,
    weights: str | None = "imagenet",
    mode: str = "bottleneck",
    augment: bool = True,
    seed: int | None = None,
) -> keras.Model:
    """VGG16 base + the course's small head; ``mode`` sets what trains.

    ``weights`` is "imagenet" (downloaded by Keras, needs internet), a path to
    a notop weights file, or None for random weights (tests).
    """
    if image_size < VGG16_MIN_SIZE:
        raise ValueError(f"VGG16 needs images of at least {VGG16_MIN_SIZE} px, got {image_size}")
    base = keras.applications.VGG16(include_top=False, weights=weights, input_shape=(image_size, image_size, 3))
    inputs, x = _inputs(image_size, augment, seed)
    x = VGG16Preprocess(name="vgg16_preprocess")(x)
    # training=False keeps the base in inference mode even while fine-tuning
    # (keras-io's recipe; it matters for bases with BatchNormalization).
    x = base(x, training=False)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="probs")(x)
    model = keras.Model(inputs, outputs, name=f"vgg16_{mode}")
    set_trainable(model, mode)
    return model


def set_trainable(model: keras.Model, mode: str) -> None:
    """Freeze VGG16's base (bottleneck) or all of it but block5 (finetune)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    base = model.get_layer("vgg16")
    base.trainable = mode == "finetune"
    if mode == "finetune":
        for layer in base.layers:
            layer.trainable = layer.name.startswith("block5")


def default_lr(net: str, mode: str) -> float:
    """Adam's default for training from scratch or a head; 1e-5 to fine-tune."""
    return 1e-5 if (net == "vgg16" and mode == "finetune") else 1e-3


def build(
    net: str,
    image_size: int,
    num_classes: int,
    *,
    mode: str = "bottleneck",
    weights: str | None = None,
    augment: bool = True,
    seed: int | None = None,
) -> keras.Model:
    """The model for ``--net``/``--mode`` (uncompiled)."""
    if net == "cnn":
        return make_cnn(image_size, num_classes, augment=augment, seed=seed)
    if net == "vgg16":
        return make_vgg16(image_size, num_classes, weights=weights, mode=mode, augment=augment, seed=seed)
    raise ValueError(f"unknown net {net!r}; expected one of {NETS}")
