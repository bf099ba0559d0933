"""`--data kaggle:...`: the laptop asks Kaggle with the user's credential, the box
downloads the signed URL (or gets the file pushed), and the credential never
reaches the box.

Kaggle is a stand-in on 127.0.0.1 (tests/data/conftest.py `kaggle_api`) that checks
the credential on every request and redirects to a local file server; the box
is the test sshd. After each test the key, the token and the basic-auth value
appear nowhere on the box: no file under its workdir, no environment and no
command line of any process below its sshd (sampled all along), and not in
anything the file server received.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from box import fetch as boxfetch
from common.errors import CloudError, UsageError
from remote import datasource, kaggle
from testkit import REPO, files_containing, one_line_error

REDUX = "dogs-vs-cats-redux-kernels-edition"


def assert_credential_nowhere_on_the_box(box, api, fetched: bool = True) -> None:
    assert api.watch.seen, "the box's processes were sampled while the test ran"
    if fetched:
        assert any("trainbox_boxfetch" in c for c in api.watch.commands), "the box's fetch process was sampled"
    assert api.watch.leaks == [], "a process on the box had the Kaggle credential in its environment or command line"
    for needle in api.needles:
        assert files_containing(Path(box.workdir), needle) == []
    for path, headers in api.storage.headers:
        assert "Authorization" not in headers and "authorization" not in headers, path
        text = path + json.dumps(headers)
        assert not any(n.decode() in text for n in api.needles), "the storage server saw the credential"


def cache_entries(box) -> list[str]:
    root = Path(box.workdir) / "data"
    if not root.exists():
        return []
    out = [p.name for p in root.iterdir() if not p.name.startswith(".")]
    for work in (".tmp", ".partial", ".incoming"):
        out += [f"{work}/{p.name}" for p in (root / work).glob("*")]
    return out


@pytest.fixture
def laptop_home(tmp_path) -> Path:
    """The laptop's HOME for the CLI: no ~/.kaggle unless a test writes one."""
    home = tmp_path / "laptop"
    home.mkdir()
    return home


# ---------------------------------------------------------------- parsing and credentials (no box)


@pytest.mark.parametrize(
    "src, name, owner, file",
    [
        (f"kaggle:{REDUX}", REDUX, None, None),
        (f"kaggle:{REDUX}/train.zip", REDUX, None, "train.zip"),
        ("kaggle:keras/vgg16", "vgg16", "keras", None),
        ("kaggle:owner/set/images/part1.tar.gz", "set", "owner", "images/part1.tar.gz"),
    ],
)
def test_parse_kaggle_sources(src, name, owner, file):
    s = datasource.parse(src)
    assert (s.name, s.owner, s.file) == (name, owner, file) and str(s) == src
    assert s.key.startswith("kaggle-") and s.key == datasource.parse(src).key
    assert s.key != datasource.parse("kaggle:other").key


@pytest.mark.parametrize(
    "src, words",
    [
        ("kaggle:", "not a Kaggle competition or dataset"),
        ("kaggle:two words", "not a Kaggle"),
        ("kaggle:owner/../x.zip", "not a Kaggle"),
        (f"kaggle:{REDUX}/sample_submission.csv", "not an archive"),
    ],
)
def test_parse_kaggle_refuses(src, words):
    with pytest.raises(UsageError) as e:
        datasource.parse(src)
    assert words in str(e.value) and e.value.exit_code == UsageError.exit_code


def test_credentials_found_where_the_kaggle_package_looks(tmp_path):
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    with pytest.raises(UsageError) as e:
        kaggle.find_credential({"HOME": str(home)})
    message = str(e.value)
    for place in (
        "KAGGLE_API_TOKEN",
        f"{home}/.kaggle/access_token",
        "KAGGLE_USERNAME/KAGGLE_KEY",
        f"{home}/.kaggle/kaggle.json",
        f"{home}/.config/kaggle/kaggle.json",
    ):
        assert place in message
    assert e.value.exit_code == UsageError.exit_code and "https://www.kaggle.com/settings" in message

    (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "ann", "key": "k1"}))
    c = kaggle.find_credential({"HOME": str(home)})
    assert (c.scheme, c.username, c.secret) == ("Basic", "ann", "k1") and "k1" not in repr(c)
    c = kaggle.find_credential({"HOME": str(home), "KAGGLE_USERNAME": "bob", "KAGGLE_KEY": "k2"})
    assert (c.username, c.secret) == ("bob", "k2")
    (home / ".kaggle" / "access_token").write_text("tok-file\n")
    c = kaggle.find_credential({"HOME": str(home), "KAGGLE_USERNAME": "bob", "KAGGLE_KEY": "k2"})
    assert (c.scheme, c.secret) == ("Bearer", "tok-file") and c.header() == "Bearer tok-file"
    assert kaggle.find_credential({"HOME": str(home), "KAGGLE_API_TOKEN": "tok-env"}).secret == "tok-env"
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "kaggle.json").write_text("not json")
    with pytest.raises(UsageError) as e:
        kaggle.find_credential({"HOME": str(tmp_path), "KAGGLE_CONFIG_DIR": str(tmp_path / "cfg")})
    assert "is not a Kaggle API key file" in str(e.value)


def test_laptop_request_carries_the_credential_and_keeps_the_redirect(kaggle_api):
    api = kaggle_api
    cred = kaggle.Credential("Basic", api.key, api.username, "KAGGLE_USERNAME/KAGGLE_KEY")
    got = kaggle.request_download(datasource.parse(f"kaggle:{REDUX}"), cred, api.url)
    assert got.url.startswith(api.storage.url("/kaggle-data/")) and "Signature=" in got.url
    assert api.calls == [("competitions.CompetitionApiService/DownloadDataFiles", {"competitionName": REDUX}, True)]
    assert api.storage.requests == [], "the laptop does not follow the redirect"

    api.location = api.storage.url("/x.zip") + f"?token={api.key}"
    with pytest.raises(UsageError) as e:
        kaggle.request_download(datasource.parse(f"kaggle:{REDUX}"), cred, api.url)
    assert "carries your credential" in str(e.value)


# ---------------------------------------------------------------- with the box


def test_what_the_box_is_sent_holds_no_credential(conn, box, kaggle_api, monkeypatch):
    """Every plan the box receives on stdin (in process, to read them): the signed URL, never the credential."""
    from remote import fetch, fetch_on_box

    api = kaggle_api
    monkeypatch.setenv("TRAINBOX_KAGGLE_API", api.url)  # the box's sshd was started before: it never sees these
    monkeypatch.setenv("KAGGLE_USERNAME", api.username)
    monkeypatch.setenv("KAGGLE_KEY", api.key)
    plans = []
    real = fetch_on_box.run_box
    monkeypatch.setattr(
        fetch_on_box, "run_box", lambda c, py, plan, say: plans.append(json.dumps(plan)) or real(c, py, plan, say)
    )
    got = fetch.fetch(
        conn, datasource.parse(f"kaggle:{REDUX}/train.zip"), box.workdir, sys.executable, str(REPO), quiet=True
    )
    assert got.urls_handed == 1 and not got.cached and Path(got.path).name == ".organized"
    assert len(plans) == 1 and api.storage.url("/kaggle-data/") in plans[0]
    assert not any(n.decode() in p for p in plans for n in api.needles)
    assert_credential_nowhere_on_the_box(box, api)


def test_redirect_path_the_box_downloads_the_signed_url(cli, box, box_flags, kaggle_api, laptop_home, tmp_path):
    api = kaggle_api
    env = api.env(laptop_home)
    r = cli("remote", "data", "fetch", f"kaggle:{REDUX}", *box_flags, cwd=tmp_path, env=env)
    assert r.code == 0, r.err
    assert "signed download link" in r.err and "organizing" in r.err
    key = datasource.parse(f"kaggle:{REDUX}").key
    data = Path(box.workdir) / "data" / key / ".organized"
    assert f"{key} fetched: " in r.out and str(data) in r.out
    counts = {d.relative_to(data).as_posix(): len(list(d.iterdir())) for d in data.glob("*/*") if d.is_dir()}
    assert counts == {"train/cats": 16, "train/dogs": 16, "validation/cats": 4, "validation/dogs": 4}
    assert sorted(p.name for p in (data / "test").iterdir()) == [f"{i}.jpg" for i in range(1, 8)]
    assert f"model predict --test`: {data / 'test'}" in r.out
    assert [ok for _, _, ok in api.calls] == [True]
    (path,) = [p for p, _ in api.storage.requests]  # the box downloaded the signed URL once
    assert path.startswith("/kaggle-data/") and path.endswith(f"/{REDUX}.zip")

    again = cli("remote", "data", "fetch", f"kaggle:{REDUX}", *box_flags, cwd=tmp_path, env=env)
    assert again.code == 0 and "already cached" in again.out, again.err
    assert len(api.calls) == 1, "a cached dataset asks Kaggle nothing"

    one = cli("remote", "data", "fetch", f"kaggle:{REDUX}/train.zip", "--quiet", *box_flags, cwd=tmp_path, env=env)
    assert one.code == 0, one.err
    assert api.calls[-1] == (
        "competitions.CompetitionApiService/DownloadDataFile",
        {"competitionName": REDUX, "fileName": "train.zip"},
        True,
    )
    assert sorted(cache_entries(box)) == sorted([key, datasource.parse(f"kaggle:{REDUX}/train.zip").key])
    assert_credential_nowhere_on_the_box(box, api)


def test_no_redirect_path_the_laptop_downloads_and_pushes(
    cli, box, box_flags, kaggle_api, laptop_home, tmp_path, trainbox_home
):
    api = kaggle_api
    api.redirect = False
    (laptop_home / ".kaggle").mkdir()
    (laptop_home / ".kaggle" / "access_token").write_text(api.token + "\n")  # a Bearer token this time
    env = api.env(laptop_home, how="file")
    src = "kaggle:student/flat-cats"
    r = cli("remote", "data", "fetch", src, *box_flags, cwd=tmp_path, env=env)
    assert r.code == 0, r.err
    source = datasource.parse(src)
    here = (
        Path(os.environ["TRAINBOX_CACHE"]) / "kaggle" / source.key / "flat-cats.zip"
    )  # the test's own cache (conftest)
    assert here.read_bytes() == api.datasets["student/flat-cats"]["all"]
    size = here.stat().st_size
    assert "Kaggle sent the file itself" in r.err and "download flat-cats.zip to this laptop" in r.err
    assert (
        f"came to this laptop ({boxfetch.human(size)} in {here.parent}); pushing it to the box takes about 0s at 20 Mbit/s"
        in r.err
    )
    assert "pushed " in r.err
    assert api.calls == [
        ("datasets.DatasetApiService/DownloadDataset", {"ownerSlug": "student", "datasetSlug": "flat-cats"}, True)
    ]
    assert api.storage.requests == []
    data = Path(box.workdir) / "data" / source.key / ".organized"
    assert len(list((data / "train").rglob("*.jpg"))) == 32 and len(list((data / "test").iterdir())) == 7
    assert cache_entries(box) == [source.key], "the pushed archive is gone from .incoming once installed"

    api.calls.clear()
    again = cli("remote", "data", "fetch", src, *box_flags, cwd=tmp_path, env=env)
    assert again.code == 0 and "already cached" in again.out and api.calls == [], again.err
    assert_credential_nowhere_on_the_box(box, api)


@pytest.mark.parametrize(
    "case",
    ["no-credentials", "wrong-key", "rules", "unknown-competition", "unknown-file", "unknown-dataset", "unreachable"],
)
def test_errors_are_one_line_with_the_fix(cli, box, box_flags, kaggle_api, laptop_home, tmp_path, case):
    api = kaggle_api
    env = api.env(laptop_home)
    src, code, words = {
        "no-credentials": (
            f"kaggle:{REDUX}",
            UsageError.exit_code,
            ["no Kaggle credentials", f"{laptop_home}/.kaggle/kaggle.json", "https://www.kaggle.com/settings"],
        ),
        "wrong-key": (
            f"kaggle:{REDUX}",
            UsageError.exit_code,
            ["refused the credential from KAGGLE_USERNAME/KAGGLE_KEY (401"],
        ),
        "rules": (
            "kaggle:closed-rules",
            UsageError.exit_code,
            ["(403: You must accept", "https://www.kaggle.com/c/closed-rules/rules"],
        ),
        "unknown-competition": (
            "kaggle:no-such-thing",
            UsageError.exit_code,
            ["Kaggle has no competition no-such-thing (404", "kaggle competitions files no-such-thing"],
        ),
        "unknown-file": (
            f"kaggle:{REDUX}/extra.zip",
            UsageError.exit_code,
            [f"competition {REDUX} has no file extra.zip (404"],
        ),
        "unknown-dataset": (
            "kaggle:student/nothing",
            UsageError.exit_code,
            ["Kaggle has no dataset student/nothing (404"],
        ),
        "unreachable": (
            f"kaggle:{REDUX}",
            CloudError.exit_code,
            ["cannot reach Kaggle at http://127.0.0.1:9", "TRAINBOX_KAGGLE_API"],
        ),
    }[case]
    if case == "no-credentials":
        env = {k: v for k, v in env.items() if not k.startswith("KAGGLE_")}
    if case == "wrong-key":
        env["KAGGLE_KEY"] = "not-the-key"
    if case == "unreachable":
        env["TRAINBOX_KAGGLE_API"] = "http://127.0.0.1:9"  # nothing listens on the discard port
    r = cli("remote", "data", "fetch", src, *box_flags, cwd=tmp_path, env=env)
    assert r.code == code, r.err
    line = one_line_error(r)
    for w in words:
        assert w in line, line
    assert api.key not in r.err + r.out
    assert api.storage.requests == [] and cache_entries(box) == []
    assert_credential_nowhere_on_the_box(box, api, fetched=False)
