"""The instance's user-data: renders strictly, is valid bash, fits AWS's limit,
and its cost guard really stops an over-time or idle box (run here, with
`shutdown` and `logger` faked on PATH)."""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest

import templates
from box.layout import BoxLayout
from provision.up import USER_DATA_LIMIT, UpOptions, user_data, user_data_payload, user_data_text
from remote import setup


def guard_script(text: str) -> str:
    m = re.search(r"<<'GUARD'\n(.*?)\nGUARD\n", text, re.S)
    assert m, "the guard heredoc is in the user-data"
    return m.group(1)


def test_user_data_is_valid_bash_with_the_limits_and_fits_aws():
    bootstrap = setup.render_bootstrap("trainbox", setup.SetupOptions.from_env())
    text = user_data(UpOptions(max_hours=2.5, idle_minutes=15, bootstrap=bootstrap), "ubuntu")
    assert text.startswith("#!/bin/bash\n")
    for script in (text, guard_script(text)):
        p = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
        assert p.returncode == 0, p.stderr
    assert "max_seconds=9000" in text and "idle_seconds=900" in text
    assert 'runs="$(getent passwd ubuntu | cut -d: -f6)"/trainbox/runs' in text, "the home as the box has it"
    assert "systemctl enable --now trainbox-guard.timer" in text
    # AWS refuses user-data over 16 KB (before base64): trainbox sends it gzipped, which cloud-init unpacks.
    payload = user_data_payload(text)
    assert len(payload) <= USER_DATA_LIMIT == 16384 and user_data_text(payload) == text


def test_a_missing_value_is_an_error():
    with pytest.raises(jinja2.UndefinedError):
        templates.render("user-data.sh.j2", name="x", max_hours=1, idle_minutes=1)


@pytest.fixture
def guard(tmp_path):
    """Run the rendered guard with fake shutdown/logger; returns run(max_hours, idle_minutes)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("shutdown", "logger"):
        (bin_dir / tool).write_text(f'#!/bin/bash\necho "{tool} $*" >> {tmp_path}/called\n')
        (bin_dir / tool).chmod(0o755)
    # `ss` answers what the test wrote to tmp_path/ss (nothing: no connection).
    (bin_dir / "ss").write_text(f"#!/bin/bash\ncat {tmp_path}/ss 2>/dev/null\n")
    (bin_dir / "ss").chmod(0o755)
    runs = tmp_path / "runs"
    runs.mkdir()

    def run(max_hours, idle_minutes):
        # The guard finds the runs under the login's home (getent): this user's, with a
        # workdir relative to it that leads to tmp_path.
        workdir = os.path.relpath(tmp_path, pwd.getpwuid(os.getuid()).pw_dir)
        text = templates.render(
            "user-data.sh.j2",
            name="t",
            max_hours=max_hours,
            idle_minutes=idle_minutes,
            login_user=pwd.getpwuid(os.getuid()).pw_name,
            layout=BoxLayout(workdir),
            **run.render,
        )
        script = tmp_path / "guard.sh"
        script.write_text(guard_script(text))
        env = {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "TRAINBOX_GUARD_MARK": str(tmp_path / "mark"),
            "TRAINBOX_GUARD_LOG": str(tmp_path / "guard.log"),
            **run.env,
        }
        subprocess.run(["bash", str(script)], env=env, check=True, timeout=30)
        called = tmp_path / "called"
        return called.read_text() if called.exists() else ""

    run.runs = runs
    run.render = {}  # more of the template's values (a --recover box's store)
    # By default a box booted 10 minutes ago on a host up 30 hours: the guard's verdict
    # never depends on how long the machine running the tests has been up.
    run.env = {"TRAINBOX_GUARD_PROC": str(fake_proc(tmp_path / "default-proc", 30 * 3600, 30 * 3600 - 600))}
    return run


def test_guard_stops_the_box_past_the_hard_limit(guard):
    assert "shutdown -h now" in guard(max_hours=0.0001, idle_minutes=30)  # 0 s allowed


def test_guard_stops_an_idle_box_only_after_seeing_it_idle(guard):
    assert guard(max_hours=8, idle_minutes=0.001) == ""  # first look: remembers when it was last busy
    assert "shutdown -h now" in guard(max_hours=8, idle_minutes=0.001)


def test_guard_keeps_a_box_with_a_running_job(guard):
    job = subprocess.Popen(["sleep", "60"])
    try:
        (guard.runs / "r1").mkdir()
        (guard.runs / "r1" / "pid").write_text(str(job.pid))
        assert guard(max_hours=8, idle_minutes=0.001) == ""
        assert guard(max_hours=8, idle_minutes=0.001) == ""
        (guard.runs / "r1" / "exit_code").write_text("0")  # finished: idle from now on
        assert "shutdown" in guard(max_hours=8, idle_minutes=0.001)
    finally:
        job.kill()
        job.wait()


def fake_proc(d, host_uptime_s: int, pid1_started_s: int):
    """A /proc whose kernel has been up host_uptime_s and whose PID 1 started pid1_started_s after it."""
    ticks = int(subprocess.run(["getconf", "CLK_TCK"], capture_output=True, text=True).stdout)
    (d / "1").mkdir(parents=True)
    (d / "uptime").write_text(f"{host_uptime_s}.42 1234.00\n")
    fields = ["S", "0", "1", "1", "0", "-1", "4194560", *["0"] * 12, str(pid1_started_s * ticks), "1000"]
    (d / "1" / "stat").write_text("1 (systemd init) " + " ".join(fields) + "\n")
    (d / "sys" / "kernel" / "random").mkdir(parents=True)
    (d / "sys" / "kernel" / "random" / "boot_id").write_text(Path("/proc/sys/kernel/random/boot_id").read_text())
    return d


def test_guard_counts_the_hard_limit_from_this_boot_not_the_kernels(guard, tmp_path):
    # A container booted 10 minutes ago on a host up for 30 hours: /proc/uptime is the host's.
    guard.env = {"TRAINBOX_GUARD_PROC": str(fake_proc(tmp_path / "proc", 30 * 3600, 30 * 3600 - 600))}
    assert guard(max_hours=1, idle_minutes=30) == ""
    guard.env = {"TRAINBOX_GUARD_PROC": str(fake_proc(tmp_path / "proc2", 30 * 3600, 30 * 3600 - 7200))}
    assert "shutdown -h now" in guard(max_hours=1, idle_minutes=30)
    assert "up 7200s since boot, over the hard limit of 1 h" in (tmp_path / "guard.log").read_text()


def test_guard_counts_an_ssh_session_on_any_port_as_busy(guard, tmp_path):
    (tmp_path / "ss").write_text('0 0 127.0.0.1:2222 127.0.0.1:50000 users:(("sshd",pid=77,fd=4))\n')
    assert guard(max_hours=8, idle_minutes=0.001) == ""
    assert guard(max_hours=8, idle_minutes=0.001) == ""
    (tmp_path / "ss").write_text('0 0 127.0.0.1:8888 127.0.0.1:50001 users:(("python3",pid=78,fd=5))\n')
    assert "shutdown -h now" in guard(max_hours=8, idle_minutes=0.001)
    assert "idle for 0.001 min" in (tmp_path / "guard.log").read_text()


def test_the_guard_looks_more_often_under_short_limits_and_each_minute_otherwise():
    from provision.up import guard_period_s

    assert guard_period_s(UpOptions(max_hours=8, idle_minutes=30)) == 60
    assert guard_period_s(UpOptions(max_hours=8, idle_minutes=2)) == 30
    assert guard_period_s(UpOptions(max_hours=0.006, idle_minutes=30)) == 5
    assert "OnUnitActiveSec=30s" in user_data(UpOptions(idle_minutes=2), "ubuntu")


def test_guard_never_stops_a_box_while_its_agent_resumes_runs(guard):
    (guard.runs / ".resuming").touch()
    assert guard(max_hours=0.0001, idle_minutes=0.001) == ""  # past the hard limit and idle: still kept
    assert guard(max_hours=8, idle_minutes=0.001) == ""
    (guard.runs / ".resuming").unlink()
    assert "shutdown -h now" in guard(max_hours=0.0001, idle_minutes=30)


def test_guard_counts_a_run_about_to_resume_busy_but_not_one_the_user_stopped(guard):
    """A run cut off by an earlier boot (its boot_id is not this one) is the agent's to resume:
    busy. Its pid is an earlier boot's, never asked about: the live one here proves it."""
    other = subprocess.Popen(["sleep", "60"])  # a process of this boot that reuses the old pid
    try:
        cut = guard.runs / "cut"
        cut.mkdir()
        (cut / "pid").write_text(str(other.pid))
        (cut / "boot_id").write_text("an-earlier-boot\n")
        assert guard(max_hours=8, idle_minutes=0.001) == ""
        assert guard(max_hours=8, idle_minutes=0.001) == ""  # still busy: about to resume
        (cut / "stopped").touch()  # `remote stop`: the agent leaves it, the box may idle
        assert "shutdown -h now" in guard(max_hours=8, idle_minutes=0.001)
    finally:
        other.kill()
        other.wait()


def test_user_data_installs_the_agent_unit_for_every_boot(tmp_path):
    import box
    from provision.up import stripped_python

    text = user_data(UpOptions(), "ubuntu")
    writes = re.findall(r"^cat > /opt/trainbox/box/(\S+) <<'TRAINBOX_AGENT_EOF'$", text, re.M)
    assert writes == ["__init__.py", "layout.py", "runfolder.py", "agent.py"]
    assert "TRAINBOX_STORE_EOF" not in text and "s3.py" not in writes, "a box without --recover keeps nothing in S3"
    # Its lines that write the package, run here with the box's /opt/trainbox under tmp_path.
    block = re.search(r"^cat > /opt/trainbox/box/.*^TRAINBOX_AGENT_EOF$", text, re.S | re.M).group(0)
    (tmp_path / "box").mkdir()
    subprocess.run(["bash", "-c", block.replace("/opt/trainbox/", f"{tmp_path}/")], check=True)
    for name in writes:
        assert (tmp_path / "box" / name).read_text() == stripped_python(box.source(name[:-3]))
    # The installed copy runs as the unit runs it (its imports are all there).
    got = subprocess.run(
        [sys.executable, "-m", "box.agent", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"]},
    )
    assert got.returncode == 0 and "--workdir" in got.stdout, got.stderr
    unit = re.search(r"trainbox-agent.service <<'UNIT'\n(.*?)\nUNIT\n", text, re.S).group(1)
    for line in (
        "User=ubuntu",
        "Restart=always",
        "KillMode=process",
        "WantedBy=multi-user.target",
        "EnvironmentFile=-/etc/trainbox/agent.env",
        "WorkingDirectory=/opt/trainbox",
        "ExecStart=/usr/bin/python3 -u -m box.agent --workdir trainbox",
    ):
        assert line in unit.splitlines(), line
    assert "systemctl enable --now trainbox-agent.service" in text


def test_shipped_python_loses_comments_and_long_docstrings_but_not_a_string(tmp_path):
    from provision.up import stripped_python

    src = '''"""Module.

Long text.
"""
X = "a # not a comment"  # a comment
# a comment line

def f():
    """Doc.

    More."""
    return """keep

  this""" + X
'''
    out = stripped_python(src)
    assert "# a comment" not in out and "Long text" not in out and "More" not in out
    ns = {}
    exec(out, ns)
    assert ns["f"]() == "keep\n\n  thisa # not a comment" and ns["f"].__doc__ == "Doc." and ns["__doc__"] == "Module."


def test_a_recover_box_user_data_tells_its_agent_the_store_and_fits_aws(tmp_path):
    import box
    from provision.up import stripped_python

    bootstrap = setup.render_bootstrap("trainbox", setup.SetupOptions.from_env())
    store = {"url": "s3://trainbox-123456789012-us-east-1/boxes/b1/", "region": "us-east-1", "group": "trainbox-b1"}
    text = user_data(UpOptions(name="b1", bootstrap=bootstrap), "ubuntu", store)
    assert len(user_data_payload(text)) <= USER_DATA_LIMIT, "the store's modules fit beside the agent"
    assert "TRAINBOX_BOOTSTRAP_EOF" not in text, "its bootstrap is in the store (the agent runs it)"
    writes = re.findall(r"^cat > /opt/trainbox/box/(\S+) <<'TRAINBOX_AGENT_EOF'$", text, re.M)
    assert writes == ["__init__.py", "layout.py", "runfolder.py", "agent.py", "s3.py", "keep.py", "release.py"]
    assert "EnvironmentFile=-/etc/trainbox/agent.env\n" in text
    assert "EnvironmentFile=-/etc/trainbox/store.env\n" in text
    # The lines that write the package and the store's file, run with /opt and /etc under tmp_path.
    block = re.search(r"^cat > /opt/trainbox/box/.*^TRAINBOX_STORE_EOF\n.*?\n", text, re.S | re.M).group(0)
    (tmp_path / "box").mkdir()
    (tmp_path / "etc").mkdir()
    script = block.replace("/opt/trainbox/", f"{tmp_path}/").replace(
        " /etc/trainbox/store.env", f" {tmp_path}/etc/store.env"
    )
    subprocess.run(["bash", "-c", script], check=True)
    assert (tmp_path / "etc" / "store.env").read_text() == (
        "TRAINBOX_STORE=s3://trainbox-123456789012-us-east-1/boxes/b1/\nAWS_REGION=us-east-1\n"
        "TRAINBOX_GROUP=trainbox-b1\n"
    )
    for name in writes:
        assert (tmp_path / "box" / name).read_text() == stripped_python(box.source(name[:-3]))
    got = subprocess.run(
        [sys.executable, "-c", "import box.keep, box.s3"], cwd=tmp_path, capture_output=True, text=True
    )
    assert got.returncode == 0, got.stderr


def guard_a_recover_box(guard, tmp_path, moto_endpoint: str, group: str) -> None:
    """The guard rendered for a --recover box of group, its store's env file pointing the release
    (box/release.py, from the repo as the box's agent dir) at moto's Auto Scaling on 127.0.0.1."""
    guard.render = {"store": {"url": "s3://b/boxes/t/", "region": "us-east-1", "group": group}}
    store_env = tmp_path / "store.env"
    store_env.write_text(
        f"TRAINBOX_GROUP={group}\nAWS_REGION=us-east-1\n"
        f"AWS_ENDPOINT_URL_AUTOSCALING={moto_endpoint}\nAWS_ACCESS_KEY_ID=testing\nAWS_SECRET_ACCESS_KEY=testing\n"
    )
    guard.env = {
        **guard.env,
        "TRAINBOX_GUARD_STORE_ENV": str(store_env),
        "TRAINBOX_GUARD_AGENT_DIR": str(Path(__file__).resolve().parents[2]),
    }


def test_a_recover_box_s_guard_sets_its_group_to_zero_before_it_shuts_down(guard, tmp_path, moto_endpoint):
    """An idle --recover box: the group would replace an instance that shut itself down, and bill
    for ever; the guard sets the group to 0 first (box/release.py, from the box's agent dir, here
    the repo's; moto's Auto Scaling on 127.0.0.1 as the sandbox points the box at it)."""
    from tests.box.test_s3 import group_size, make_group

    make_group(moto_endpoint, "trainbox-t")
    guard_a_recover_box(guard, tmp_path, moto_endpoint, "trainbox-t")
    assert guard(max_hours=8, idle_minutes=0.001) == ""
    assert "shutdown -h now" in guard(max_hours=8, idle_minutes=0.001)
    assert group_size(moto_endpoint, "trainbox-t") == (0, 0)
    log = (tmp_path / "guard.log").read_text()
    assert "idle for 0.001 min" in log and "group trainbox-t set to 0 instances" in log


def test_a_box_without_recover_has_no_release_in_its_guard():
    text = user_data(UpOptions(), "ubuntu")
    assert "box.release" not in text
    store = {"url": "s3://b/boxes/t/", "region": "us-east-1", "group": "trainbox-t"}
    recovering = user_data(UpOptions(spot=True, recover=True), "ubuntu", store)
    assert "python3 -m box.release" in guard_script(recovering) and "TRAINBOX_GROUP=trainbox-t" in recovering
    assert len(user_data_payload(recovering)) <= USER_DATA_LIMIT


def test_the_embedded_bootstrap_loses_only_its_whole_line_comments():
    from provision.up import stripped_shell

    script = "#!/bin/bash\n# why\necho '# not a comment'\n  # indented why\nls  # a tail comment stays\n"
    assert stripped_shell(script) == "#!/bin/bash\necho '# not a comment'\nls  # a tail comment stays\n"
    bootstrap = setup.render_bootstrap("trainbox", setup.SetupOptions.from_env())
    embedded = re.search(
        r"<<'TRAINBOX_BOOTSTRAP_EOF'\n(.*?)\nTRAINBOX_BOOTSTRAP_EOF\n",
        user_data(UpOptions(bootstrap=bootstrap), "ubuntu"),
        re.S,
    )
    assert embedded and embedded.group(1) == stripped_shell(bootstrap).rstrip("\n")
    assert subprocess.run(["bash", "-n"], input=embedded.group(1), text=True).returncode == 0


def test_a_recover_box_s_guard_does_not_shut_down_when_the_group_cannot_be_released(guard, tmp_path, moto_endpoint):
    """The release fails (here: no such group): a shutdown would only be replaced and bill on, so
    the guard keeps the box and says so; it tries again at its next look."""
    guard_a_recover_box(guard, tmp_path, moto_endpoint, "trainbox-gone")
    assert guard(max_hours=8, idle_minutes=0.001) == ""
    assert "shutdown" not in guard(max_hours=8, idle_minutes=0.001)
    log = (tmp_path / "guard.log").read_text()
    assert "could not set group trainbox-gone to 0" in log and "not stopping; trying again" in log


def test_a_first_boot_script_over_aws_s_limit_is_one_clear_error():
    from common.errors import UsageError

    noise = os.urandom(USER_DATA_LIMIT).hex()  # does not compress
    with pytest.raises(UsageError, match="over AWS's 16,384"):
        user_data_payload(f"#!/bin/bash\necho {noise}\n")
