"""Spot interruption benchmark (issue 13), on the sandbox's container box.

    python bench/interrupt.py [--epochs 12] [--images 200] [--image-size 64] [--batch-size 16]

One run of the course CNN (``--net cnn``) on generated images, on a container
box (systemd, cloud-init, the trainbox agent, an IMDSv2 stand-in on
127.0.0.1). Mid-run the stand-in is flipped to a spot notice; as soon as the
run has answered that it saved, the box's power is cut (its processes
killed, no shutdown: the harshest case, as if AWS's stop came at that
moment); then ``provision start`` boots it again, and the box's agent
resumes the run by itself. It prints:

- notice -> state saved: from the notice appearing at the IMDS to the run's
  ``saved`` answer (the agent polls every 5 s, the run saves at its next batch
  end). Goal <= 10 s.
- work redone after the resume: Keras's BackupAndRestore restarts the cut
  epoch from its first batch, with the weights saved mid-epoch. So the
  batches of the cut epoch computed before the cut are computed again; the
  learning lost is only what came after the save (estimated from the batch
  rate and the time between the save and the cut). Finished epochs redone:
  goal 0. Goal for the rest: <= one save interval (model/callbacks.py's
  SAVE_EVERY_S, 60 s) of learning lost.
- boot -> training resumed: from SSH answering to the resumed run's
  "resuming from ... at epoch" line (TensorFlow imported, data and model
  loaded, fit started), and to the agent's resume. Goal <= 30 s.

Nothing is asserted; this prints what it measured. It needs what the
container box needs (Linux, root, systemd-nspawn, debootstrap) and installs
the box's environment from the package index through this machine's pip
configuration.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SAVE_EVERY_S = 60.0  # model/callbacks.py's (the laptop side does not import model/)

from box import layout as names  # noqa: E402
from box.layout import BoxLayout  # noqa: E402
from model import run_files  # noqa: E402 (stdlib: the run folder's names)
from sandbox import container  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--images", type=int, default=200, help="per class, train + validation (default 200)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--notice-after-epoch", type=int, default=2, help="flip the notice once this epoch is done")
    p.add_argument(
        "--case",
        choices=("stop", "terminate"),
        default="stop",
        help="stop: notice, power cut, the same instance started again (issue 13); terminate: a --recover "
        "box's instance reclaimed, the run resumed from S3 on the group's replacement (issue 25)",
    )
    p.add_argument("--notice-s", type=float, default=20.0, help="terminate: seconds from the notice to the reclaim")
    args = p.parse_args()
    why_not = container.unavailable()
    if why_not:
        print(f"bench/interrupt.py needs the container box: {why_not}", file=sys.stderr)
        return 2

    root = Path(tempfile.mkdtemp(prefix="trainbox-bench-interrupt-"))
    work = root / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ENDPOINT_URL", "AWS_PROFILE")}
    env.update(
        TRAINBOX_HOME=str(root / "home"),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        TRAINBOX_JUPYTER="0",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    )

    def cli(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", *argv] if argv[0] != "remote" else [sys.executable, "-m", "remote", *argv[1:]]
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
        if check and r.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()[-800:]}")
        return r

    box_dir = root / "home" / "sandbox" / "boxes" / "default"
    runs = container.upper(box_dir) / BoxLayout().at_home(f"/home/{container.LOGIN_USER}").runs.lstrip("/")
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "model",
                "synth",
                "--out",
                str(work / "data"),
                "--n",
                str(args.images),
                "--image-size",
                str(args.image_size),
            ],
            check=True,
            capture_output=True,
            cwd=REPO,
            env=env,
        )
        train_images = sum(1 for _ in (work / "data" / "train").rglob("*.jpg"))
        batches = math.ceil(train_images / args.batch_size)
        print(
            f"load average {os.getloadavg()[0]:.1f}; course CNN, {train_images} training images at "
            f"{args.image_size} px, batch {args.batch_size} ({batches} batches an epoch), {args.epochs} epochs",
            flush=True,
        )
        recover = ("--spot", "--recover") if args.case == "terminate" else ()
        cli("provision", "up", "--sandbox", "--sandbox-box", "container", *recover)
        cli(
            "remote",
            "train",
            "--detach",
            "--epochs",
            str(args.epochs),
            "--data",
            str(work / "data"),
            "--net",
            "cnn",
            "--image-size",
            str(args.image_size),
            "--batch-size",
            str(args.batch_size),
        )
        (run,) = [d for d in runs.iterdir() if d.is_dir()]
        log = run / names.RUN_LOG

        def wait(what, check, timeout=600.0, every=0.05):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                got = check()
                if got:
                    return got
                time.sleep(every)
            raise SystemExit(f"timed out waiting for {what}")

        def read(f: Path) -> str:
            return f.read_text(errors="replace") if f.exists() else ""

        wait(f"epoch {args.notice_after_epoch}", lambda: f"epoch {args.notice_after_epoch}/{args.epochs}" in read(log))
        epoch_s = [float(s) for s in re.findall(r"^epoch \d+/\d+ .*\((\d+\.\d+)s\)$", read(log), re.M)]
        batch_s = (sorted(epoch_s[1:])[len(epoch_s[1:]) // 2] if len(epoch_s) > 1 else epoch_s[0]) / batches

        if args.case == "terminate":
            return terminate_case(args, env, work, run, batches, batch_s, wait, read)
        t_notice = time.time()
        cli("provision", "sandbox-notice")
        saved = json.loads(wait("the run's saved answer", lambda: read(run / names.RUN_SAVED), timeout=60))
        t_cut = time.time()  # the kill follows within the few ms power_cut takes to find the guest's PID 1
        container.power_cut(box_dir)
        before_cut = read(log)
        finished_before = len(re.findall(rf"^epoch \d+/{args.epochs} ", before_cut, re.M))

        t0 = time.time()
        cli("provision", "start")  # returns once the box's SSH answers
        t_ssh = time.time()
        resumed_line = rf"resuming from \S+ at epoch (\d+)/{args.epochs}"
        m = wait("the resumed run's first epoch", lambda: re.search(resumed_line, read(log)[len(before_cut) :]))
        t_training = time.time()
        resumed_epoch = int(m.group(1))  # 1-based: the epoch fit starts at
        events = [json.loads(l) for l in read(run / names.RUN_EVENTS).splitlines()]
        t_agent = next(e["at"] for e in events if e["event"] == "resumed")
        code = wait("the run to finish", lambda: read(run / names.RUN_EXIT_CODE).strip(), timeout=1800, every=0.5)
        history = [int(l.split(",")[0]) for l in read(run / names.RUN_OUT / run_files.HISTORY_CSV).splitlines()[1:]]

        after_save = max(0.0, t_cut - saved["at"])
        lost_batches = after_save / batch_s
        cut_in_saved_epoch = resumed_epoch == saved["epoch"] + 1
        repeated = (saved["batch"] + 1 + lost_batches) if cut_in_saved_epoch else lost_batches
        print(f"\n{'measure':<44} {'measured':>22}   goal")
        print(f"{'notice -> state saved':<44} {saved['at'] - t_notice:>20.1f} s   <= 10 s")
        print(f"{'  (saved at epoch, batch)':<44} {saved['epoch'] + 1:>13}, {saved['batch'] + 1:>6}")
        print(f"{'finished epochs redone':<44} {finished_before - (resumed_epoch - 1):>22}   0")
        print(f"{'batches computed again (cut epoch restarts)':<44} {repeated:>22.1f}   (Keras restarts the epoch)")
        print(
            f"{'learning lost: batches after the save':<44} {lost_batches:>22.1f}   <= one save interval ({SAVE_EVERY_S:.0f} s = {SAVE_EVERY_S / batch_s:.0f} batches)"
        )
        print(f"{'  = seconds of training lost':<44} {after_save:>22.2f}")
        print(f"{'boot -> SSH answers':<44} {t_ssh - t0:>20.1f} s")
        print(f"{'boot -> agent resumed the run':<44} {t_agent - t0:>20.1f} s")
        print(f"{'SSH answers -> training resumed (fit began)':<44} {t_training - t_ssh:>20.1f} s   <= 30 s")
        print(
            f"{'run exit code; epochs in history (once each)':<44} {code:>13}; {'yes' if history == list(range(1, args.epochs + 1)) else 'NO: ' + str(history):>6}"
        )
        print(
            f"(batch time {batch_s * 1000:.0f} ms, median epoch {batch_s * batches:.1f} s; the batches after the save are estimated from it)"
        )
        return 0
    finally:
        cli("provision", "down", "--yes", "--no-pull", check=False)


def terminate_case(args, env: dict, work: Path, run: Path, batches: int, batch_s: float, wait, read) -> int:
    """A --recover box's instance reclaimed mid-epoch: the notice, the run's save, that save in S3
    (the agent's mirror), the terminate, the group's replacement booted, the run restored from S3
    and resumed there by the new instance's agent (no laptop command), to its end."""
    import boto3
    from botocore.exceptions import ClientError

    st = json.loads((Path(env["TRAINBOX_HOME"]) / "state" / "default.json").read_text())
    store, first = st["extra"]["store"], st["instance_id"]
    s3 = boto3.client(
        "s3",
        endpoint_url=st["endpoint_url"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    key = f"{store['prefix']}{names.STORE_RUNS}/{run.name}/{names.STORE_RUN_STATE}"

    def mirrored_at() -> float:
        try:
            return float(json.loads(s3.get_object(Bucket=store["bucket"], Key=key)["Body"].read())["at"])
        except ClientError:
            return 0.0

    log = run / names.RUN_LOG
    resumed_line = rf"resuming from \S+ at epoch (\d+)/{args.epochs}"
    t_notice = time.time()
    notice = subprocess.Popen(
        [sys.executable, "-m", "provision", "sandbox-notice", "--action", "terminate", "--in", str(args.notice_s)],
        cwd=work,
        env={**env, "PYTHONUNBUFFERED": "1"},  # each line as it happens: the reclaim is timed by them
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def saved_answer():
        if read(run / names.RUN_EXIT_CODE):
            raise SystemExit("the run ended before the notice reached it: give it more --epochs or --images")
        if notice.poll() not in (None, 0):
            raise SystemExit(f"sandbox-notice failed: {notice.stdout.read() if notice.stdout else ''}")
        return read(run / names.RUN_SAVED)

    try:
        saved = json.loads(wait("the run's saved answer", saved_answer, timeout=60))
    except SystemExit:
        journal = subprocess.run(
            ["journalctl", "-D", str(run.parents[4] / "var/log/journal"), "-u", names.AGENT_UNIT, "--no-pager"],
            capture_output=True,
            text=True,
        ).stdout
        print(f"events: {read(run / names.RUN_EVENTS)}\nagent: {journal[-3000:]}", file=sys.stderr)
        raise
    t_s3 = wait("the save mirrored to S3", lambda: (lambda at: at if at > saved["at"] else None)(mirrored_at()))
    timed: list[tuple[float, str]] = []
    before = ""
    assert notice.stdout is not None
    for line in notice.stdout:
        if " terminated " in line and not before:
            before = read(log)  # the moment of the reclaim: what the old instance had logged
        timed.append((time.time(), line.rstrip()))
    if notice.wait() != 0:
        raise SystemExit("sandbox-notice failed:\n" + "\n".join(line for _, line in timed))
    t_terminated = next(t for t, line in timed if " terminated " in line)
    t_booted = next(t for t, line in timed if "box booted in" in line)
    finished_before = len(re.findall(rf"^epoch \d+/{args.epochs} ", before, re.M))
    resumes_before = len(re.findall(resumed_line, before))
    m = wait(
        "the run resumed on the replacement",
        lambda: (lambda found: found[-1] if len(found) > resumes_before else None)(re.findall(resumed_line, read(log))),
        timeout=1800,
        every=0.2,
    )
    t_training = time.time()
    resumed_epoch = int(m)
    events = [json.loads(line) for line in read(run / names.RUN_EVENTS).splitlines()]
    restored = next(e for e in events if e["event"] == "restored")
    code = wait("the run to finish", lambda: read(run / names.RUN_EXIT_CODE).strip(), timeout=1800, every=0.5)
    history = [int(line.split(",")[0]) for line in read(run / names.RUN_OUT / run_files.HISTORY_CSV).splitlines()[1:]]

    # The cut epoch restarts (BackupAndRestore): what the old instance computed of it is computed
    # again, up to one epoch; the learning is lost only after the last save, which the agent asks
    # for again as the instance shuts down (its `stopping` event), so nothing finished is redone.
    redone = finished_before - (resumed_epoch - 1)
    stop_saves = [e for e in events if e["event"] == "stopping"]
    print(f"\n{'measure (terminate: a --recover box reclaimed)':<48} {'measured':>18}   goal")
    print(f"{'notice -> state saved':<48} {saved['at'] - t_notice:>16.1f} s   <= 10 s")
    print(f"{'notice -> that save in S3 (the agent mirror)':<48} {t_s3 - t_notice:>16.1f} s   before the terminate")
    print(f"{'terminate -> replacement booted (SSH answers)':<48} {t_booted - t_terminated:>16.1f} s")
    print(f"{'terminate -> run restored from S3 (env ready)':<48} {restored['at'] - t_terminated:>16.1f} s")
    print(f"{'terminate -> training resumed (fit began)':<48} {t_training - t_terminated:>16.1f} s")
    print(f"{'finished epochs redone':<48} {redone:>18}   0")
    print(f"{'batches computed again (the cut epoch restarts)':<48} {'<= ' + str(batches):>18}   one epoch")
    print(f"{'a save asked again as the instance shut down':<48} {'yes' if stop_saves else 'NO':>18}")
    ok = "yes" if history == list(range(1, args.epochs + 1)) else "NO: " + str(history)
    print(f"{'run exit code; epochs in history (once each)':<48} {code:>10}; {ok:>6}")
    print(f"(instance {first} -> {restored['instance']}; notice {args.notice_s:.0f} s ahead, AWS gives 120 s)")
    print(
        f"(batch time {batch_s * 1000:.0f} ms, {batches} batches an epoch, {finished_before} finished before the cut)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
