"""One cache dir, one rule (issue 27): ``TRAINBOX_CACHE``, else the platform's
user cache dir, never under TRAINBOX_HOME (the cache outlives a home); the
container box's root file system and Kaggle's downloads both live there."""

from __future__ import annotations

import os
from pathlib import Path

from common import paths
from remote import datasource, kaggle
from sandbox import rootfs


def test_trainbox_cache_is_the_one_cache_of_both_users(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINBOX_CACHE", str(tmp_path / "c"))
    assert paths.cache_dir() == tmp_path / "c"
    assert kaggle.cache_dir() == tmp_path / "c"
    assert rootfs.cache_dir() == tmp_path / "c" / "rootfs" and rootfs.cache_dir().is_dir()


def test_without_trainbox_cache_it_is_the_user_cache_dir_not_trainbox_home(tmp_path, monkeypatch, trainbox_home):
    monkeypatch.delenv("TRAINBOX_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # the platform's user cache dir, here
    assert paths.cache_dir() == tmp_path / "xdg" / "trainbox"
    assert kaggle.cache_dir() == paths.cache_dir(), "Kaggle's downloads are not under TRAINBOX_HOME"
    assert rootfs.cache_dir() == paths.cache_dir("rootfs")
    assert trainbox_home not in paths.cache_dir().parents


def test_the_suite_writes_no_cache_but_the_machines_root_file_system_outside_the_test(tmp_path):
    """conftest points TRAINBOX_CACHE at the test's own dir; only the root file
    system (minutes to build, keyed by its recipe) is the machine's, shared."""
    cache = Path(os.environ["TRAINBOX_CACHE"])
    assert tmp_path in cache.parents
    assert kaggle.local_copy(datasource.parse("kaggle:owner/set")).is_relative_to(cache)
    assert rootfs.cache_dir().resolve() == Path(os.environ["TRAINBOX_MACHINE_CACHE"]) / "rootfs"
