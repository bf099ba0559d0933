"""remote/job.py's state of a run, read by the box's shell (run here with bash)."""

from __future__ import annotations

import subprocess

from box.layout import RUN_PID_START, START_TIME_SH
from remote import job


def state(run_dir) -> job.JobState | None:
    return job.parse_state(
        subprocess.run(
            ["bash", "-c", job.state_command(str(run_dir))], capture_output=True, text=True, check=True
        ).stdout
    )


def test_a_pid_of_an_earlier_boot_that_another_process_has_now_is_not_the_job(tmp_path):
    other = subprocess.Popen(["sleep", "60"])  # this boot's process with the number the job had
    try:
        (tmp_path / "pid").write_text(f"{other.pid}\n")
        (tmp_path / RUN_PID_START).write_text("12345\n")  # the job's start, in the boot before
        assert state(tmp_path).running is False and state(tmp_path).label == "died"
        (tmp_path / "stopped").touch()
        assert state(tmp_path).label == "stopped"
        real = subprocess.run(
            ["bash", "-c", f"{START_TIME_SH}; trainbox_start_time {other.pid}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        (tmp_path / RUN_PID_START).write_text(real)
        assert state(tmp_path).running is True  # the job itself: running
    finally:
        other.kill()
        other.wait()
