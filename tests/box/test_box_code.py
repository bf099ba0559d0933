"""The box-side package (box/): each file compiles, and its logic works here
with the standard library alone (the box runs it before any environment exists)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile

import pytest

import box
from box import fetch, probe, uvfetch
from box.layout import DATA_COMPLETE, BoxLayout

BOX_DIR = __import__("pathlib").Path(box.__file__).parent


def test_every_box_file_compiles():
    for f in sorted(BOX_DIR.glob("*.py")):
        compile(f.read_text(), str(f), "exec")


def test_layout_resolves_a_relative_workdir_against_the_home_once():
    rel = BoxLayout()
    assert rel.env_python == "trainbox/env/bin/python" and rel.ready_marker == "trainbox/env/trainbox-ready"
    home = rel.at_home("/home/u/")
    assert home.run("r1") == "/home/u/trainbox/runs/r1" and home.data("k") == "/home/u/trainbox/data/k"
    assert home.at_home("/elsewhere") == home, "an absolute workdir stays"


def wheel(path, version="0.9.1", tag="manylinux_2_17_x86_64", binary=b"#!uv\n" * 1000, compress=zipfile.ZIP_DEFLATED):
    f = path / f"uv-{version}-py3-none-{tag}.whl"
    with zipfile.ZipFile(f, "w", compress) as z:
        z.writestr("uv-0.9.1.dist-info/METADATA", "Name: uv\n")
        z.writestr(f"uv-{version}.data/scripts/uv", binary)
    return f


def test_uv_wheel_names_are_matched_to_this_machine():
    assert uvfetch.version("uv-0.9.1-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", "x86_64") == (0, 9, 1)
    assert uvfetch.version("uv-0.9.1-py3-none-manylinux_2_17_aarch64.whl", "x86_64") is None
    assert uvfetch.version("uv-0.9.1rc1-py3-none-any.whl", "x86_64") is None, "no pre-release"
    assert uvfetch.version("uv-0.9.1.tar.gz", "x86_64") is None


@pytest.mark.parametrize("compress", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_uvfetch_installs_the_newest_wheel_from_find_links(tmp_path, compress):
    links = tmp_path / "links"
    links.mkdir()
    wheel(links, "0.8.0", binary=b"old", compress=compress)
    wheel(links, "0.9.1", compress=compress)
    tools = tmp_path / "tools"
    (tools / "bin").mkdir(parents=True)
    p = subprocess.run(
        [sys.executable, "-", str(tools), "--no-index", "--find-links", str(links)],
        input=box.source("uvfetch"),
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("uv: uv-0.9.1-py3-none-")
    assert (tools / "bin" / "uv").read_bytes() == b"#!uv\n" * 1000
    assert (tools / "bin" / "uv").stat().st_mode & 0o111


def test_uvfetch_refuses_a_wheel_whose_hash_differs(tmp_path):
    f = wheel(tmp_path)
    (tmp_path / "bin").mkdir()
    with pytest.raises(SystemExit, match="sha256 mismatch"):
        uvfetch.install(f"file://{f}#sha256={hashlib.sha256(b'other').hexdigest()}", str(tmp_path))
    assert not (tmp_path / "bin" / "uv").exists() and not (tmp_path / "bin" / "uv.tmp").exists()


def test_uvfetch_says_why_when_there_is_no_wheel(tmp_path):
    with pytest.raises(SystemExit, match="no uv wheel for this machine; .*nowhere"):
        uvfetch.main([str(tmp_path), "--no-index", "--find-links", "http://127.0.0.1:9/nowhere"])


def test_the_bootstrap_carries_uvfetch_verbatim():
    from remote import setup

    text = setup.render_bootstrap("trainbox", setup.SetupOptions())
    assert box.source("uvfetch") in text
    assert "TRAINBOX_UVFETCH_EOF" not in box.source("uvfetch"), "the heredoc's delimiter never occurs in it"


def test_probe_reports_this_interpreter():
    got = probe.probe(gpus=False)
    assert got["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert probe.version("no-such-distribution-here") is None
    out = subprocess.run([sys.executable, "-c", box.source("probe")], capture_output=True, text=True, timeout=60).stdout
    assert json.loads(out.removeprefix("probe="))["python"] == got["python"]


def test_fetch_lists_a_pushed_folder_as_complete_only_with_the_marker(tmp_path):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "b" / DATA_COMPLETE).write_text("digest")
    got = {e["key"]: e["source"] for e in fetch.list_entries(str(root), DATA_COMPLETE)}
    assert got == {"a": "incomplete push", "b": "pushed from the laptop"}
