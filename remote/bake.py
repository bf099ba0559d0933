"""The box's disk made ready for an image: its environment checked, the user's things removed.

``provision image create`` (provision/images.py) images a box whose
environment is ready, after this clean-up over SSH; the CLI composes the two.
What is kept and removed is said in provision/images.py KEPT_TEXT.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from box.layout import BoxLayout
from common.errors import RemoteError, UsageError

from . import setup
from .connection import exec_channel

# What the clean-up keeps in the box's trainbox directory: the environment and
# trainbox's own bootstrap files. Everything else there goes (code, data, runs,
# Jupyter's state, logs, locks, older environments).
KEPT = ("env", "envs/<the current one>", "tools", "bootstrap.sh")
# In the login's home (AWS: the directory is under it): the user's history,
# caches and keys. The DLAMI ships no keys in ~/.ssh (AWS's rule for shared
# AMIs); cloud-init writes each new box's own key there at its first boot.
HOME_REMOVED = (
    ".ssh/*",
    ".bash_history",
    ".python_history",
    ".lesshst",
    ".viminfo",
    ".wget-hsts",
    ".sqlite_history",
    ".zsh_history",
    ".cache",
    ".keras",
    ".jupyter",
    ".ipython",
    ".local/share/jupyter",
    ".aws",
    ".netrc",
    ".gitconfig",
    ".git-credentials",
    ".kaggle",
)


def build_of(marker_text: str) -> str:
    """The build a ready box installed, from its marker (the bootstrap writes gpus=N for a GPU build)."""
    lines = marker_text.splitlines()
    return "gpu" if len(lines) > 1 and " gpus=" in f" {lines[1]}" else "cpu"


# ---------------------------------------------------------------- the box's disk, cleaned over SSH


def clean_script(workdir: str, home: bool) -> str:
    """The clean-up run on the box, as its login user, before imaging: a bash script.

    ``workdir``: trainbox's directory (relative to the home, or absolute). In
    it, only KEPT stays. ``home``: also clean the login's home (HOME_REMOVED)
    and, where passwordless sudo works, the system's logs, root's keys and
    history and cloud-init's per-instance state (so the next boot of this disk,
    the image's or this box's own, is a first boot: new host keys, the box's
    own authorized key, user-data run). The sandbox's process box cleans its
    disk only: its home is this machine's user's.
    Exit 20: the environment is not ready; 21: a job runs.
    """

    w = shlex.quote(workdir)
    lines = [
        "set -u",
        'cd "$HOME" || exit 1',
        f"W={w}",
        'say() { echo "trainbox-clean: $*"; }',
        f'[ -f {shlex.quote(BoxLayout(workdir).ready_marker)} ] || {{ say "error: the environment is not ready"; exit 20; }}',
        f"cur=$(readlink {shlex.quote(BoxLayout(workdir).env_link)})",
        'for f in "$W"/runs/*/pid; do',
        '  [ -e "$f" ] && [ ! -e "${f%/pid}/exit_code" ] && kill -0 "$(cat "$f" 2>/dev/null)" 2>/dev/null &&',
        '    { f=${f%/pid}; say "error: run ${f##*/} is running"; exit 21; }',
        "done",
        "shopt -s nullglob dotglob",
        'for p in "$W"/*; do',
        "  n=${p##*/}",
        '  case "$n" in',
        "    env|tools|bootstrap.sh) continue;;",
        '    envs) for e in "$p"/*; do [ "envs/${e##*/}" = "$cur" ] || { rm -rf "$e"; say "removed $W/envs/${e##*/}"; }; done; continue;;',
        "  esac",
        '  rm -rf "$p" && say "removed $W/$n"',
        "done",
    ]
    if home:
        removed = " ".join(f'"$HOME"/{p}' if "*" in p else f'"$HOME"/{shlex.quote(p)}' for p in HOME_REMOVED)
        lines += [
            f'for p in {removed}; do [ -e "$p" ] || [ -L "$p" ] || continue; rm -rf "$p" && say "removed ~/${{p#$HOME/}}"; done',
            "history -c 2>/dev/null; unset HISTFILE",
            'find /tmp /var/tmp -mindepth 1 -maxdepth 1 -user "$(id -u)" -exec rm -rf {} + 2>/dev/null',
            "if sudo -n true 2>/dev/null; then",
            "  sudo -n rm -rf /root/.ssh/authorized_keys /root/.bash_history /root/.python_history /root/.cache",
            "  sudo -n find /var/log -type f \\( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \\) -delete",
            "  sudo -n find /var/log -type f -exec truncate -s 0 {} +",
            "  sudo -n journalctl --rotate >/dev/null 2>&1; sudo -n journalctl --vacuum-time=1s >/dev/null 2>&1",
            "  command -v cloud-init >/dev/null && sudo -n cloud-init clean --logs >/dev/null 2>&1",
            "  say \"removed the system logs, root's keys and history, cloud-init's state\"",
            "else",
            '  say "no passwordless sudo: the system logs are kept"',
            "fi",
        ]
    lines += ['say "kept $W/env -> $cur, $W/tools, $W/bootstrap.sh"', "sync", "exit 0"]
    return "\n".join(lines) + "\n"


def prepare(conn, workdir: str, opts, home: bool, say: Callable[[str], None]) -> str:
    """Check the box's environment is ready for ``opts``, clean the disk; the build ("gpu"/"cpu")."""
    marker = BoxLayout(workdir).ready_marker
    if not setup.is_ready(conn, workdir, opts):
        raise UsageError(
            "the box's environment is not ready (or was built for other pins)",
            "run `remote setup`, then `image create` again",
        )
    got = conn.run(f"cat {shlex.quote(marker)}", hide=True, warn=True, in_stream=False)
    build = build_of(got.stdout)
    out: list[str] = []
    status = _run_script(conn, clean_script(workdir, home), out.append)
    for line in out:
        if line.startswith("trainbox-clean: ") and not line.startswith("trainbox-clean: error: "):
            say(line[len("trainbox-clean: ") :])
    if status != 0:
        errors = [l.split("error: ", 1)[1] for l in out if l.startswith("trainbox-clean: error: ")]
        if status == 21:
            raise UsageError(
                f"the box is busy ({errors[-1] if errors else 'a run is running'})",
                "wait for it (`remote logs`) or `remote stop` it, then `image create` again",
            )
        raise RemoteError(
            f"cleaning the box's disk failed ({errors[-1] if errors else f'exit {status}'})",
            "nothing was imaged; rerun `image create`",
        )
    return build


def _run_script(conn, script: str, on_line: Callable[[str], None]) -> int:
    """Run a bash script on the box, fed on stdin; each output line to on_line; the exit status."""
    channel = exec_channel(conn, "bash -s")
    try:
        channel.sendall(script.encode())
        channel.shutdown_write()
        return setup.stream_lines(channel, on_line)
    finally:
        channel.close()
