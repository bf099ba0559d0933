"""`provision state` of a spot box says what its persistent request is doing (issue 13)."""

from __future__ import annotations

import json

import pytest
from botocore.stub import Stubber
from pvkit import CIDR, aws, ec2, moto_ami, moto_module, name  # noqa: F401

from cli.provision_main import main
from provision import spot


def _request(state, code):
    return {
        "SpotInstanceRequests": [
            {"SpotInstanceRequestId": "sir-1", "State": state, "Status": {"Code": code, "Message": "from AWS"}}
        ]
    }


@pytest.mark.parametrize(
    "state,code,says",
    [
        ("open", "instance-stopped-no-capacity", "open: interrupted: waiting for capacity to start it again"),
        ("open", "capacity-not-available", "open: waiting for capacity"),
        ("active", "fulfilled", "active: running"),
        (
            "disabled",
            "instance-stopped-by-user",
            "disabled: stopped by you (or the cost guard): starts again on `provision start`",
        ),
        ("open", "some-new-code", "open: some-new-code"),
    ],
)
def test_the_request_in_words(aws, state, code, says):
    ec2 = aws.client("ec2")
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_spot_instance_requests", _request(state, code), {"SpotInstanceRequestIds": ["sir-1"]}
        )
        assert spot.request_of(ec2, "sir-1", "i-1").says == says
        stub.assert_no_pending_responses()


def test_found_by_instance_when_the_instance_names_none(aws):
    ec2 = aws.client("ec2")
    with Stubber(ec2) as stub:
        stub.add_response(
            "describe_spot_instance_requests",
            _request("active", "fulfilled"),
            {"Filters": [{"Name": "instance-id", "Values": ["i-1"]}]},
        )
        stub.add_response(
            "describe_spot_instance_requests",
            {"SpotInstanceRequests": []},
            {"Filters": [{"Name": "instance-id", "Values": ["i-2"]}]},
        )
        assert spot.request_of(ec2, None, "i-1").id == "sir-1"
        assert spot.request_of(ec2, None, "i-2") is None
        stub.assert_no_pending_responses()


def test_state_shows_a_spot_row_only_for_spot_boxes(aws, moto_ami, capsys, name):
    # moto launches spot instances without a request object: the row says so rather than inventing one.
    assert main(["up", "--name", name, "--ssh-cidr", CIDR, "--no-wait", "--ami", moto_ami, "--spot"]) == 0
    capsys.readouterr()
    assert main(["state", "--name", name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["spot"] == "no spot request found (cancelled?)"
    assert main(["state", "--name", name]) == 0
    assert "spot         no spot request found" in capsys.readouterr().out
    other = name + "-od"
    assert main(["up", "--name", other, "--ssh-cidr", CIDR, "--no-wait", "--ami", moto_ami]) == 0
    capsys.readouterr()
    assert main(["state", "--name", other, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["spot"] is None
