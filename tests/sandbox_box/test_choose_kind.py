"""Which sandbox box `up --sandbox` makes, and why (no box is booted here)."""

from __future__ import annotations

import pytest

from common.errors import UsageError
from sandbox import boxes, container


def test_auto_takes_the_container_where_it_can_run(monkeypatch):
    monkeypatch.setattr(container, "unavailable", lambda: None)
    assert boxes.choose_kind("auto")[0] == "container"
    monkeypatch.setattr(container, "unavailable", lambda: "not running as root (systemd-nspawn needs root)")
    kind, why = boxes.choose_kind("auto")
    assert kind == "process" and "not running as root" in why


def test_a_flag_chooses_and_an_impossible_container_is_a_usage_error(monkeypatch):
    monkeypatch.setattr(container, "unavailable", lambda: "no debootstrap")
    assert boxes.choose_kind("process") == ("process", "as asked")
    with pytest.raises(UsageError, match="cannot run here: no debootstrap"):
        boxes.choose_kind("container")
    monkeypatch.setenv("TRAINBOX_SANDBOX_BOX", "process")
    monkeypatch.setattr(container, "unavailable", lambda: None)
    assert boxes.choose_kind(None)[0] == "process"  # the environment, when no flag


def test_up_says_which_box(cli, moto_endpoint, tmp_path):
    up = cli("provision", "up", "--sandbox", "--sandbox-box", "process", cwd=tmp_path)
    assert up.code == 0, up.err
    assert "sandbox box: process (as asked)" in up.err
    assert cli("provision", "down", "--yes", cwd=tmp_path).code == 0
