"""``remote doctor``'s look inside an interpreter on the box: standard library only.

Sent as ``python -c <this file> [--gpus]`` (remote/doctor.py), never imported
on the laptop. Prints one line, ``probe=JSON``: the Python version, the
installed TensorFlow, Keras and JAX versions (None: missing) and, with --gpus,
the GPUs the backend sees (TensorFlow; JAX with --jax), or why it does not import;
with --dists A,B: which of these distributions (a project's requirements) are
not installed.
"""

import importlib.metadata as m
import json
import os
import sys


def version(*names):
    """The installed version of the first of these distributions, or None."""
    for n in names:
        try:
            return m.version(n)
        except m.PackageNotFoundError:
            pass
    return None


def probe(gpus: bool, jax: bool = False) -> dict:
    out = {
        "python": ".".join(str(n) for n in sys.version_info[:3]),
        "tensorflow": version("tensorflow", "tensorflow-cpu"),
        "keras": version("keras"),
        "jax": version("jax"),
        "gpus": None,
    }
    if jax:
        if out["jax"] and gpus:
            try:
                mod = __import__("jax")
                out["gpus"] = [str(d) for d in mod.devices() if d.platform == "gpu"]
            except Exception as e:  # noqa: BLE001 (any failure is the finding)
                out["jax_error"] = f"{type(e).__name__}: {e}"
        return out
    if out["tensorflow"] and gpus:
        try:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            tf = __import__("tensorflow")
            out["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
        except Exception as e:  # noqa: BLE001 (any import failure is the finding)
            out["tf_error"] = f"{type(e).__name__}: {e}"
    return out


def missing(names: list[str]) -> list[str]:
    return [n for n in names if version(n) is None]


if __name__ == "__main__":
    found = probe("--gpus" in sys.argv, "--jax" in sys.argv)
    if "--dists" in sys.argv[:-1]:
        found["missing"] = missing([n for n in sys.argv[sys.argv.index("--dists") + 1].split(",") if n])
    print("probe=" + json.dumps(found))
