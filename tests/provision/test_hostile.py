"""Hostile and broken input on the provision side (issue 14): pid files the
sandbox reads back, box names, cost-guard values, host-key pins across a
restart, corrupt state files and trainbox.toml. Each case gets one line and
exit 2 (3 for a cloud/SSH fault); nothing that is not ours is signalled,
deleted or run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from pvkit import CIDR, aws, ec2, launch, moto_ami, moto_module, name  # noqa: F401

from cli.provision_main import main
from common import hostkeys, paths, procs, state
from common.errors import UsageError
from common.state import BoxState
from provision import lifecycle
from sandbox import boxes


def one_line(err: str) -> str:
    assert "Traceback" not in err and "unexpected" not in err, err
    lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def usage_exit(capsys, argv) -> str:
    """main(argv) is a usage error's exit (64) with one error line (from argparse or the handler)."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    assert rc == UsageError.exit_code
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


# ---------------------------------------------------------------- 1: pid files


def _session_sleeper() -> subprocess.Popen:
    """A process of this test's own, leading its own session and group (as a job does)."""
    return subprocess.Popen(["sleep", "60"], start_new_session=True)


def _gone(p: subprocess.Popen, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def signals(monkeypatch) -> list[int]:
    """The pids signalled (besides kill 0), through a guard that fails the test
    before any signal reaches a pid <= 1: killpg(1) is kill(-1), every process."""
    sent: list[int] = []

    def guard(real):
        def call(pid, sig):
            if pid <= 1:
                raise AssertionError(f"signal {sig} to {pid}")
            if sig:
                sent.append(pid)
            return real(pid, sig)

        return call

    monkeypatch.setattr(os, "killpg", guard(os.killpg))
    monkeypatch.setattr(os, "kill", guard(os.kill))
    return sent


def test_sandbox_stop_signals_only_the_jobs_it_recorded(signals):
    disk = boxes.box_workdir("default")
    runs = disk / "runs"
    ours, finished, reused = _session_sleeper(), _session_sleeper(), _session_sleeper()
    try:

        def job(run, pid, start, exit_code=None):
            d = runs / run
            d.mkdir(parents=True)
            (d / "pid").write_text(f"{pid}\n")
            if start is not None:
                (d / procs.START_FILE).write_text(f"{start}\n")
            if exit_code is not None:
                (d / "exit_code").write_text(f"{exit_code}\n")

        job("a-ours", ours.pid, procs.start_time(ours.pid))  # running, recorded: ours
        job("b-done", finished.pid, procs.start_time(finished.pid), exit_code=0)  # finished: its pid is history
        job("c-reused", reused.pid, "12345")  # a stale pid now someone else's (another start time)
        job("d-unrecorded", reused.pid, None)  # an older run.sh's pid file: nothing proves it is ours
        job("e-init", 1, procs.start_time(1) or "1")  # never: killpg(1) is kill(-1)
        job("f-junk", "-1", None)
        boxes._kill_jobs("default")
        assert _gone(ours)
        assert finished.poll() is None and reused.poll() is None
        assert set(signals) == {ours.pid}
    finally:
        for p in (ours, finished, reused):
            p.kill()
            p.wait()


def test_terminate_refuses_pid_1_and_below(signals):
    for pid in (1, 0, -5):
        with pytest.raises(ValueError):
            procs.terminate(pid, group=True)


def test_run_script_records_its_start_time(tmp_path):
    """run.sh writes the start time of its own process next to its pid: what the sandbox checks."""
    from box.layout import BoxLayout
    from remote import job

    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    script = job.render_script(BoxLayout(str(tmp_path)), "r", str(tmp_path), ["sleep", "30"], python="true")
    p = subprocess.Popen(["bash", "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not (run_dir / "pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert int((run_dir / "pid").read_text()) == p.pid
        assert (run_dir / procs.START_FILE).read_text().strip() == procs.start_time(p.pid)
        assert procs.recorded_alive(p.pid, (run_dir / procs.START_FILE).read_text())
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


# ---------------------------------------------------------------- 2: names

BAD_NAMES = ["", "../../..", "x;touch /tmp/p", "x\ntouch /tmp/p #", "-x", "a/b", "a b", "$(id)", "x" * 64]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_a_bad_name_is_refused_before_anything_is_touched(capsys, moto_endpoint, bad, tmp_path):
    keep = boxes.box_workdir("other") / "file"
    keep.write_text("mine")
    (paths.home() / "known_hosts").write_text("[127.0.0.1]:2222 ssh-ed25519 AAAA\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    for argv in (["down", "--sandbox", "--yes"], ["aliases"], ["ssh-config"], ["stop"], ["up", "--sandbox"]):
        err = usage_exit(capsys, [*argv, "--name", bad])
        assert "name" in err
    assert keep.read_text() == "mine" and outside.is_dir()
    assert (paths.home() / "known_hosts").read_text() == "[127.0.0.1]:2222 ssh-ed25519 AAAA\n"


def test_a_bad_name_is_refused_by_remote_too(capsys):
    from cli.remote_main import main as remote_main

    with pytest.raises(SystemExit) as e:
        remote_main(["status", "--name", "x;id"])
    assert e.value.code == UsageError.exit_code
    assert "name" in capsys.readouterr().err


def test_aliases_quote_the_name():
    import shlex

    from common.errors import name_flag

    assert shlex.split(name_flag("gpu-2")) == ["--name", "gpu-2"]


def _box(**kw) -> BoxState:
    base = dict(
        name="default",
        region="us-east-1",
        instance_id="i-1",
        instance_type="t3.micro",
        ssh_host="127.0.0.1",
        ssh_user="ubuntu",
        key_path="/k",
    )
    base.update(kw)
    return BoxState(**base)


@pytest.mark.parametrize(
    "field,value",
    [
        ("name", "x\nProxyCommand touch /tmp/p"),
        ("name", "../x"),
        ("ssh_host", "h\nProxyCommand touch /tmp/p"),
        ("ssh_user", "u\n  ProxyCommand x"),
        ("key_path", "/k\nProxyCommand x"),
        ("ssh_port", "22; id"),
        ("ssh_port", 0),
        ("workdir", "w\nx"),
    ],
)
def test_a_tampered_state_file_is_refused_naming_it(capsys, field, value):
    state.save(_box())
    f = paths.state_dir() / "default.json"
    data = json.loads(f.read_text())
    data[field] = value
    f.write_text(json.dumps(data))
    err = usage_exit(capsys, ["ssh-config"])
    assert str(f) in err
    assert not (paths.home() / "ssh_config").exists()


def test_a_corrupt_state_file_names_itself(capsys):
    f = paths.state_dir() / "default.json"
    f.write_text("{not json")
    err = usage_exit(capsys, ["ssh-config"])
    assert str(f) in err and "down" in err


def test_down_goes_on_past_a_corrupt_state_file(capsys, moto_endpoint):
    f = paths.state_dir() / "default.json"
    f.write_text("{not json")
    assert main(["down", "--sandbox", "--yes"]) in (0, 2)
    err = capsys.readouterr().err
    assert str(f) in err and "Traceback" not in err
    assert not f.exists()  # the corrupt file is gone with the box


def test_ssh_config_quotes_paths_with_spaces(tmp_path, monkeypatch):
    home = tmp_path / "my home"
    monkeypatch.setenv("TRAINBOX_HOME", str(home))
    state.save(_box(key_path=str(home / "key file.pem")))
    assert main(["ssh-config"]) == 0
    text = (home / "ssh_config").read_text()
    assert f'IdentityFile "{home}/key file.pem"' in text
    assert f'UserKnownHostsFile "{home}/known_hosts"' in text
    p = subprocess.run(
        ["ssh", "-G", "-F", str(home / "ssh_config"), "trainbox-default"], capture_output=True, text=True, timeout=30
    )
    assert p.returncode == 0, p.stderr
    assert f"identityfile {home}/key file.pem" in p.stdout.splitlines()


# ---------------------------------------------------------------- 7: cost guard values


@pytest.mark.parametrize(
    "var,value",
    [
        ("TRAINBOX_MAX_HOURS", "-2"),
        ("TRAINBOX_MAX_HOURS", "nan"),
        ("TRAINBOX_MAX_HOURS", "inf"),
        ("TRAINBOX_MAX_HOURS", "0"),
        ("TRAINBOX_IDLE_MINUTES", "0"),
        ("TRAINBOX_IDLE_MINUTES", "-1"),
        ("TRAINBOX_IDLE_MINUTES", "nan"),
        ("TRAINBOX_VOLUME_GB", "0"),
        ("TRAINBOX_VOLUME_GB", "-5"),
        ("TRAINBOX_VOLUME_GB", "1e9"),
    ],
)
def test_cost_guard_values_from_the_environment_are_range_checked(aws, capsys, monkeypatch, var, value, name):
    monkeypatch.setenv(var, value)
    assert main(["up", "--name", name, "--ssh-cidr", CIDR, "--no-wait"]) == UsageError.exit_code
    assert var in one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "toml,key",
    [
        ("[box]\nmax_hours = -2\n", "max_hours"),
        ("[box]\nidle_minutes = nan\n", "idle_minutes"),
        ("[box]\nmax_hours = inf\n", "max_hours"),
        ("[box]\nvolume_gb = 0\n", "volume_gb"),
        ("[box]\nmax_hours = true\n", "max_hours"),
        ("box = 5\n", "box"),
        ("prices = 'x'\n", "prices"),
        ("[box]\nregion = 5\n", "region"),
        ("[prices]\n'g4dn.xlarge' = 'cheap'\n", "prices"),
    ],
)
def test_cost_guard_values_from_trainbox_toml_are_range_checked(aws, capsys, tmp_path, toml, key, name):
    (tmp_path / "trainbox.toml").write_text(toml)
    assert main(["up", "--name", name, "--ssh-cidr", CIDR, "--no-wait"]) == UsageError.exit_code
    line = one_line(capsys.readouterr().err)
    assert "trainbox.toml" in line and key in line


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--max-hours", "nan"),
        ("--max-hours", "inf"),
        ("--idle-minutes", "nan"),
        ("--idle-minutes", "0.01"),
        ("--volume-gb", "99999999"),
    ],
)
def test_cost_guard_flags_refuse_nan_inf_and_out_of_range(capsys, flag, value):
    assert flag in usage_exit(capsys, ["up", flag, value])


def test_fractions_of_a_minute_are_honoured_down_to_what_the_guard_can_tick():
    from common import checks

    assert checks.in_range("idle_minutes", "0.1", "--idle-minutes") == 0.1  # the container box's idle test
    assert checks.in_range("max_hours", "0.006", "--max-hours") == 0.006


# ---------------------------------------------------------------- 6: host keys

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"


def _stopped_box(launch, ec2, aws):
    box, _ = launch()
    inst = lifecycle.find_instance(aws, box.name)
    box.ssh_host = box.public_ip = "198.51.100.9"  # where it was before it stopped
    state.save(box)
    hostkeys.pin(box.ssh_host, 22, [KEY_A])
    ec2.stop_instances(InstanceIds=[inst.id])
    return box, inst


def test_start_carries_the_pin_to_the_new_address_and_drops_the_old(launch, ec2, aws):
    box, _ = _stopped_box(launch, ec2, aws)
    started = lifecycle.start(aws, box.name)
    assert started.ssh_host != "198.51.100.9"
    text = paths.known_hosts().read_text()
    assert f"{started.ssh_host} {KEY_A}" in text.splitlines()
    assert "198.51.100.9" not in text


def test_status_carries_the_pin_when_the_address_changed(launch, ec2, aws):
    box, _ = launch()
    new_ip = box.ssh_host
    box.ssh_host = box.public_ip = "198.51.100.9"
    state.save(box)
    hostkeys.pin("198.51.100.9", 22, [KEY_A])
    assert lifecycle.status(aws, box.name).address == new_ip
    text = paths.known_hosts().read_text()
    assert f"{new_ip} {KEY_A}" in text.splitlines() and "198.51.100.9" not in text


def test_up_never_silently_replaces_a_pinned_key(ec2, moto_ami):
    from common.errors import RemoteError
    from provision.up import pin_host_key

    inst = ec2.run_instances(ImageId=moto_ami, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    hostkeys.pin("203.0.113.50", 22, [KEY_A])
    with pytest.raises(RemoteError) as e:
        pin_host_key(ec2, inst, "203.0.113.50", scan=lambda h, p: [KEY_B])
    assert "changed" in str(e.value) and hostkeys.fingerprint(KEY_B) in str(e.value)
    assert paths.known_hosts().read_text().splitlines() == [f"203.0.113.50 {KEY_A}"]
    how, lines = pin_host_key(ec2, inst, "203.0.113.50", scan=lambda h, p: [KEY_A])  # the same key: fine
    assert lines == [KEY_A] and how == "pinned"


def test_a_corrupt_known_hosts_line_does_not_break_pinning():
    paths.known_hosts().write_text("garbage\n\n203.0.113.1 ssh-ed25519\n")
    hostkeys.pin("203.0.113.2", 22, [KEY_A])
    assert hostkeys.pinned("203.0.113.2", 22) == [KEY_A]
    assert hostkeys.pinned("203.0.113.1", 22) == []
