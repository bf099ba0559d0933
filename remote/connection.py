"""SSH to the box: fabric over paramiko, with a pinned host key.

- Host keys live in trainbox's own known_hosts. A known host whose key
  differs is refused (paramiko raises BadHostKeyException whatever the
  policy); an unknown one is pinned on first use, its fingerprint printed.
- Connecting retries with backoff while the port refuses or SSH is not up
  yet (a box that just booted), up to a deadline; auth and host-key
  failures are final at once.
- Keepalives every 15 s notice a dropped link within a minute.
"""

from __future__ import annotations

import contextlib
import logging
import time

from common import hostkeys, paths
from common.errors import RemoteError, UsageError, name_flag

from .target import Target

log = logging.getLogger(__name__)

KEEPALIVE_S = 15


def _pin_on_first_use(say):
    import paramiko

    class PinOnFirstUse(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client, hostname, key):
            line = f"{key.get_name()} {key.get_base64()}"
            host, _, port = hostname.rpartition("]:") if hostname.startswith("[") else (hostname, "", "22")
            host = host.lstrip("[")
            hostkeys.pin(host, int(port), [line])
            client.get_host_keys().add(hostname, key.get_name(), key)
            say(f"pinned the host key of {hostname}: {hostkeys.fingerprint(line)}")

    return PinOnFirstUse()


def connect(target: Target, timeout: float = 30.0, say=lambda s: None):
    """An open fabric Connection to target, or RemoteError (exit 69)."""
    import paramiko
    from fabric import Config, Connection
    from paramiko.ssh_exception import NoValidConnectionsError

    if target.identity:
        _check_key(target.identity)
    connect_kwargs: dict[str, object] = {
        "look_for_keys": target.identity is None,
        "allow_agent": target.identity is None,
        "banner_timeout": 30,
        "auth_timeout": 30,
    }
    if target.identity:
        connect_kwargs["key_filename"] = [target.identity]
    conn = Connection(
        host=target.host,
        user=target.user,
        port=target.port,
        connect_timeout=max(1, int(min(timeout, 15))),
        connect_kwargs=connect_kwargs,
        config=Config(overrides={"load_ssh_configs": False, "run": {"hide": True, "warn": True}}),
    )
    conn.client.set_missing_host_key_policy(_pin_on_first_use(say))
    conn.client.load_host_keys(str(paths.known_hosts()))
    where = f"{target.user}@{target.host}:{target.port}"
    deadline = time.monotonic() + timeout
    delay = 0.5
    while True:
        try:
            conn.open()
            break
        except paramiko.BadHostKeyException as e:
            expected = hostkeys.fingerprint(f"{e.expected_key.get_name()} {e.expected_key.get_base64()}")
            got = hostkeys.fingerprint(f"{e.key.get_name()} {e.key.get_base64()}")
            raise RemoteError(
                f"host key mismatch for {target.host}:{target.port} (pinned {expected}, offered {got})",
                f"if the box was rebuilt, remove its line from {paths.known_hosts()}; otherwise do not connect",
            ) from e
        except paramiko.AuthenticationException as e:
            raise RemoteError(
                f"{where} refused the key {target.identity or '(agent)'}", "check --identity and the login user"
            ) from e
        except (NoValidConnectionsError, TimeoutError, ConnectionError, EOFError, paramiko.SSHException, OSError) as e:
            if time.monotonic() + delay > deadline:
                if target.box:
                    flag = name_flag(target.box)
                    hint = (
                        f"box '{target.box}' may be stopped: start it with `python -m provision start{flag}`, "
                        f"or add --start (`python -m provision state{flag}` shows its state)"
                    )
                else:
                    hint = "check the host, the port and your network"
                raise RemoteError(f"cannot reach {where} ({e.__class__.__name__}: {e})", hint) from e
            log.debug("connect to %s failed (%s); retrying in %.1fs", where, e, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    conn.transport.set_keepalive(KEEPALIVE_S)
    return conn


def _check_key(path: str) -> None:
    """A private key paramiko can load, or UsageError at once (not a retry loop
    that ends in "the box may be stopped", nor an IndexError from deep inside)."""
    import paramiko

    try:
        paramiko.PKey.from_path(path)
    except paramiko.PasswordRequiredException:
        return  # encrypted: paramiko asks the agent or fails with its own message
    except (OSError, ValueError, IndexError, TypeError, paramiko.SSHException) as e:
        raise UsageError(
            f"the private key {path} cannot be read ({type(e).__name__}: {e or 'empty or truncated'})",
            "restore the key file (a box's key is TRAINBOX_HOME/keys/trainbox-NAME.pem), or pass --identity",
        ) from None


def run(conn, command: str, what: str, hide: bool = True) -> str:
    """Run a command on the box; its stdout, or RemoteError with its stderr tail."""
    result = conn.run(command, hide=hide, warn=True, in_stream=False)
    if result.exited != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise RemoteError(f"{what} failed on the box (exit {result.exited}): {' | '.join(tail)}")
    return result.stdout


def exec_channel(conn, command: str):
    """A session channel running command, with a large window for bulk data."""
    transport = conn.client.get_transport()
    channel = transport.open_session(window_size=64 << 20, max_packet_size=32768)
    channel.exec_command(command)
    return channel


def exit_of(channel) -> tuple[int, str]:
    """Send EOF, wait for the command; its exit status (-1: none came) and its stderr."""
    channel.shutdown_write()
    status = channel.recv_exit_status()
    err = b""
    while channel.recv_stderr_ready():
        err += channel.recv_stderr(65536)
    return status, err.decode(errors="replace").strip()


def finish(channel, what: str) -> None:
    """Send EOF, wait for the command; RemoteError with its stderr if it failed."""
    status, err = exit_of(channel)
    channel.close()
    if status != 0:
        raise RemoteError(f"{what} failed on the box (exit {status}): {err[-300:]}")


def write_file(conn, path: str, data: bytes) -> None:
    """Write data to path on the box (parents created), atomically."""
    import shlex

    p = shlex.quote(path)
    channel = exec_channel(conn, f'mkdir -p "$(dirname {p})" && cat > {p}.tmp && mv {p}.tmp {p}')
    channel.sendall(data)
    finish(channel, f"writing {path}")


class LinkDropped(RemoteError):
    """The SSH link went in the middle of a step: what the box holds is whole or
    absent (each step's own promise), so running the same command again goes on."""

    def __init__(self, what: str, fix: str = "run the same command again: it goes on from what the box already has"):
        super().__init__(what, fix)


def link_lost(conn, settle: float = 1.0) -> bool:
    """conn's SSH transport is gone (the link dropped, the box's sshd session
    ended), waiting up to ``settle`` seconds for paramiko's reader thread to
    notice (a channel may see its end a moment before the transport does)."""
    deadline = time.monotonic() + settle
    while True:
        transport = conn.client.get_transport() if conn.client else None
        if transport is None or not transport.is_active():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


@contextlib.contextmanager
def during(conn, step: str, fix: str | None = None, when: str = "during"):
    """A link that drops inside the block is one LinkDropped naming ``step``
    (paramiko's EOFError, OSError or SSHException, or a command that ended
    with no exit status); any other error passes as it is. The line reads
    "the link to the box dropped {when} {step} (...)": "during the pull of run R",
    "while pushing to DIR"."""
    import paramiko

    try:
        yield
    except LinkDropped:
        raise
    except (EOFError, OSError, paramiko.SSHException, RemoteError) as e:
        if not link_lost(conn):
            raise
        detail = e.what if isinstance(e, RemoteError) else (str(e) or type(e).__name__)
        raise (LinkDropped(f"the link to the box dropped {when} {step} ({detail})", *([fix] if fix else []))) from e
