"""The tf.data input pipeline: decode once, small, in parallel; cache; cheap augmentation.

The order of the steps is the speed:

1. Decode in parallel (``num_parallel_calls=AUTOTUNE``). JPEGs much larger
   than the target are decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself
   (DCT scaling, ``decode_jpeg(ratio=...)``): far less work than decoding
   full size and shrinking. The ratio comes from each file's header size,
   read by ``class_folders.scan_folders``.
2. Resize once, to the training size plus a 1/8 margin, and keep uint8 (a
   quarter of float32 in memory and on the way to the GPU).
3. ``cache()``: every later epoch skips the files and the decoder entirely.
4. Training: shuffle, then a random crop (small shifts and zoom) and a
   random horizontal flip per image, on uint8: cheap enough to keep a GPU
   fed from a few CPU cores. Evaluation: the centre crop, so train and
   validation see objects at the same scale.
5. Batch and prefetch, so the next batch is ready while the model trains.

The heavier augmentation of the course (rotation, zoom) runs inside the
model as Keras preprocessing layers (``nets.augmentation``), on the GPU,
as keras-io recommends. Images leave the pipeline as uint8 in [0, 255];
each network rescales them itself, so ``predict`` and the report feed raw
pixels exactly as training did.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import tensorflow as tf

from model.class_folders import ImageFile

AUTOTUNE = tf.data.AUTOTUNE
DCT_RATIOS = (1, 2, 4, 8)  # what libjpeg can scale by while decoding
_OTHER_FORMAT = len(DCT_RATIOS)  # decoder branch for PNG/BMP/GIF


def dct_ratio(width: int, height: int, size: int) -> int:
    """Largest libjpeg scale-down that keeps the short side >= ``size``."""
    ratio = 1
    for r in DCT_RATIOS[1:]:
        if min(width, height) // r >= size:
            ratio = r
    return ratio


def decoder_branch(f: ImageFile, size: int) -> int:
    """Index of the decode branch for one file (see ``decode_resize``)."""
    if not f.is_jpeg:
        return _OTHER_FORMAT
    return DCT_RATIOS.index(dct_ratio(f.width, f.height, size))


def load_size(size: int) -> int:
    """Side that images are resized to before the (random or centre) crop to ``size``."""
    return size + size // 8


def decode_resize(path: tf.Tensor, branch: tf.Tensor, size: int) -> tf.Tensor:
    """Read, decode (DCT-scaled for big JPEGs) and resize one image to uint8."""
    data = tf.io.read_file(path)
    branches = [
        (lambda r=r: tf.io.decode_jpeg(data, channels=3, ratio=r, dct_method="INTEGER_FAST")) for r in DCT_RATIOS
    ]
    branches.append(lambda: tf.io.decode_image(data, channels=3, expand_animations=False))
    image = tf.switch_case(branch, branches)
    image = tf.image.resize(image, (size, size))
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def centre_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    offset = (load_size(size) - size) // 2
    return image[offset : offset + size, offset : offset + size, :]


def random_crop_flip(image: tf.Tensor, size: int) -> tf.Tensor:
    """Random ``size`` crop and horizontal flip (seeded by keras.utils.set_random_seed)."""
    image = tf.image.random_crop(image, (size, size, 3))
    return tf.image.random_flip_left_right(image)


def decoded_images(files: Sequence[ImageFile], size: int, skip_errors: bool = True) -> tf.data.Dataset:
    """(uint8 image of ``size`` px, label) pairs, decoded in parallel, in the order of ``files``."""
    paths = [f.path for f in files]
    labels = [f.label for f in files]
    branches = [decoder_branch(f, size) for f in files]
    ds = tf.data.Dataset.from_tensor_slices((paths, branches, labels))
    ds = ds.map(
        lambda p, b, y: (decode_resize(p, b, size), y),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    if not skip_errors:
        return ds
    # class_folders.scan_folders already skipped unreadable files; this only guards
    # training against a file that broke after the scan (TF logs it).
    return ds.ignore_errors(log_warning=True)


def make_dataset(
    files: Sequence[ImageFile],
    image_size: int,
    batch_size: int,
    *,
    training: bool,
    seed: int = 0,
    cache: bool = True,
    augment: bool = True,
    skip_errors: bool = True,
) -> tf.data.Dataset:
    """Batches of (uint8 images [B, S, S, 3], int labels) for ``fit``/``predict``.

    ``training=True`` shuffles (the file order once before caching, so the
    cache is already mixed, then every epoch) and augments with random
    crops and flips; otherwise the order is exactly ``files`` and each
    image is centre-cropped (the report relies on the order to name images;
    it passes ``skip_errors=False`` so a file can never silently drop out).
    """
    files = list(files)
    if training:
        random.Random(seed).shuffle(files)
    ds = decoded_images(files, load_size(image_size), skip_errors)
    if not (training and augment):
        ds = ds.map(lambda x, y: (centre_crop(x, image_size), y), num_parallel_calls=AUTOTUNE)
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(min(len(files), 4096), seed=seed, reshuffle_each_iteration=True)
    if training and augment:
        ds = ds.map(
            lambda x, y: (random_crop_flip(x, image_size), y),
            num_parallel_calls=AUTOTUNE,
            deterministic=False,  # already shuffled; lets fast images overtake slow ones
        )
    return ds.batch(batch_size).prefetch(AUTOTUNE)
