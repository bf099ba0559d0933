"""The container box's images as layers, on the file system alone (no boot; tests/sandbox_box/
test_container_box.py boots them): the host's scrub and check of a powered-off layer, the
freeze (a rename, the box rebased on it), and which removed image's layer stays while a box
or another image stands on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.errors import TrainboxError
from sandbox import boxes, container, layers, rootfs
from sandbox import images as sandbox_images


def write(root: Path, rel: str, text: str = "x") -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def a_box(name: str, lowers: list[Path] = ()) -> Path:
    """A created, powered-off container box as its disk lies on the host."""
    d = boxes.box_dir(name)
    container.create(d, f"i-{name}", "ssh-ed25519 AAAA test", "#!/bin/bash\n", lower_layers=list(lowers))
    (d / "kind").write_text("container\n")
    return d


def cleaned_by_its_guest(d: Path) -> None:
    """What remote/bake.py's clean-up leaves, plus what the guest's own shutdown writes after it."""
    up = container.upper(d)
    write(up, "home/ubuntu/trainbox/env/trainbox-ready", "spec s\n")
    write(up, "home/ubuntu/trainbox/bootstrap.sh")
    write(up, "etc/ssh/ssh_host_ed25519_key", "PRIVATE")
    write(up, "etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA")
    write(up, "etc/machine-id", "0123\n")
    write(up, "var/log/journal/0123/system.journal", "shutdown")
    write(up, "var/log/wtmp", "shutdown")
    write(up, "var/lib/cloud/instances/i-x/obj.pkl")
    write(up, container.PORT_CFG, "Port 2222\n")


def test_check_scrubs_what_the_shutdown_wrote_and_keeps_the_seed_and_environment(trainbox_home):
    d = a_box("one")
    cleaned_by_its_guest(d)
    removed = layers.check_clean(d)
    up = container.upper(d)
    assert {
        "etc/ssh/ssh_host_ed25519_key",
        "etc/machine-id",
        "var/log/wtmp",
        "var/log/journal/0123/system.journal",
    } <= set(removed)
    assert not list(up.glob("etc/ssh/ssh_host_*")) and not (up / "var/lib/cloud/instances").exists()
    assert (up / "var/log/journal/0123").is_dir()  # the folders stay, their files go
    assert (up / container.SEED / "meta-data").is_file() and (up / "home/ubuntu/trainbox/env/trainbox-ready").is_file()


@pytest.mark.parametrize(
    "planted, named",
    [
        ("home/ubuntu/trainbox/runs/r1/log", "home/ubuntu/trainbox/runs"),
        ("home/ubuntu/trainbox/data/set/a.jpg", "home/ubuntu/trainbox/data"),
        ("home/ubuntu/.ssh/id_ed25519", "home/ubuntu/.ssh/id_ed25519"),
        ("home/ubuntu/.aws/credentials", "home/ubuntu/.aws"),
        ("root/.ssh/authorized_keys", "root/.ssh/authorized_keys"),
    ],
)
def test_check_refuses_a_layer_that_still_holds_the_users_things(trainbox_home, planted, named):
    d = a_box("one")
    cleaned_by_its_guest(d)
    write(container.upper(d), planted)
    with pytest.raises(TrainboxError, match="still holds .*nothing was imaged") as e:
        layers.check_clean(d)
    assert f"holds {named} after" in str(e.value)
    assert (container.upper(d) / planted).exists() and container.lowers(d) == [], "nothing frozen"


def test_freeze_renames_the_layer_and_rebases_the_box_on_it(trainbox_home):
    d = a_box("one")
    cleaned_by_its_guest(d)
    layers.check_clean(d)
    sandbox_images.freeze_sandbox_disk("one", "ami-1")
    frozen = sandbox_images.sandbox_image_dir("ami-1") / sandbox_images.LAYER
    assert (frozen / "home/ubuntu/trainbox/env/trainbox-ready").is_file()
    assert not (frozen / container.SEED).exists() and not (frozen / container.PORT_CFG).exists()
    assert container.lowers(d) == [frozen]
    assert (container.upper(d) / container.SEED / "meta-data").is_file() and (
        container.upper(d) / container.PORT_CFG
    ).is_file()
    assert json.loads((frozen.parent / sandbox_images.LAYERS).read_text()) == {
        "root": rootfs.key(),
        "layers": [str(frozen)],
    }
    stack, why = sandbox_images.sandbox_layers("ami-1")
    assert stack == [frozen] and "its environment is ready" in why


def test_an_image_of_a_box_from_an_image_stacks_on_it_and_removed_layers_go_with_their_last_user(trainbox_home):
    d1 = a_box("one")
    cleaned_by_its_guest(d1)
    sandbox_images.freeze_sandbox_disk("one", "ami-1")
    a = sandbox_images.sandbox_image_dir("ami-1") / sandbox_images.LAYER
    stack, _ = sandbox_images.sandbox_layers("ami-1")
    d2 = a_box("two", stack)
    cleaned_by_its_guest(d2)
    sandbox_images.freeze_sandbox_disk("two", "ami-2")
    b = sandbox_images.sandbox_image_dir("ami-2") / sandbox_images.LAYER
    assert sandbox_images.sandbox_layers("ami-2")[0] == [a, b] and container.lowers(d2) == [a, b]

    assert sandbox_images.drop_sandbox_image("ami-1") == ["box 'one'", "box 'two'", "image ami-2"]
    boxes.remove_box("one")
    boxes.remove_box("two")
    assert a.is_dir(), "image ami-2 stands on it"
    assert sandbox_images.sandbox_layers("ami-2")[0] == [a, b]
    assert sandbox_images.drop_sandbox_image("ami-2") == []
    assert (
        not sandbox_images.sandbox_image_dir("ami-1").exists()
        and not sandbox_images.sandbox_image_dir("ami-2").exists()
    )


def test_a_layer_made_on_another_root_is_not_used(trainbox_home):
    d = a_box("one")
    cleaned_by_its_guest(d)
    sandbox_images.freeze_sandbox_disk("one", "ami-1")
    f = sandbox_images.sandbox_image_dir("ami-1") / sandbox_images.LAYERS
    f.write_text(json.dumps({**json.loads(f.read_text()), "root": "debian-bookworm-000000000000"}))
    stack, why = sandbox_images.sandbox_layers("ami-1")
    assert stack is None and "another root file system" in why and "boots bare" in why
