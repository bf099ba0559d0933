"""Your own Keras script on the box: `remote run --data DIR -- python train_tiny.py 3`.

It reads $TRAINBOX_DATA (train/ and validation/, a folder per class), writes checkpoints and
a plot to $TRAINBOX_OUT (what comes home), and resumes from there: `remote run --resume RUN`.
"""

import os
import sys

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

data, out = os.environ["TRAINBOX_DATA"], os.environ.get("TRAINBOX_OUT", "out")
epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
train, val = (
    keras.utils.image_dataset_from_directory(f"{data}/{s}", image_size=(32, 32), batch_size=16)
    for s in ("train", "validation")
)
model = keras.Sequential(
    [
        keras.Input((32, 32, 3)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(len(train.class_names), activation="softmax"),
    ]
)
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(
    train,
    validation_data=val,
    epochs=epochs,
    callbacks=[
        keras.callbacks.BackupAndRestore(f"{out}/backup"),  # a restarted run goes on from its last epoch
        keras.callbacks.ModelCheckpoint(f"{out}/checkpoints/epoch-{{epoch}}.keras"),
    ],
)
plt.plot(history.history["loss"], label="loss")
plt.plot(history.history["val_loss"], label="val_loss")
plt.legend()
plt.savefig(f"{out}/loss.png")
print(f"done (TRAINBOX_RESUMED={os.environ.get('TRAINBOX_RESUMED', '0')}); outputs in {out}")
