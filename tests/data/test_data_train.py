"""`remote train --data http://...`: the box downloads the archive and trains on it, end to end."""

from __future__ import annotations

import json
from pathlib import Path

from remote import datasource


def test_train_from_a_url(cli, box, box_flags, file_server, tmp_path):
    workdir = Path(box.workdir)
    url = file_server.url("/set.tar.gz")
    work = tmp_path / "work"
    work.mkdir()
    r = cli(
        "remote",
        "train",
        *box_flags,
        "--data",
        url,
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--pull-every",
        "600",
        cwd=work,
    )
    assert r.code == 0, r.err + r.out
    assert "fetched by the box" in r.err
    (run,) = list((work / "runs").iterdir())
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == 1
    key = datasource.parse(url).key
    assert f"TRAINBOX_DATA={workdir}/data/{key}/set" in (workdir / "runs" / run.name / "run.sh").read_text()
    assert len(file_server.hits("/set.tar.gz")) == 1
