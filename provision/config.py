"""Settings: flags > environment > trainbox.toml (working directory) > defaults."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from common import checks
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


@functools.cache
def _toml(cwd: str) -> dict:
    path = Path(cwd) / "trainbox.toml"
    if not path.exists():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"trainbox.toml is not valid TOML ({e})", "fix the file or remove it") from e
    _check_file(data)
    return data


def _check_file(data: dict) -> None:
    """The whole of trainbox.toml, checked once when it is read: a typo or a bad
    value is refused before anything is made, not when it is first used."""
    for name, value in data.items():
        if name not in ("box", "prices"):
            raise UsageError(f"trainbox.toml: unknown key {name!r}", "it has a [box] and a [prices] section")
        if not isinstance(value, dict):
            raise UsageError(f"trainbox.toml: {name} = {value!r} is not a table", f"write it as a [{name}] section")
    for key, value in data.get("box", {}).items():
        if key not in DEFAULTS:
            raise UsageError(f"trainbox.toml: unknown key [box] {key}", f"the keys are {', '.join(DEFAULTS)}")
        _typed(key, value, f"trainbox.toml [box] {key}")
    for kind, price in data.get("prices", {}).items():
        if isinstance(price, bool) or not isinstance(price, (int, float)) or not 0 <= price < float("inf"):
            raise UsageError(
                f"trainbox.toml: [prices] {kind!r} = {price!r} is not a price", "give dollars per hour, e.g. 0.526"
            )


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
    if key in checks.RANGES:
        return checks.in_range(key, value, source)
    kind: Any = type(DEFAULTS[key])  # str, int or float: it converts the value
    if not isinstance(value, (str, kind)) or isinstance(value, bool):
        raise UsageError(f"{source} = {value!r} is not a valid {key}", f"give a {kind.__name__}")
    return checks.plain(kind(value), source)


def price_overrides() -> dict:
    return dict(file_settings().get("prices", {}))
