"""trainbox's training package: the course's cats-vs-dogs workflow as code.

It runs the same on the GPU box and locally (``python -m model --help``).
Importing this package is cheap: TensorFlow and Keras are imported only by
the commands that need them (train, report, predict), never at import time,
and nothing here imports the laptop side (provision/, remote/).
"""

__all__ = ["MODES", "NETS", "SPLITS", "VGG16_MIN_SIZE"]

#: The course's folder layout: DATA/{train,validation}/<class>/*.jpg
SPLITS = ("train", "validation")
#: ``--net`` choices and, for vgg16, ``--mode`` choices (see model.nets).
NETS = ("cnn", "vgg16")
MODES = ("bottleneck", "finetune")
#: keras.applications.VGG16 refuses smaller inputs.
VGG16_MIN_SIZE = 32
