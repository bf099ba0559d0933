"""Benchmark: trainbox's dataset push against the usual ways, on a real sshd on 127.0.0.1.

A generated set shaped like the seed's (default 25,000 files of ~20 KB in
class folders). One run prints, all measured here and now:

- first push vs `tar c | ssh tar x` (OpenSSH, same key: the limit of one SSH
  stream; with OpenSSH's default cipher and with the cipher order trainbox
  asks for), vs `rsync -a` over the same sshd, vs a fabric `put` per file (a sample
  of files, extrapolated: said so in the table);
- no-op re-push vs rsync's no-op;
- bytes sent after changing 1 % of the files vs those files' bytes.

    python bench/sync.py [--files N] [--sftp-sample N] [--repeat N] [--box-dir DIR]

No timed assertions anywhere: this prints ratios against baselines measured
in the same run (docs/architecture.md, "Tests").
"""

from __future__ import annotations

import argparse
import getpass
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import hostkeys, paths  # noqa: E402
from remote import sync  # noqa: E402
from remote.connection import connect  # noqa: E402
from remote.target import Target  # noqa: E402
from sandbox import sshd  # noqa: E402


def make_set(root: Path, files: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    total = 0
    for i in range(files):
        split = "validation" if i % 5 == 0 else "train"
        cls = "cats" if i % 2 else "dogs"
        size = rng.randint(12_000, 30_000)  # ~21 KB mean, like the seed's JPEGs
        p = root / split / cls / f"{cls}.{i}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(size))  # incompressible, like JPEG
        total += size
    return total


DIRS = {
    "ours": "ours",
    "ours_zstd": "zstd",
    "tar_ssh": "tar",
    "tar_ssh_same_cipher": "tarc",
    "rsync": "rsync",
}  # each contender's box dir


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def ssh_base(key: Path, port: int, known_hosts: Path) -> list[str]:
    return [
        "ssh",
        "-i",
        str(key),
        "-p",
        str(port),
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=25_000)
    ap.add_argument("--sftp-sample", type=int, default=1_000)
    ap.add_argument(
        "--repeat", type=int, default=3, help="first-push rounds; each round runs every contender, in a rotated order"
    )
    ap.add_argument(
        "--box-dir",
        help="where the box writes (default: a temp dir on this disk; /dev/shm takes the disk's "
        "writeback noise out, leaving CPU and the SSH stream)",
    )
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="trainbox-bench-"))
    os.environ["TRAINBOX_HOME"] = str(work / "home")
    user = getpass.getuser()
    private, public = sshd.new_private_key()
    key = work / "key"
    paths.write_private(key, private)
    server = sshd.start(work / "sshd", [public])
    hostkeys.pin("127.0.0.1", server.port, [server.host_key])
    known = paths.known_hosts()
    ssh = ssh_base(key, server.port, known)
    box = Path(tempfile.mkdtemp(prefix="trainbox-bench-box-", dir=args.box_dir)) if args.box_dir else work / "box"
    target = Target("127.0.0.1", server.port, user, str(key), str(box))
    rows = []
    try:
        src = work / "set"
        total = make_set(src, args.files)
        print(f"set: {args.files} files, {total / 1e6:.0f} MB, on sshd 127.0.0.1:{server.port}", file=sys.stderr)
        conn = connect(target, timeout=10)

        # -- first push: --repeat rounds, each contender once per round, the
        # order rotated; medians compared, every run printed (the machine is shared).
        def ours(i):
            return sync.push(conn, src, str(box / f"ours{i}"))

        def ours_zstd(i):
            # zstd forced (remote/wirecodec.py): every file here is a .jpg, sent raw in zstd's frames.
            # auto sends a box on 127.0.0.1, and a set this incompressible anywhere, the plain stream.
            return sync.push(conn, src, str(box / f"zstd{i}"), compress="zstd")

        def tar_ssh(i):
            # The box's tar -x flags as trainbox's (as root, plain tar -x would also chown every file).
            subprocess.run(
                f"tar -C {src} -cf - . | {' '.join(ssh)} {user}@127.0.0.1 'mkdir -p {box}/tar{i} && tar -C {box}/tar{i} -x --no-same-owner --no-same-permissions -f -'",
                shell=True,
                check=True,
            )

        def tar_ssh_same_cipher(i):
            # Like for like: the cipher trainbox's stream asks for first.
            subprocess.run(
                f"tar -C {src} -cf - . | {' '.join(ssh)} -o Ciphers={sync.BULK_CIPHERS} {user}@127.0.0.1 "
                f"'mkdir -p {box}/tarc{i} && tar -C {box}/tarc{i} -x --no-same-owner --no-same-permissions -f -'",
                shell=True,
                check=True,
            )

        rsh = " ".join(ssh)

        def rsync(i):
            subprocess.run(["rsync", "-a", "-e", rsh, f"{src}/", f"{user}@127.0.0.1:{box}/rsync{i}/"], check=True)

        contenders = [ours, ours_zstd, tar_ssh, tar_ssh_same_cipher, rsync]
        runs = {f: [] for f in contenders}
        for i in range(args.repeat):
            for f in contenders[i % len(contenders) :] + contenders[: i % len(contenders)]:
                os.sync()  # no contender pays for the previous one's dirty pages
                runs[f].append(timed(lambda f=f, i=i: f(i))[0])
                if i < args.repeat - 1:
                    shutil.rmtree(box / f"{DIRS[f.__name__]}{i}", ignore_errors=True)
        for f in contenders:
            print(f"{f.__name__} runs (s): {' '.join(f'{t:.2f}' for t in runs[f])}", file=sys.stderr)
        t_ours, t_zstd, t_tar, t_tarc, t_rsync = (statistics.median(runs[f]) for f in contenders)
        last = args.repeat - 1
        sample = sorted(p for p in src.rglob("*") if p.is_file())[: args.sftp_sample]

        def fabric_put_loop():
            # What a naive fabric script does: one Connection.put per file.
            made = set()
            for p in sample:
                rel = p.relative_to(src)
                d = f"{box}/sftp/{rel.parent}"
                if d not in made:
                    conn.run(f"mkdir -p {d}", hide=True)
                    made.add(d)
                conn.put(str(p), f"{d}/{rel.name}")

        t_sftp_sample, _ = timed(fabric_put_loop)
        t_sftp = t_sftp_sample * args.files / len(sample)
        rows += [
            (f"first push: trainbox (median of {args.repeat})", t_ours, ""),
            (
                "first push: trainbox, compress=zstd (forced; auto is none here)",
                t_zstd,
                f"{t_zstd / t_ours:.2f}x trainbox's auto",
            ),
            (
                "first push: tar c | ssh tar x (OpenSSH's default cipher)",
                t_tar,
                f"trainbox {t_ours / t_tar:.2f}x  (goal <= 1.1x)",
            ),
            (
                "first push: tar c | ssh tar x (trainbox's cipher order)",
                t_tarc,
                f"trainbox {t_ours / t_tarc:.2f}x  (like for like)",
            ),
            ("first push: rsync -a", t_rsync, f"trainbox {t_ours / t_rsync:.2f}x"),
            (
                f"first push: fabric put per file (extrapolated from {len(sample)} files)",
                t_sftp,
                f"trainbox {t_sftp / t_ours:.1f}x faster  (goal >= 10x)",
            ),
        ]

        # -- no-op
        noop = {ours: [], rsync: []}
        for i in range(args.repeat):
            for f in (ours, rsync) if i % 2 == 0 else (rsync, ours):
                t, plan = timed(lambda f=f: f(last))
                assert f is rsync or plan.noop
                noop[f].append(t)
        print(
            f"no-op runs (s): ours {' '.join(f'{t:.2f}' for t in noop[ours])}; "
            f"rsync {' '.join(f'{t:.2f}' for t in noop[rsync])}",
            file=sys.stderr,
        )
        t_noop, t_rsync_noop = statistics.median(noop[ours]), statistics.median(noop[rsync])
        rows += [
            (f"no-op re-push: trainbox (median of {args.repeat})", t_noop, ""),
            ("no-op: rsync -a", t_rsync_noop, f"trainbox {t_noop / t_rsync_noop:.2f}x  (goal <= 1.0x)"),
        ]

        # -- 1 % changed
        files = sorted(p for p in src.rglob("*") if p.is_file())
        changed = random.Random(1).sample(files, max(1, len(files) // 100))
        changed_bytes = 0
        for p in changed:
            data = os.urandom(p.stat().st_size)
            p.write_bytes(data)
            changed_bytes += len(data)
        t_change, plan = timed(lambda: ours(last))
        budget = 1.05 * changed_bytes + 1e6
        rows.append(
            (
                f"1 % changed ({len(changed)} files, {changed_bytes / 1e6:.2f} MB): trainbox",
                t_change,
                f"sent {plan.sent_bytes / 1e6:.2f} MB = {plan.sent_bytes / changed_bytes:.3f}x the changed bytes "
                f"(goal <= {budget / 1e6:.2f} MB)",
            )
        )
        conn.close()
    finally:
        sshd.stop(work / "sshd")
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(box, ignore_errors=True)

    w = max(len(r[0]) for r in rows)
    print(f"{'measure':<{w}}  {'seconds':>8}  ratio")
    for name, secs, note in rows:
        print(f"{name:<{w}}  {secs:8.2f}  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
