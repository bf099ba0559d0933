"""Fixtures for the remote CLI tests: a tiny dataset, the flags that point
the real `remote` CLI at the session's sshd on 127.0.0.1, and polling."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit import synth_image_set

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    """A two-class image set: 16 + 4 images per class, 32 px (seconds to train)."""
    return synth_image_set(tmp_path_factory.mktemp("data") / "set")


@pytest.fixture
def on_box(pinned, box) -> list[str]:
    """Flags for `remote`: the test sshd, its key, this test's workdir on the box."""
    return ["--host", pinned.spec, "--identity", str(pinned.key), "--workdir", box.workdir]
