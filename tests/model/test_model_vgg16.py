"""vgg16: bottleneck (frozen base) then finetune (block5 unfrozen), one epoch each, no downloads."""

import json
import os

import pytest

from model.train import TrainConfig, train


@pytest.mark.slow
def test_bottleneck_then_finetune(small_data, tmp_path):
    import keras

    import model.nets  # noqa: F401

    common = dict(data=small_data, epochs=1, net="vgg16", image_size=32, batch_size=16, weights="none", seed=0)
    lines = []
    bottleneck = str(tmp_path / "bottleneck")
    result = train(TrainConfig(out=bottleneck, mode="bottleneck", **common), log=lines.append)
    assert result.epochs_run == 1
    assert any(line.startswith("epoch 1/1") for line in lines)
    net = keras.saving.load_model(os.path.join(bottleneck, "model.keras"))
    base = net.get_layer("vgg16")
    assert not base.trainable_weights, "bottleneck trains the head only"
    assert net.trainable_weights

    finetune = str(tmp_path / "finetune")
    init = os.path.join(bottleneck, "model.keras")
    result = train(TrainConfig(out=finetune, mode="finetune", init=init, **common), log=lines.append)
    assert result.epochs_run == 1
    net = keras.saving.load_model(os.path.join(finetune, "model.keras"))
    base = net.get_layer("vgg16")
    trainable = {w.path.split("/")[0] for w in base.trainable_weights}
    assert trainable == {"block5_conv1", "block5_conv2", "block5_conv3"}, trainable
    with open(os.path.join(finetune, "run.json")) as f:
        assert json.load(f)["lr"] == 1e-5  # the small fine-tuning rate
    with open(os.path.join(finetune, "history.json")) as f:
        assert len(json.load(f)["val_accuracy"]) == 1
    for name in ("grid_uncertain.png", "confusion_matrix.png", "checkpoints/best.keras"):
        assert os.path.exists(os.path.join(finetune, name))


def test_vgg16_base_weights_from_a_local_file(tmp_path):
    """--weights PATH: a notop weights file on disk (what the box can cache); no download."""
    import keras
    import numpy as np

    from model.nets import make_vgg16

    keras.utils.set_random_seed(1)
    base = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = str(tmp_path / "vgg16_notop.weights.h5")
    base.save_weights(path)
    model = make_vgg16(32, 2, weights=path, mode="bottleneck", augment=False)
    loaded = model.get_layer("vgg16").get_layer("block5_conv3").get_weights()[0]
    assert np.array_equal(loaded, base.get_layer("block5_conv3").get_weights()[0])
