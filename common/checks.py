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
    bad = UsageError(
        f"{source} = {value!r} is not a valid {key.replace('_', ' ')}",
        f"give a number of {unit} above {low:g} and at most {high:g}"
        if low == 0
        else f"give a number of {unit} from {low:g} to {high:g}",
    )
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


# Terminal control (issue 14, issue 27). What the box prints may hold escape
# sequences: CSI (ESC [ or the one-character C1 CSI U+009B, then parameters and
# one final character), OSC (ESC ] or U+009D ... BEL or ST: titles, OSC 52
# clipboard writes), DCS/SOS/PM/APC strings (... ST) and two-character ESC
# sequences. Each is dropped WHOLE (not just its ESC), but for colour (SGR:
# CSI digits and ';' m) on a terminal. The other C0 controls but newline and
# tab go too (backspace, bell, ...), and DEL and the C1 controls. A carriage
# return redraws the line in place on a terminal; in a file or pipe only the
# line's final state is written, once, when its newline comes (Keras's
# progress bar: one line per epoch, not every redraw).
_CSI_PARAM = frozenset("0123456789:;<=>?")
_SGR_PARAM = frozenset("0123456789;")
_STRING_STARTS = {"]": "osc", "P": "str", "X": "str", "^": "str", "_": "str"}
_C1_STARTS = {"\x9b": "csi", "\x9d": "osc", "\x90": "str", "\x98": "str", "\x9e": "str", "\x9f": "str"}
_MAX_CSI = 64  # longer parameters are no colour of any terminal: dropped


class _Cleaner:
    """The state machine: text in, in any pieces (a sequence may be split
    across them), cleaned text out. tty: the laptop's stdout is a terminal."""

    def __init__(self, tty: bool = False):
        self.tty = tty
        self._state = "text"
        self._params = ""
        self._line: list[str] = []  # not a terminal: the line so far, since its last carriage return
        self._cr = False  # not a terminal: a carriage return not yet known to be a CRLF's

    def feed(self, text: str) -> str:
        out: list[str] = []
        for ch in text:
            self._char(ch, out)
        return "".join(out)

    def finish(self) -> str:
        """The end of the stream: a last line without its newline, in its final state."""
        if self.tty:
            return ""
        self._cr = False
        rest, self._line = "".join(self._line), []
        return rest

    def _emit(self, ch: str, out: list[str]) -> None:
        if self.tty:
            out.append(ch)
            return
        if self._cr:  # a carriage return, then not a newline: the line is drawn again
            self._cr = False
            self._line = []
        self._line.append(ch)

    def _char(self, ch: str, out: list[str]) -> None:
        st = self._state
        if st == "esc":
            if ch == "[":
                self._state, self._params = "csi", ""
            elif ch in _STRING_STARTS:
                self._state = _STRING_STARTS[ch]
            elif " " <= ch <= "/":
                self._state = "esc-inter"  # ESC, intermediates, then one final character
            elif "0" <= ch <= "~":
                self._state = "text"  # a two-character ESC sequence (ESC c resets the terminal)
            else:
                self._state = "text"
                self._char(ch, out)
            return
        if st == "esc-inter":
            if " " <= ch <= "/":
                return
            self._state = "text"
            if not "0" <= ch <= "~":
                self._char(ch, out)
            return
        if st == "csi":
            if ch in _CSI_PARAM or " " <= ch <= "/":
                if len(self._params) <= _MAX_CSI:
                    self._params += ch
                return
            self._state = "text"
            if "@" <= ch <= "~":
                if ch == "m" and self.tty and len(self._params) <= _MAX_CSI and set(self._params) <= _SGR_PARAM:
                    out.append("\x1b[" + self._params + "m")
                return
            self._char(ch, out)  # not a CSI after all: the character is text again
            return
        if st in ("osc", "str"):
            if ch == "\x07" and st == "osc" or ch == "\x9c":
                self._state = "text"
            elif ch == "\x1b":
                self._state = st + "-esc"
            elif ch == "\n":  # an unended string does not swallow the rest of the log
                self._state = "text"
                self._char(ch, out)
            return
        if st in ("osc-esc", "str-esc"):
            self._state = "text" if ch == "\\" else "esc"  # ST; else the ESC ended the string and begins a sequence
            if ch != "\\":
                self._char(ch, out)
            return
        # text
        if ch == "\x1b":
            self._state = "esc"
        elif ch in _C1_STARTS:
            self._state, self._params = _C1_STARTS[ch], ""
        elif ch == "\n":
            if self.tty:
                out.append(ch)
            else:
                self._cr = False
                out.append("".join(self._line) + "\n")
                self._line = []
        elif ch == "\r":
            if self.tty:
                out.append(ch)
            else:
                self._cr = True
        elif ch == "\t" or not ("\x00" <= ch <= "\x1f" or "\x7f" <= ch <= "\x9f"):
            self._emit(ch, out)


def clean(text: str, tty: bool = False) -> str:
    """What the box printed, safe for the laptop's terminal (tty) or for a file
    or pipe (see _Cleaner): escape sequences out whole, colour kept on a
    terminal; carriage-return redraws in place on a terminal, only a line's
    final state otherwise."""
    c = _Cleaner(tty)
    return c.feed(text) + c.finish()


class CleanStream:
    """Bytes from the box to a binary stream, decoded as UTF-8 across chunk
    boundaries and cleaned across them (see clean); close() writes what a
    file's last line still holds."""

    def __init__(self, out, tty: bool = False):
        import codecs

        self._out = out
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._cleaner = _Cleaner(tty)

    def write(self, chunk: bytes) -> None:
        text = self._cleaner.feed(self._decoder.decode(chunk))
        if text:
            self._out.write(text.encode())

    def flush(self) -> None:
        self._out.flush()

    def close(self) -> None:
        """The stream's end: the decoder's and the last line's remainder (the underlying stream stays open)."""
        text = self._cleaner.feed(self._decoder.decode(b"", final=True)) + self._cleaner.finish()
        if text:
            self._out.write(text.encode())
        self._out.flush()
