"""Link cuts (docs/reliability.md): the box-side sshd session that serves
trainbox's connection is killed (a child of an sshd this test started, by
pid) at a moment the test observes (bytes sent, a file on the box, a line in
the log), never after a sleep. What must hold: a pushed file is whole or
absent on the box, a pull leaves no partial file at home, the failure is one
line naming what happened and what to run, and running it again converges."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from pathlib import Path

import pytest
from linkkit import cut, session_serving, start_cli_box, start_sshd, stop_sshd, target

from remote import results, sync
from remote.connection import LinkDropped, connect
from remote.tarstream import FLUSH
from testkit import Result, one_line_error, run_cli, synth_image_set, wait_for

MB = 1 << 20


@pytest.fixture
def server(tmp_path, trainbox_home):
    s = start_sshd(tmp_path / "sshd")
    yield s
    stop_sshd(s)


def project(root: Path, big: int, big_size: int = MB, small: int = 40) -> Path:
    """A mixed project: many small files and a few big ones (random: incompressible)."""
    (root / "src").mkdir(parents=True)
    for i in range(small):
        (root / "src" / f"m{i:03}.py").write_text(f"X = {i}\n" * 50)
    for i in range(big):
        (root / f"blob{i:02}.bin").write_bytes(os.urandom(big_size))
    return root


def whole_or_absent(src: Path, dest: Path) -> tuple[int, int]:
    """Assert every file of src is on the box whole or not at all; (bytes whole, bytes absent)."""
    whole = absent = 0
    for p in sorted(x for x in src.rglob("*") if x.is_file()):
        there = dest / p.relative_to(src)
        if not there.exists():
            absent += p.stat().st_size
            continue
        assert there.read_bytes() == p.read_bytes(), f"{there} is on the box but not whole"
        whole += p.stat().st_size
    leftovers = [p.name for p in dest.rglob("*") if p.is_file() and not (src / p.relative_to(dest)).exists()]
    assert set(leftovers) <= {sync.MARKER, sync.PENDING, sync.DELETE_LIST, sync.TOUCH_LIST}, leftovers
    return whole, absent


class CutAt:
    """A push's progress bar that, once ``at`` of the bytes are sent, waits
    (bounded) until the box holds them whole, then cuts the link: the push
    goes on writing into a dead connection."""

    def __init__(self, server, src: Path, dest: Path, at: float):
        self.server, self.src, self.dest, self.at = server, src, dest, at
        self.total = self.sent = 0
        self.cut = False

    def __call__(self, total: int):
        self.total = total
        return self

    def update(self, n: int) -> None:
        self.sent += n
        if not self.cut and self.sent >= self.at * self.total:
            self.cut = True
            # What this side still buffers (tarstream.FLUSH) has not left yet.
            wait_for("the box to hold what was sent", lambda: self._on_box() >= self.sent - 2 * FLUSH, 30)
            cut(self.server, "tar -x", box_side_done=True)

    def _on_box(self) -> int:
        n = 0
        for p in self.dest.rglob("*"):
            mine = self.src / p.relative_to(self.dest)
            if p.is_file() and mine.is_file() and p.stat().st_size == mine.stat().st_size:
                n += p.stat().st_size
        return n

    def close(self) -> None:
        pass


def test_a_push_cut_midway_leaves_each_file_whole_or_absent_and_the_next_push_completes(server, tmp_path):
    src = project(tmp_path / "proj", big=8)  # 8 MB: paramiko's own channel carries it
    dest = tmp_path / "box" / "code"
    conn = connect(target(server, tmp_path / "box"), timeout=10)
    bar = CutAt(server, src, dest, at=0.5)
    with pytest.raises(LinkDropped) as e:
        sync.push(conn, src, str(dest), bar)
    assert bar.cut
    assert "the link to the box dropped while pushing to" in str(e.value)
    assert "run the same command again" in str(e.value)
    assert not (dest / sync.MARKER).exists(), "a cut push never looks complete"
    whole, absent = whole_or_absent(src, dest)
    assert whole and absent, (whole, absent)

    conn = connect(target(server, tmp_path / "box"), timeout=10)
    try:
        plan = sync.push(conn, src, str(dest))
        assert plan.send and (dest / sync.MARKER).exists()
        assert whole_or_absent(src, dest)[1] == 0
        assert sync.push(conn, src, str(dest)).noop
    finally:
        conn.close()


def test_a_push_cut_at_60_percent_sends_only_the_remainder_when_run_again(server, tmp_path):
    """Issue 26 item 3: file-level resume. 24 MB goes through the OpenSSH
    client (sync.OPENSSH_FROM): its session is the one cut; paramiko's stays."""
    src = project(tmp_path / "proj", big=24)
    dest = tmp_path / "box" / "data"
    conn = connect(target(server, tmp_path / "box"), timeout=10)
    try:
        with pytest.raises(LinkDropped):
            sync.push(conn, src, str(dest), CutAt(server, src, dest, at=0.6))
        whole, remainder = whole_or_absent(src, dest)
        total = whole + remainder
        assert 0 < remainder <= 0.5 * total, (whole, remainder)
        plan = sync.push(conn, src, str(dest))
        assert (dest / sync.MARKER).exists() and whole_or_absent(src, dest)[1] == 0
        print(f"resumed push: {plan.sent_bytes} bytes sent for a remainder of {remainder} of {total}")
        assert plan.sent_bytes <= 1.05 * remainder, (plan.sent_bytes, remainder)
    finally:
        conn.close()


def test_a_pull_cut_midway_leaves_no_partial_file_and_the_next_pull_completes(server, tmp_path):
    run_dir = tmp_path / "box" / "runs" / "r1"
    (run_dir / "out" / "checkpoints").mkdir(parents=True)
    (run_dir / "out" / "checkpoints" / "last.keras").write_bytes(os.urandom(48 * MB))
    (run_dir / "out" / "history.json").write_text("{}")
    (run_dir / "log").write_text("epoch 1\n")
    (run_dir / "exit_code").write_text("0\n")
    local = tmp_path / "runs" / "r1"
    conn = connect(target(server, tmp_path / "box"), timeout=10)
    # The moment: the big checkpoint's temp file appears at home (the pull is inside it).
    import threading

    cutter = threading.Thread(
        target=lambda: (
            wait_for("the pull to be writing the checkpoint", lambda: list(local.rglob(".last.keras.part")), 60),
            cut(server, "tar -c"),
        )
    )
    cutter.start()
    try:
        with pytest.raises(LinkDropped) as e:
            results.pull(conn, str(run_dir), local)
    finally:
        cutter.join()
    assert "pull" in str(e.value) and "again" in str(e.value)
    assert not [p for p in local.rglob("*") if p.name.endswith(".part")], "a cut pull leaves no partial file"
    assert (
        not (local / "checkpoints" / "last.keras").exists()
        or (local / "checkpoints" / "last.keras").read_bytes()
        == (run_dir / "out" / "checkpoints" / "last.keras").read_bytes()
    )

    conn = connect(target(server, tmp_path / "box"), timeout=10)
    try:
        results.pull(conn, str(run_dir), local)
    finally:
        conn.close()
    assert (local / "checkpoints" / "last.keras").read_bytes() == (run_dir / "out/checkpoints/last.keras").read_bytes()
    assert (local / "exit_code").read_text() == "0\n"


WAITER = """import os, sys, time
open(os.environ["TRAINBOX_OUT"] + "/done.txt", "w").write("yes")
print("waiting for " + sys.argv[1], flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
print("done", flush=True)
"""


def test_a_followed_run_reattaches_after_the_link_is_cut_and_brings_its_results_home(server, tmp_path):
    code = tmp_path / "proj"
    code.mkdir()
    (code / "wait.py").write_text(WAITER)
    go = tmp_path / "go"
    workdir = tmp_path / "box"
    out = tmp_path / "follow.out"
    proc = start_cli_box(
        server,
        workdir,
        ["run", "--code", str(code), "--python", sys.executable, "--runs-dir", str(tmp_path / "runs")],
        ["--", "python", "wait.py", str(go)],
        out,
    )
    try:
        wait_for("the run's log to say it waits", lambda: "waiting for" in _log(workdir), 60)
        first = cut(server, "tail -c")
        wait_for("the follow to reattach", lambda: "reconnecting" in Path(f"{out}.err").read_text(), 30)
        second = wait_for("a new session following the log", lambda: session_serving(server, "tail -c"), 30)
        assert second != first
        go.write_text("")
        assert proc.wait(timeout=60) == 0, Path(f"{out}.err").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = Path(f"{out}.err").read_text()
    assert "connection lost" in err and "the job keeps running" in err
    (local,) = (tmp_path / "runs").iterdir()
    assert (local / "done.txt").read_text() == "yes"
    assert "done" in (local / "train.log").read_text()


def _log(workdir: Path) -> str:
    logs = list(workdir.glob("runs/*/log"))
    return logs[0].read_text() if logs else ""


def test_a_run_whose_data_push_is_cut_fails_in_one_line_and_starts_when_run_again(server, tmp_path):
    """`remote run`'s start (orchestrate.start, the library under the CLI): the
    link cut inside the data's push; the same start again finishes the data
    (only what is missing) and starts the job."""
    from remote import job, orchestrate

    code = tmp_path / "proj"
    code.mkdir()
    (code / "wait.py").write_text(WAITER)
    data = project(tmp_path / "data", big=6)
    box = target(server, tmp_path / "box")
    spec = orchestrate.RunSpec(code=code, command=("python", "wait.py", str(tmp_path / "go")), data=str(data))
    dest = Path(box.workdir) / "data" / orchestrate.path_key(data)
    said: list[str] = []
    conn = connect(box, timeout=10)
    cutter = CutAt(server, data, dest, at=0.5)
    with pytest.raises(LinkDropped) as e:
        orchestrate.start(
            conn, box, spec, "r1", said.append, progress=lambda what: cutter if what == "push data" else None
        )
    assert cutter.cut
    line = str(e.value)
    assert (
        "\n" not in line
        and "the link to the box dropped while pushing to" in line
        and "run the same command again" in line
    )
    whole, absent = whole_or_absent(data, dest)
    assert absent, "the cut came before the end"
    assert not (tmp_path / "box" / "runs" / "r1" / "pid").exists(), "no job was started"

    conn = connect(box, timeout=10)
    try:
        orchestrate.start(conn, box, spec, "r1", said.append)
        assert whole_or_absent(data, dest)[1] == 0
        wait_for("the job to start", lambda: "waiting for" in _log(tmp_path / "box"), 30)
        (tmp_path / "go").write_text("")
        wait_for("the job to end", lambda: job.job_state(conn, str(tmp_path / "box/runs/r1")).exit_code == 0, 30)
    finally:
        conn.close()
    pushed = [s for s in said if s.startswith("data: sent")]
    assert pushed and f"of {len(list(data.rglob('*.*')))} files" in pushed[-1], said


@contextlib.contextmanager
def gated_tar_gz(root: Path):
    """root as set.tar.gz behind a file server on 127.0.0.1 that sends the
    first half, sets ``half``, and holds the rest until ``go`` is set."""
    import http.server
    import io
    import tarfile
    import threading

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(root, arcname="set")
    body = buf.getvalue()
    half, go = threading.Event(), threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            gated = not half.is_set()
            cut_at = len(body) // 2 if gated else len(body)
            self.wfile.write(body[:cut_at])
            self.wfile.flush()
            if gated:
                half.set()
                go.wait(60)
                self.wfile.write(body[cut_at:])

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/set.tar.gz", half, go
    finally:
        go.set()
        server.shutdown()
        server.server_close()


def test_a_data_fetch_cut_midway_is_one_line_and_fetching_again_completes(server, tmp_path):
    data = synth_image_set(tmp_path / "set", n=200, size=64)
    workdir = tmp_path / "box"
    flags = [
        "--host",
        server.spec,
        "--identity",
        str(server.key),
        "--workdir",
        str(workdir),
        "--python",
        sys.executable,
    ]
    with gated_tar_gz(data) as (url, half, go):
        out = tmp_path / "fetch.out"
        proc = start_cli_box(server, workdir, ["data", "fetch", url], ["--python", sys.executable], out)
        try:
            wait_for("the box to have half of the download", half.is_set, 60)
            cut(server, "-u -c")
            go.set()
            assert proc.wait(timeout=60) == 69, Path(f"{out}.err").read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        line = one_line_error(Result(69, "", Path(f"{out}.err").read_text()))
        assert "the link to the box dropped during the data's fetch on the box" in line, line
        assert "run the same command again" in line, line

        again = run_cli("remote", "data", "fetch", url, *flags)
    assert again.code == 0, again.err
    assert "fetched:" in again.out, again.out
    (fetched,) = [p for p in (workdir / "data").iterdir() if p.is_dir() and not p.name.startswith(".")]
    digests = lambda root: sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*.jpg"))  # noqa: E731
    assert digests(fetched) == digests(data), "every image of the set is on the box, whole, once"


def test_the_box_listing_names_what_a_cut_push_was_writing_and_an_older_record_is_resent():
    """parse_remote_scan: a PENDING record is "size<TAB>mtime<TAB>path" (checked by
    content on the next push); an older trainbox's record, a path alone, makes
    that file count as absent (resent), as before."""
    text = "a\t5\t1\0b\t3\t1\0c\t2\t1\0/pending\t5\t1\ta\0/pending\tb\0/complete\0"
    found, complete, pending = sync.parse_remote_scan(text)
    assert complete and pending == {"a"}
    assert found == {"a": sync.Entry(5, 1), "c": sync.Entry(2, 1)}
    assert sync.parse_pending("12\t34\tdir/with\ttab") == ("dir/with\ttab", sync.Entry(12, 34))


def test_a_link_cut_just_before_the_job_starts_is_one_line_and_starting_again_runs_it(server, tmp_path):
    """orchestrate.start's ``ready`` (called once code, environment and data
    are in place, just before the job starts) cuts the one connection: the
    start fails in one line naming it, and no job was left running."""
    from remote import job, orchestrate

    code = tmp_path / "proj"
    code.mkdir()
    (code / "wait.py").write_text(WAITER)
    box = target(server, tmp_path / "box")
    spec = orchestrate.RunSpec(code=code, command=("python", "wait.py", str(tmp_path / "go")))
    conn = connect(box, timeout=10)
    with pytest.raises(LinkDropped) as e:
        orchestrate.start(conn, box, spec, "r1", lambda s: None, ready=lambda: cut(server, None))
    line = str(e.value)
    assert "\n" not in line and "the link to the box dropped during the start of run r1" in line, line
    assert "run the same `remote run` command again" in line, line
    assert not (tmp_path / "box" / "runs" / "r1" / "pid").exists(), "no job was started"

    conn = connect(box, timeout=10)
    try:
        orchestrate.start(conn, box, spec, "r2", lambda s: None)
        wait_for("the job to start", lambda: "waiting for" in _log(tmp_path / "box"), 30)
        (tmp_path / "go").write_text("")
        wait_for("the job to end", lambda: job.job_state(conn, str(tmp_path / "box/runs/r2")).exit_code == 0, 30)
    finally:
        conn.close()
