"""Input pipeline benchmark (issue 5): ratios against baselines measured in the same run.

    python bench/pipeline.py [--images 2000] [--image-size 150] [--batch-size 32] [--data DIR]

On one set of JPEGs of varied sizes (generated here: nothing is downloaded),
at the same image size and batch size, it measures images/s of:

- the baseline: the course's ``ImageDataGenerator(rescale, shear 0.2, zoom
  0.2, horizontal flip).flow_from_directory`` (Keras' legacy one, or
  tf_keras' if installed);
- a reference: stock ``image_dataset_from_directory`` with Keras
  augmentation layers (flip, rotation, zoom) mapped over the batches;
- ours (``model.pipeline.make_dataset``, what ``train`` uses): the first
  epoch (files decoded, DCT-scaled, resized once, cached) and a cached epoch;
  augmentation: random crop (shift and zoom) and flip (the rotation/zoom
  layers run inside the model, on the accelerator);
- one epoch of the course's CNN fed by our pipeline from disk (first epoch,
  then cached) vs fed the same images as in-memory arrays.

Goals (issue 5): ours >= 5x the baseline uncached and >= 20x cached; the
CNN from disk >= 0.9x the in-memory feed. "Uncached" means our decode
cache is cold; the OS page cache holds the files for every contender alike.
Every figure is the best of a few repetitions, interleaved for the CNN, so
a busy shared machine skews all contenders alike rather than one of them
(the CNN epochs use a subset, ``--cnn-images``, to keep the run short).
Speed is never asserted in tests; this prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keras warns when a dataset of unknown length ends an epoch: expected here.
warnings.filterwarnings("ignore", message="Your input ran out of data")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from model.class_folders import scan_folders  # noqa: E402
from model.synth import generate  # noqa: E402


def make_data(root: str, images: int, seed: int = 0) -> str:
    """``images`` training JPEGs of 200-500 px (like Kaggle's photos); returns train/."""
    per_class = images // 2
    n = int(per_class / 0.8 + 0.5)  # synth puts 20 % in validation
    if not os.path.isdir(os.path.join(root, "train")):
        print(f"generating {2 * n} JPEGs (200-500 px) in {root} ...", flush=True)
        generate(root, n=n, image_size=200, max_size=500, seed=seed)
    return os.path.join(root, "train")


def legacy_image_data_generator():
    """The seed's ImageDataGenerator: tf_keras' if installed, else Keras 3's legacy copy."""
    try:
        from tf_keras.preprocessing.image import ImageDataGenerator

        return ImageDataGenerator, "tf_keras"
    except ImportError:
        from keras.src.legacy.preprocessing.image import ImageDataGenerator

        return ImageDataGenerator, "keras legacy"


def progress(msg: str) -> None:
    print(f"... {msg}", file=sys.stderr, flush=True)


def rate(n: int, seconds: float) -> float:
    return n / seconds


def time_iter(iterable, count=lambda b: len(b[1])) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    for batch in iterable:
        n += count(batch)
    return n, time.perf_counter() - t0


def bench_baseline(train_dir: str, size: int, batch: int, repeats: int = 2) -> tuple[float, str]:
    IDG, origin = legacy_image_data_generator()
    gen = IDG(rescale=1.0 / 255, shear_range=0.2, zoom_range=0.2, horizontal_flip=True).flow_from_directory(
        train_dir, target_size=(size, size), batch_size=batch, class_mode="binary", seed=0
    )
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = sum(len(gen[i][1]) for i in range(len(gen)))
        best = max(best, rate(n, time.perf_counter() - t0))
    return best, origin


def bench_stock(train_dir: str, size: int, batch: int, repeats: int = 2) -> float:
    import keras
    import tensorflow as tf

    aug = keras.Sequential(
        [keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.04), keras.layers.RandomZoom(0.2)]
    )
    ds = keras.utils.image_dataset_from_directory(
        train_dir, image_size=(size, size), batch_size=batch, seed=0, verbose=False
    )
    ds = ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    return max(rate(*time_iter(ds)) for _ in range(repeats))


def bench_ours(files, size: int, batch: int, repeats: int = 2, cached_epochs: int = 3) -> tuple[float, float]:
    """Best first (cold cache) epoch over fresh datasets, best cached epoch."""
    from model.pipeline import make_dataset

    first, cached = [], []
    for _ in range(repeats):
        ds = make_dataset(files, size, batch, training=True, seed=0)
        first.append(rate(*time_iter(ds)))
        cached += [rate(*time_iter(ds)) for _ in range(cached_epochs)]
    return max(first), max(cached)


def bench_cnn(files, size: int, batch: int, rounds: int = 3) -> tuple[float, float, float]:
    """Images/s of one CNN epoch: in-memory arrays, ours from disk (1st epoch), ours cached.

    Rounds interleave the feeds (memory, then a fresh pipeline for two
    epochs); each figure is its best round.
    """
    import keras
    import numpy as np

    from model.nets import make_cnn
    from model.pipeline import make_dataset

    keras.utils.set_random_seed(0)
    # The same images the pipeline yields, materialized once as arrays.
    x, y = [], []
    for xb, yb in make_dataset(files, size, batch, training=False, cache=False):
        x.append(xb.numpy())
        y.append(yb.numpy())
    x, y = np.concatenate(x), np.concatenate(y)

    model = make_cnn(size, 2, augment=False)  # the fastest model: the hardest to keep fed
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[: 4 * batch], y[: 4 * batch], batch_size=batch, epochs=1, verbose=0)  # trace once

    class EpochTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.t0)

    n = len(files)
    mem, first, cached = [], [], []
    for r in range(rounds):
        progress(f"cnn round {r + 1}/{rounds}")
        times = EpochTimes()
        model.fit(x, y, batch_size=batch, epochs=1, shuffle=True, verbose=0, callbacks=[times])
        mem.append(rate(n, times.seconds[0]))
        times = EpochTimes()
        ds = make_dataset(files, size, batch, training=True, seed=r)
        model.fit(ds, epochs=2, verbose=0, shuffle=False, callbacks=[times])
        first.append(rate(n, times.seconds[0]))
        cached.append(rate(n, times.seconds[1]))
    return max(mem), max(first), max(cached)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000, help="training JPEGs (default 2000)")
    p.add_argument("--image-size", type=int, default=150, help="default 150 (the course's)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--data", default=None, help="folder for the generated set (reused if present; default: a temp dir)")
    p.add_argument("--cnn-images", type=int, default=640, help="images per CNN epoch (default 640)")
    p.add_argument("--skip-cnn", action="store_true", help="pipelines only")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        train_dir = make_data(args.data or os.path.join(tmp, "data"), args.images)
        files = scan_folders(os.path.dirname(train_dir)).train
        size, batch = args.image_size, args.batch_size

        import keras
        import tensorflow as tf

        progress("baseline: ImageDataGenerator")
        baseline, origin = bench_baseline(train_dir, size, batch)
        progress("reference: image_dataset_from_directory")
        stock = bench_stock(train_dir, size, batch)
        progress("ours")
        first, cached = bench_ours(files, size, batch)
        cnn_files = files[:: max(1, len(files) // args.cnn_images)][: args.cnn_images]
        cnn = None if args.skip_cnn else bench_cnn(cnn_files, size, batch)

    devices = ", ".join(d.device_type for d in tf.config.list_physical_devices())
    print()
    print(
        f"input pipeline: {len(files)} JPEGs (200-500 px) -> {size} px, batch {batch}; "
        f"{os.cpu_count()} CPU cores ({devices}); TF {tf.__version__}, Keras {keras.__version__}, "
        f"Python {platform.python_version()}"
    )
    rows = [
        (f"ImageDataGenerator.flow_from_directory ({origin}), baseline", baseline, baseline, ""),
        ("image_dataset_from_directory + Keras aug layers", stock, baseline, ""),
        ("ours, first epoch (decode + resize + cache)", first, baseline, ">= 5x"),
        ("ours, cached epoch", cached, baseline, ">= 20x"),
    ]
    if cnn:
        mem, disk_first, disk_cached = cnn
        rows += [
            (f"cnn epoch ({len(cnn_files)} images) fed in-memory arrays", mem, mem, ""),
            ("cnn epoch fed by ours from disk, first epoch", disk_first, mem, ">= 0.9x"),
            ("cnn epoch fed by ours, cached epoch", disk_cached, mem, ">= 0.9x"),
        ]
    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {'images/s':>9}  {'ratio':>7}  goal")
    for name, value, ref, goal in rows:
        print(f"{name:{width}}  {value:9.0f}  {value / ref:6.2f}x  {goal}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
