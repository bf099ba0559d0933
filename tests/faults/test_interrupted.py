"""Ctrl-C at every step of `up` and of `down`, then the same command again.

The interrupt is raised by botocore's own event hooks, at the k-th AWS call of
the command, for every k: before the call leaves (nothing happened on AWS) and
just after it returned (AWS did it; the laptop never used the answer, the
worst moment). The second run must converge: `up` ends with exactly the
resources one clean `up` makes (no duplicate instance, network or key), and
`down` ends with nothing tagged, the laptop's state and key gone."""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest
from pvkit import aws, ec2, launch, live, moto_ami, moto_module, name  # noqa: F401

from common import paths, state
from provision import lifecycle

SERVICES = ("ec2", "sts", "service-quotas", "ssm")


@contextlib.contextmanager
def interrupting(cloud, at: int | None = None, when: str = "before"):
    """Ctrl-C (KeyboardInterrupt) at the at-th AWS call (0-based) of any service,
    before it is sent or after its answer came back; at=None only records.
    Yields the calls made, as "service:Operation"."""
    calls: list[str] = []

    def before(model, **kwargs):
        calls.append(f"{model.service_model.service_name}:{model.name}")
        if when == "before" and len(calls) - 1 == at:
            raise KeyboardInterrupt

    def after(model, **kwargs):
        if when == "after" and len(calls) - 1 == at:
            raise KeyboardInterrupt

    clients = [cloud.client(s) for s in SERVICES]  # cached per cloud: the command gets these
    for c in clients:
        c.meta.events.register("before-call", before)
        c.meta.events.register("after-call", after)
    try:
        yield calls
    finally:
        for c in clients:
            c.meta.events.unregister("before-call", before)
            c.meta.events.unregister("after-call", after)


def fresh(moto) -> None:
    """Each case in an AWS of its own: moto filters tags by scanning every tag it
    holds, so cases sharing one slow down as it fills (the matrix took 11 min)."""
    moto.reset()


def kinds(ec2, name: str) -> Counter:
    return Counter(r.kind for r in live(ec2, name))


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before", "after"])
def test_up_interrupted_at_every_aws_call_converges_when_run_again(moto_module, aws, ec2, launch, name, when):
    with interrupting(aws) as calls:
        launch(name=f"{name}-clean")
    clean = kinds(ec2, f"{name}-clean")
    assert clean["instance"] == 1 and clean["vpc"] == 1 and clean["key-pair"] == 1, clean
    assert "ec2:RunInstances" in calls
    wrong = []
    for k, call in enumerate(calls):
        box = f"{name}-{k}"
        fresh(moto_module)
        with interrupting(aws, k, when), pytest.raises(KeyboardInterrupt):
            launch(name=box)
        again, _ = launch(name=box)  # the same command again
        got = kinds(ec2, box)
        if got != clean:
            wrong.append(
                f"Ctrl-C {when} call {k} ({call}): the second up left {dict(got - clean)} extra, "
                f"{dict(clean - got)} missing"
            )
        elif not paths.key_path(box).is_file() or state.load(box) is None:
            wrong.append(f"Ctrl-C {when} call {k} ({call}): the second up left no key or state on the laptop")
        lifecycle.destroy(aws, box, lambda s: None)
        assert live(ec2, box) == [], f"down after Ctrl-C {when} call {k} ({call}) left {live(ec2, box)}"
    assert wrong == []


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before", "after"])
def test_down_interrupted_at_every_aws_call_leaves_nothing_when_run_again(moto_module, aws, ec2, launch, name, when):
    launch(name=f"{name}-clean")
    with interrupting(aws) as calls:
        lifecycle.destroy(aws, f"{name}-clean", lambda s: None)
    assert "ec2:TerminateInstances" in calls and live(ec2, f"{name}-clean") == []
    wrong = []
    for k, call in enumerate(calls):
        box = f"{name}-{k}"
        fresh(moto_module)
        launch(name=box)
        with interrupting(aws, k, when), pytest.raises(KeyboardInterrupt):
            lifecycle.destroy(aws, box, lambda s: None)
        lifecycle.destroy(aws, box, lambda s: None)  # the same command again
        left = live(ec2, box)
        if left or state.load(box) is not None or paths.key_path(box).exists():
            wrong.append(
                f"Ctrl-C {when} call {k} ({call}): the second down left {[r.kind for r in left]}"
                f"{' and the laptop state' if state.load(box) else ''}"
            )
    assert wrong == []
