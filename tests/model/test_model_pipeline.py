"""The input pipeline: DCT-scaled decode, order, shapes, PNG support."""

import numpy as np
import pytest
from PIL import Image

from model.class_folders import scan_folders


@pytest.mark.parametrize(
    "size, expected",
    [((500, 375), 2), ((1600, 1200), 8), ((149, 400), 1), ((300, 300), 2), ((2000, 2000), 8)],
)
def test_dct_ratio_never_goes_below_the_target(size, expected):
    from model.pipeline import dct_ratio

    ratio = dct_ratio(*size, 150)
    assert ratio == expected
    assert min(size) // ratio >= 150 or ratio == 1


@pytest.fixture
def mixed_images(tmp_path):
    """Big JPEGs (DCT-scaled path), small JPEGs and PNGs, in one layout."""
    rng = np.random.default_rng(0)
    for split in ("train", "validation"):
        for name, colour in (("cats", (220, 40, 30)), ("dogs", (30, 60, 220))):
            folder = tmp_path / "data" / split / name
            folder.mkdir(parents=True)
            for i, (w, h, ext) in enumerate(((640, 480, "jpg"), (40, 30, "jpg"), (64, 64, "png"))):
                pixels = np.clip(np.array(colour) + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{name}.{i}.{ext}")
    return str(tmp_path / "data")


def test_eval_dataset_keeps_order_and_decodes_every_format(mixed_images):
    from model.pipeline import make_dataset

    folders = scan_folders(mixed_images)
    files = folders.validation
    batches = list(make_dataset(files, 32, 4, training=False))
    images = np.concatenate([x.numpy() for x, _ in batches])
    labels = np.concatenate([y.numpy() for _, y in batches])
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [f.label for f in files]
    # Colours survive decode and resize: cats are red, dogs are blue.
    means = images.reshape(6, -1, 3).mean(axis=1)
    for mean, label in zip(means, labels):
        red, blue = mean[0], mean[2]
        assert (red > blue + 100) if label == 0 else (blue > red + 100)


def test_training_dataset_augments_and_covers_every_image(mixed_images):
    import keras

    from model.pipeline import make_dataset

    keras.utils.set_random_seed(0)
    folders = scan_folders(mixed_images)
    ds = make_dataset(folders.train, 32, 4, training=True, seed=0)
    epochs = [np.concatenate([y.numpy() for _, y in ds]) for _ in range(2)]
    for labels in epochs:
        assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]
    x, _ = next(iter(ds))
    assert x.shape[1:] == (32, 32, 3) and x.dtype == np.uint8
