"""Settings: flags > environment > trainbox.toml (working directory) > defaults."""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from common.errors import UsageError

DEFAULTS = {
    "region": "us-east-1",
    "instance_type": "g4dn.xlarge",
    "max_hours": 8.0,
    "idle_minutes": 30.0,
    "volume_gb": 100,
}
ENV = {
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
    "instance_type": ("TRAINBOX_INSTANCE_TYPE",),
    "max_hours": ("TRAINBOX_MAX_HOURS",),
    "idle_minutes": ("TRAINBOX_IDLE_MINUTES",),
    "volume_gb": ("TRAINBOX_VOLUME_GB",),
}


@functools.lru_cache(maxsize=None)
def _toml(cwd: str) -> dict:
    path = Path(cwd) / "trainbox.toml"
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"trainbox.toml is not valid TOML ({e})", "fix the file or remove it") from e


def file_settings() -> dict:
    return _toml(os.getcwd())


def setting(key: str, flag=None):
    """The value of one setting, by precedence; typed like its default."""
    if flag is not None:
        return flag
    for var in ENV.get(key, ()):
        if os.environ.get(var):
            return _typed(key, os.environ[var], var)
    box = file_settings().get("box", {})
    if key in box:
        return _typed(key, box[key], f"trainbox.toml [box] {key}")
    return DEFAULTS[key]


def _typed(key: str, value, source: str):
    kind = type(DEFAULTS[key])
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"{source} = {value!r} is not a valid {key}", f"give a {kind.__name__}") from None


def price_overrides() -> dict:
    return dict(file_settings().get("prices", {}))
