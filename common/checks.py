"""The checks of input trainbox did not write itself: box names, run ids,
cost-guard values, what a state file holds; and what is done to text before
it is shown (credentials out of URLs, terminal control sequences out of what
the box prints). Each bad value is one UsageError (exit 64) naming where it
came from; the callers apply them once, where a value enters."""
from __future__ import annotations

import math
import re
import urllib.parse

from .errors import UsageError

# A box name ends up in file names, AWS names and tags, ssh config Host lines
# and shell commands: letters, digits, dashes and underscores only.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")
NAME_RULE = "1 to 63 letters, digits, '-' or '_', starting with a letter or digit"
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def box_name(name, source: str = "--name") -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(f"{source} {name!r} is not a valid box name", f"use {NAME_RULE}")
    return name


def run_id(text: str, source: str = "run id") -> str:
    if not isinstance(text, str) or not _RUN_ID.fullmatch(text):
        raise UsageError(f"{source} {text!r} is not a run id", "`remote runs` lists them")
    return text


def _arg(check):
    """argparse type= from a check: its UsageError becomes argparse's one-line usage error."""
    import argparse

    def parse(text: str):
        try:
            return check(text)
        except UsageError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = check.__name__
    return parse


run_id_arg = _arg(run_id)
name_arg = _arg(box_name)


# ------------------------------------------------------------ cost guard values

# key: (kind, lowest, highest, unit). A box must live long enough to be used.
# Fractions of a minute are for trying the guard out (the sandbox's tests):
# under short limits its timer ticks every quarter of the limit, 5 s at least
# (provision/up.py guard_period_s), so 3 s is the least idle time it can honour.
RANGES = {
    "max_hours": (float, 0.0, 24 * 365, "hours"),  # > 0
    "idle_minutes": (float, 0.05, 60 * 24 * 30, "minutes"),
    "volume_gb": (int, 1, 16384, "GB"),  # gp3's largest
    # `up --nodes`: a typo of 100 must not launch 100 GPUs (a cluster group of more is rare).
    "nodes": (int, 1, 64, "nodes"),
}


def in_range(key: str, value, source: str):
    """value (from a flag, the environment or trainbox.toml) as the setting's
    kind and within its range, or one UsageError naming source."""
    kind, low, high, unit = RANGES[key]
    bad = UsageError(f"{source} = {value!r} is not a valid {key.replace('_', ' ')}",
                     f"give a number of {unit} above {low:g} and at most {high:g}" if low == 0
                     else f"give a number of {unit} from {low:g} to {high:g}")
    if isinstance(value, bool):
        raise bad
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise bad from None
    if not math.isfinite(number) or number < low or number > high or (low == 0 and number <= 0):
        raise bad
    if kind is int:
        if number != int(number):
            raise bad
        return int(number)
    return number


def range_arg(key: str):
    """argparse type= for a cost-guard flag."""
    def check(text: str):
        return in_range(key, text, "--" + key.replace("_", "-"))

    check.__name__ = key  # argparse names the type in its messages
    return _arg(check)


# ------------------------------------------------------------ state files

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def plain(value, source: str) -> str:
    """A string from a file trainbox reads back, with no control character
    (a newline would start a new line in ssh_config or a shell)."""
    if not isinstance(value, str) or _CONTROL.search(value):
        raise UsageError(f"{source} holds {value!r}, not a plain string")
    return value


def port(value, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise UsageError(f"{source} holds the port {value!r}, not 1 to 65535")
    return value


# ------------------------------------------------------------ what is shown


def redact_url(url: str) -> str:
    """url without the user and password it may carry (``https://***@host/...``)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "(an unparsable URL)"
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def redact_all(text: str, *urls: str | None) -> str:
    """text with every one of urls (and its userinfo however spelled) replaced by its redacted form."""
    for url in urls:
        if url and "@" in url:
            text = text.replace(url, redact_url(url))
            userinfo = urllib.parse.urlsplit(url).netloc.rpartition("@")[0]
            if userinfo:
                text = text.replace(userinfo, "***")
    return text


# Terminal control: ESC and the other C0 controls but newline and tab (CSI,
# OSC titles, OSC 52 clipboard writes, cursor moves, bells), DEL, and the C1
# controls (U+0080-U+009F: a one-character CSI or OSC on some terminals).
_TERMINAL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean(text: str) -> str:
    """What the box printed, safe for the laptop's terminal: control characters
    out but newlines and tabs (a carriage return becomes a newline)."""
    return _TERMINAL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))


class CleanStream:
    """Bytes from the box to a binary stream, decoded as UTF-8 across chunk
    boundaries and cleaned (see clean)."""

    def __init__(self, out):
        import codecs

        self._out = out
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._cr = False

    def write(self, chunk: bytes) -> None:
        text = self._decoder.decode(chunk)
        if self._cr:
            text = "\r" + text
        self._cr = text.endswith("\r")
        if self._cr:
            text = text[:-1]
        self._out.write(clean(text).encode())

    def flush(self) -> None:
        self._out.flush()
