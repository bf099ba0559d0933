"""remote/interruptions.py: the agent's events file in words, for `remote status` and `remote runs` (issue 13)."""

from remote import interruptions

EVENTS = "\n".join(
    [
        '{"event": "spot-notice", "at": 1000.0, "notice": {"action": "stop", "time": "2026-12-01T22:00:00Z"}}',
        '{"event": "stopping", "at": 1100.0}',
        '{"event": "resumed", "at": 1300.5, "after_boot": "b1"}',
        '{"event": "resumed", "at": 2000.0, "after_boot": "b2"}',  # after a power loss: no event before it
        '{"event": "stopp',  # a line cut by a power loss
    ]
)


def test_events_read_in_order_with_words_and_times():
    events = interruptions.parse(EVENTS)
    assert [e.kind for e in events] == ["spot-notice", "stopping", "resumed", "resumed"]
    lines = interruptions.lines(events)
    assert lines[0].endswith("spot interruption notice: asked the run to save (AWS: stop at 2026-12-01T22:00:00Z)")
    assert lines[0].startswith(interruptions.stamp(1000.0))
    assert lines[2].endswith("resumed by the box at boot")


def test_interruptions_are_counted_by_resumes_plus_one_still_open():
    events = interruptions.parse(EVENTS)
    assert interruptions.interruptions(events) == 2
    assert interruptions.summary(events).startswith("2, resumed ")
    cut = interruptions.parse('{"event": "stopping", "at": 5.0}')
    assert interruptions.interruptions(cut) == 1 and interruptions.summary(cut) == "1, cut"
    assert interruptions.summary([]) == "-"


def test_the_pulled_copy_is_read(tmp_path):
    (tmp_path / "events").write_text(EVENTS)
    assert len(interruptions.read_local(tmp_path)) == 4
    assert interruptions.read_local(tmp_path / "none") == []


def test_a_run_the_user_stopped_says_it_was_not_resumed_and_counts_no_interruption():
    events = interruptions.parse('{"event": "left-stopped", "at": 7.0, "boot": "b1"}')
    assert interruptions.lines(events)[0].endswith("not resumed at boot: you stopped it (`remote stop`)")
    assert interruptions.summary(events) == "-"


def test_a_restore_on_a_new_instance_reads_as_one():
    (event,) = interruptions.parse('{"event": "restored", "at": 7.0, "from_instance": "i-a", "instance": "i-b"}')
    assert interruptions.lines([event])[0].endswith("restored from S3 on a new instance (i-b; it ran on i-a)")
