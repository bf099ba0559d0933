"""`--data` from a URL or S3: the box downloads, verifies, extracts and caches.

The box is the test sshd on 127.0.0.1, so the box-side script fetches from
the HTTP server and the moto server of these tests: all on this machine.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from common.errors import CloudError, RemoteError, UsageError
from remote import datasource, fetch, fetch_on_box
from testkit import files_containing, one_line_error

REPO = Path(__file__).resolve().parents[2]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def do_fetch(conn, box, src: str, **kw) -> fetch.Fetched:
    lines: list[str] = []
    got = fetch.fetch(conn, datasource.parse(src), box.workdir, sys.executable, str(REPO), say=lines.append, **kw)
    got.lines = lines
    return got


def cache_entries(box) -> list[str]:
    """The cache's entries, plus anything left in its work folders."""
    root = Path(box.workdir) / "data"
    if not root.exists():
        return []
    out = [p.name for p in root.iterdir() if not p.name.startswith(".")]
    for work in (".tmp", ".partial"):
        out += [f"{work}/{p.name}" for p in (root / work).glob("*")]
    return out


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "src, kind",
    [
        ("http://h/x/set.tar.gz", "tar"),
        ("https://h/set.tgz", "tar"),
        ("http://h/set.tar", "tar"),
        ("http://h/set.ZIP", "zip"),
    ],
)
def test_parse_urls(src, kind):
    s = datasource.parse(src)
    assert isinstance(s, datasource.UrlSource) and s.kind == kind and s.sha256 is None


def test_parse_sha_and_keys():
    a = datasource.parse("http://h/set.tar.gz#sha256=" + "A" * 64)
    b = datasource.parse("http://h/set.tar.gz")
    assert a.sha256 == "a" * 64 and a.url == b.url
    assert a.key != b.key and a.key.startswith("set-") and a.key == datasource.parse(str(a)).key
    s3 = datasource.parse("s3://my-bucket/cats/dogs")
    assert (s3.bucket, s3.prefix) == ("my-bucket", "cats/dogs/") and s3.key.startswith("s3-my-bucket-cats-dogs-")


@pytest.mark.parametrize(
    "src, words",
    [
        ("ftp://h/set.zip", "unsupported source 'ftp'"),
        ("gs://b/p", "unsupported source 'gs'"),
        ("http://h/set.rar", "unsupported archive type"),
        ("http://h/set.zip#md5=00", "#sha256="),
        ("kaggle:dogs vs cats", "not a Kaggle"),
        ("/no/such/folder", "no such directory"),
        ("s3://B_ad/x", "bucket name"),
    ],
)
def test_parse_refuses(src, words):
    with pytest.raises(UsageError) as e:
        datasource.parse(src)
    assert words in str(e.value) and e.value.exit_code == UsageError.exit_code


def test_local_folder_is_a_local_source(tmp_path):
    assert datasource.parse(str(tmp_path)) == datasource.LocalSource(tmp_path)


@pytest.mark.parametrize(
    "src", ["http://127.0.0.1:9/set.7z", "kaggle:dogs-vs-cats/train.csv", "ftp://127.0.0.1/set.zip"]
)
def test_cli_bad_source_exits_2_before_connecting(cli, tmp_path, src):
    r = cli("remote", "train", "--epochs", "1", "--data", src, cwd=tmp_path)
    assert r.code == UsageError.exit_code and one_line_error(r).startswith("error:")
    r = cli("remote", "data", "fetch", src, cwd=tmp_path)
    assert r.code == UsageError.exit_code and one_line_error(r).startswith("error:")


# ---------------------------------------------------------------- URL


@pytest.mark.parametrize("name", ["/set.tar.gz", "/set.zip"])
def test_url_fetch_then_cached(conn, box, file_server, name):
    src = file_server.url(name) + "#sha256=" + sha256(file_server.files[name])
    got = do_fetch(conn, box, src)
    assert not got.cached and got.downloaded == len(file_server.files[name])
    data = Path(got.path)
    assert sorted(p.name for p in data.iterdir()) == ["train", "validation"]
    assert len(list(data.rglob("*.jpg"))) == 40
    assert any("download" in l and "/s" in l for l in got.lines), got.lines  # progress: bytes and rate
    assert len(file_server.hits(name)) == 1

    again = do_fetch(conn, box, src)
    assert again.cached and again.path == got.path and again.downloaded == 0
    assert len(file_server.hits(name)) == 1, "a re-run makes no request for data"
    assert cache_entries(box) == [got.key]


def test_quiet_prints_no_progress(conn, box, file_server):
    got = do_fetch(conn, box, file_server.url("/set.tar.gz"), quiet=True)
    assert got.lines == []


def test_sha256_mismatch_leaves_nothing(conn, box, file_server):
    with pytest.raises(RemoteError) as e:
        do_fetch(conn, box, file_server.url("/set.tar.gz") + "#sha256=" + "0" * 64)
    assert "sha256 mismatch" in str(e.value) and e.value.exit_code == RemoteError.exit_code
    assert cache_entries(box) == []


def test_404_and_unreachable_exit_3_with_one_line(cli, box, box_flags, file_server, tmp_path):
    r = cli("remote", "data", "fetch", file_server.url("/missing.tar.gz"), *box_flags, cwd=tmp_path)
    assert r.code == RemoteError.exit_code, r.err
    assert "404" in one_line_error(r)
    # nothing listens on port 9 of 127.0.0.1 (discard): unreachable after retries
    r = cli("remote", "data", "fetch", "http://127.0.0.1:9/set.zip", *box_flags, cwd=tmp_path)
    assert r.code == RemoteError.exit_code, r.err
    assert "cannot reach http://127.0.0.1:9/set.zip" in one_line_error(r)
    assert [e for e in cache_entries(box) if not e.startswith(".partial")] == []


def test_dropped_connection_resumes_with_range(conn, box, file_server):
    name = "/set.tar.gz"
    size = len(file_server.files[name])
    file_server.drop_after[name] = size // 3
    got = do_fetch(conn, box, file_server.url(name) + "#sha256=" + sha256(file_server.files[name]))
    assert file_server.hits(name) == [None, f"bytes={size // 3}-"]
    assert len(list(Path(got.path).rglob("*.jpg"))) == 40
    assert any("resuming" in l for l in got.lines)
    assert cache_entries(box) == [got.key]


def test_kaggle_flat_layout_is_organized_on_the_box(conn, box, file_server):
    got = do_fetch(conn, box, file_server.url("/flat.zip"))
    data = Path(got.path)
    assert data.name == ".organized"
    assert sorted(p.name for p in data.iterdir()) == ["train", "validation"]
    counts = {d.relative_to(data).as_posix(): len(list(d.iterdir())) for d in data.glob("*/*")}
    assert counts == {"train/cats": 16, "train/dogs": 16, "validation/cats": 4, "validation/dogs": 4}


def test_neither_layout_names_what_was_found(conn, box, file_server):
    with pytest.raises(UsageError) as e:
        do_fetch(conn, box, file_server.url("/odd.tar.gz"))
    assert "images.csv, readme.txt" in str(e.value) and e.value.exit_code == UsageError.exit_code
    assert cache_entries(box) == []


def test_not_an_archive_leaves_nothing(conn, box, file_server):
    file_server.files["/junk.zip"] = b"this is not a zip file" * 10
    with pytest.raises(UsageError):
        do_fetch(conn, box, file_server.url("/junk.zip"))
    assert cache_entries(box) == []


def test_disk_full_is_one_line_exit_3(conn, box, file_server, monkeypatch):
    """ENOSPC on the box: an error, and the stage removed (simulated by a plan whose data root is /dev/full)."""
    plan = {
        "op": "url",
        "data_root": str(Path(box.workdir) / "data"),
        "python": sys.executable,
        "code_dir": str(REPO),
        "quiet": True,
        "key": "full",
        "source": "x",
        "url": file_server.url("/set.tar.gz"),
        "sha256": None,
        "kind": "tar",
        "name": "set.tar.gz",
    }
    partial = Path(box.workdir) / "data" / ".partial"
    partial.mkdir(parents=True)
    (partial / "full.download").symlink_to("/dev/full")
    with pytest.raises(RemoteError) as e:
        fetch_on_box.run_box(conn, sys.executable, plan, lambda s: None)
    assert "disk is full" in str(e.value)
    assert [p.name for p in (Path(box.workdir) / "data").iterdir() if not p.name.startswith(".")] == []


def test_cli_fetch_ls_rm(cli, box, box_flags, file_server, tmp_path):
    url = file_server.url("/set.zip")
    r = cli("remote", "data", "fetch", url, *box_flags, cwd=tmp_path)
    assert r.code == 0, r.err
    key = datasource.parse(url).key
    assert f"{key} fetched: " in r.out and "download set.zip" in r.err
    r = cli("remote", "data", "fetch", url, "--quiet", *box_flags, cwd=tmp_path)
    assert r.code == 0 and "already cached" in r.out and r.err.count("\n") <= 1, r.err
    r = cli("remote", "data", "ls", *box_flags, cwd=tmp_path)
    assert r.code == 0 and key in r.out and url in r.out and "KB" in r.out, r.out + r.err
    r = cli("remote", "data", "rm", key, *box_flags, cwd=tmp_path)
    assert r.code == 0 and f"removed {key}" in r.out, r.err
    assert cache_entries(box) == []
    r = cli("remote", "data", "rm", key, *box_flags, cwd=tmp_path)
    assert r.code == UsageError.exit_code and "no cached dataset" in one_line_error(r)


# ---------------------------------------------------------------- S3


def upload(direct, root: Path, prefix: str) -> list[str]:
    keys = []
    for p in sorted(root.rglob("*.jpg")):
        key = f"{prefix}/{p.relative_to(root).as_posix()}"
        direct.put_object(Bucket="cats", Key=key, Body=p.read_bytes())
        keys.append(key)
    return keys


def assert_no_secret_on_the_box(box, proxy):
    assert proxy.box_pids_seen, "the box's processes were inspected during the download"
    assert proxy.leaks == [], "a box-side process had the AWS secret key in its environment"
    assert files_containing(Path(box.workdir), proxy.secret) == []
    assert files_containing(Path(box.workdir), b"AWS_SECRET_ACCESS_KEY") == []


def test_s3_fetch_change_delete(conn, box, s3, image_set):
    proxy, direct = s3
    keys = upload(direct, image_set, "sets/small")
    got = do_fetch(conn, box, "s3://cats/sets/small")
    assert not got.cached and got.urls_handed == 40 and len(got.fetched) == 40
    assert len(proxy.presigned) == 40
    data = Path(got.path)
    assert len(list(data.rglob("*.jpg"))) == 40 and (data / "train" / "cats").is_dir()
    assert_no_secret_on_the_box(box, proxy)

    again = do_fetch(conn, box, "s3://cats/sets/small")
    assert again.cached and again.urls_handed == 0 and len(proxy.presigned) == 40

    changed, deleted = keys[0], keys[-1]
    direct.put_object(Bucket="cats", Key=changed, Body=b"\xff\xd8 a different image")
    direct.delete_object(Bucket="cats", Key=deleted)
    kept = data / keys[5].split("/", 2)[2]
    inode = kept.stat().st_ino
    third = do_fetch(conn, box, "s3://cats/sets/small")
    rel_changed, rel_deleted = changed.split("/", 2)[2], deleted.split("/", 2)[2]
    assert third.fetched == [rel_changed] and third.deleted == [rel_deleted] and third.urls_handed == 1
    assert proxy.presigned[40:] == [f"/cats/{changed}"], "only the changed object was downloaded"
    assert (data / rel_changed).read_bytes() == b"\xff\xd8 a different image"
    assert not (data / rel_deleted).exists()
    assert kept.stat().st_ino == inode, "unchanged objects are kept, not copied"
    manifest = json.loads((data / ".trainbox-manifest.json").read_text())
    assert len(manifest) == 39
    assert_no_secret_on_the_box(box, proxy)
    assert cache_entries(box) == [got.key]


def test_s3_empty_prefix_and_access_denied_exit_3(conn, box, box_flags, s3, cli, tmp_path):
    proxy, direct = s3
    with pytest.raises(CloudError) as e:
        do_fetch(conn, box, "s3://cats/nothing/here")
    assert "holds no objects" in str(e.value) and e.value.exit_code == RemoteError.exit_code
    r = cli("remote", "data", "fetch", "s3://no-such-bucket/x", *box_flags, cwd=tmp_path)
    assert r.code == RemoteError.exit_code and "NoSuchBucket" in one_line_error(r)
    assert cache_entries(box) == []
    assert files_containing(Path(box.workdir), proxy.secret) == []


def test_s3_kaggle_flat_via_cli(cli, box, box_flags, s3, image_set, tmp_path):
    proxy, direct = s3
    for i, p in enumerate(sorted(image_set.rglob("cats/*.jpg"))[:6]):
        direct.put_object(Bucket="cats", Key=f"kaggle/train/cat.{i}.jpg", Body=p.read_bytes())
    for i, p in enumerate(sorted(image_set.rglob("dogs/*.jpg"))[:6]):
        direct.put_object(Bucket="cats", Key=f"kaggle/train/dog.{i}.jpg", Body=p.read_bytes())
    # `data fetch` pushes the model package (organize runs it); the box's Python is this one
    r = cli("remote", "data", "fetch", "s3://cats/kaggle", *box_flags, cwd=tmp_path)
    assert r.code == 0, r.err
    assert "organizing" in r.err and ".organized" in r.out
    organized = next(Path(box.workdir, "data").glob("s3-cats-kaggle-*/.organized"))
    assert len(list(organized.rglob("*.jpg"))) == 12
    assert_no_secret_on_the_box(box, proxy)
