"""A hostile or secret index URL (issue 14, findings 4 and 5): nothing in it
runs on the box, and the credentials it carries are on no command line, in
no world-readable file, in no message and not in EC2 user-data."""

from __future__ import annotations

import stat
import subprocess

from box_fixtures import box_user, index, users_sshd  # noqa: F401 (fixtures)
from box_helpers import env, log_of, marker_of, one_line_error, run_cli

from common.errors import RemoteError
from remote import setup


def test_an_index_url_cannot_run_commands_on_the_box(box_user):
    from common.procs import free_port

    proof = box_user.home / "ran"  # where the box user could write
    evil = f"http://127.0.0.1:{free_port()}/simple/$(touch${{IFS}}{proof})`touch${{IFS}}{proof}`"
    r = run_cli(
        *box_user.remote("setup", "--installer", "pip", "--index-url", evil),
        env={"TRAINBOX_JUPYTER": "0", "TRAINBOX_INSTALL_RETRIES": "1"},
    )
    assert r.code == RemoteError.exit_code
    assert "no network from the box to the package index" in one_line_error(r)
    assert not proof.exists()


def test_index_credentials_stay_off_command_lines_logs_and_messages(box_user, index):
    secret_url = index.url.replace("http://", "http://alice:s3cr3t-pw@")
    text = setup.render_bootstrap("trainbox", setup.SetupOptions(index_url=secret_url))
    # Only in an environment variable the installers read (never in an argument list).
    assert [l for l in text.splitlines() if "s3cr3t-pw" in l] == [
        f"export PIP_INDEX_URL={secret_url} UV_INDEX_URL={secret_url}"
    ]
    r = run_cli(*box_user.remote("setup", "--installer", "pip", "--index-url", secret_url), env=env(index))
    assert r.code == 0, r.err
    assert marker_of(box_user).exists(), "installed through the credentialed index"
    assert "s3cr3t-pw" not in r.out + r.err
    assert "s3cr3t-pw" not in log_of(box_user)
    for f in ("bootstrap.sh", "setup.log"):
        mode = stat.S_IMODE((box_user.home / "trainbox" / f).stat().st_mode)
        assert mode & 0o077 == 0, f"{f} is {oct(mode)}"


def test_a_failing_credentialed_index_is_named_without_its_credentials(box_user):
    from common.procs import free_port

    url = f"http://alice:s3cr3t-pw@127.0.0.1:{free_port()}/simple/"
    r = run_cli(
        *box_user.remote("setup", "--installer", "pip", "--index-url", url),
        env={"TRAINBOX_JUPYTER": "0", "TRAINBOX_INSTALL_RETRIES": "1"},
    )
    assert r.code == RemoteError.exit_code
    line = one_line_error(r)
    assert "s3cr3t-pw" not in r.err + r.out and "alice" not in line
    assert "***@127.0.0.1" in line
    assert "s3cr3t-pw" not in log_of(box_user)


def test_user_data_never_carries_index_credentials(monkeypatch):
    from cli.box_life import first_boot_bootstrap
    from provision.up import UpOptions, user_data

    monkeypatch.setenv("TRAINBOX_INDEX_URL", "https://bob:hunter2@mirror.example/simple/$(reboot)")
    text = user_data(UpOptions(name="b1", bootstrap=first_boot_bootstrap()), "ubuntu")
    # No bootstrap in it (box/layout.py, shipped for the agent, names the file): the first `remote` command installs over SSH.
    assert "hunter2" not in text and "TRAINBOX_BOOTSTRAP_EOF" not in text
    monkeypatch.setenv("TRAINBOX_INDEX_URL", "https://mirror.example/simple/$(reboot)")
    text = user_data(UpOptions(name="b1", bootstrap=first_boot_bootstrap()), "ubuntu")
    assert "TRAINBOX_BOOTSTRAP_EOF" in text
    p = subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True)
    assert p.returncode == 0, p.stderr
