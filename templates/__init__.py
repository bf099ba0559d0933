"""Everything trainbox sends to a box or writes for a shell is rendered here.

Templates render with StrictUndefined (a missing value is an error, never an
empty string), and every value that lands in a shell command goes through
the ``q`` filter (shlex.quote) or ``qjoin`` (a quoted argument list). The
box's paths come from box/layout.py: a ``layout`` (BoxLayout) passed in, and
its file names as the global ``names``.
"""

from __future__ import annotations

import base64
import functools
import gzip
import shlex
import textwrap

import jinja2

from box import layout as box_layout


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("templates", "."),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["q"] = lambda v: shlex.quote(str(v))
    env.filters["qjoin"] = lambda vs: " ".join(shlex.quote(str(v)) for v in vs)
    env.filters["gzip_base64"] = gzip_base64
    env.filters["heredoc"] = heredoc
    env.filters["sshq"] = ssh_config_quote
    env.globals.update(start_file=box_layout.RUN_PID_START, start_time_sh=box_layout.START_TIME_SH)
    # The box's file names (box/layout.py), in every template: `{{ names.READY_MARKER }}`.
    env.globals["names"] = box_layout
    return env


def ssh_config_quote(value) -> str:
    """One argument in an OpenSSH config file: double-quoted when it has a space.
    OpenSSH has no escape for a double quote or a newline: those are refused."""
    text = str(value)
    if '"' in text or any(c < " " for c in text):
        raise ValueError(f"{text!r} cannot be written into an ssh config")
    return text if text and not any(c.isspace() for c in text) else f'"{text}"'


def gzip_base64(text: str) -> str:
    """text gzipped and base64'd in 76-column lines (`base64 -d | gunzip` restores it): big
    scripts inside EC2 user-data, which AWS caps at 16 KB."""
    return "\n".join(textwrap.wrap(base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode(), 76))


def heredoc(text: str, delimiter: str) -> str:
    """text as the body of a quoted here-document (``<<'DELIMITER'``, nothing expanded), the
    line with the delimiter following it: written back byte for byte. The text must end
    with a newline and hold no line that is the delimiter."""
    if not text.endswith("\n") or delimiter in text.splitlines():
        raise ValueError(f"this text cannot go into a here-document ending {delimiter}")
    return text[:-1]


def render(template: str, **context) -> str:
    return environment().get_template(template).render(**context)


def names() -> list[str]:
    return environment().list_templates(filter_func=lambda n: n.endswith(".j2"))
