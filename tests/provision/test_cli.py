"""The provision CLI in process (main(argv) against moto), its error lines and
exit codes; and a few runs of the real CLI in a subprocess against the moto
server on 127.0.0.1. Nothing here connects to an instance address: `up`
always runs with --no-wait."""

from __future__ import annotations

import json

import pytest
from pvkit import CIDR, aws, client_error, ec2, live, moto_ami, moto_module, name  # noqa: F401

from cli.provision_main import main
from common import state
from common.aws import _FIXES, aws_errors
from common.cliutil import Parser, run_cli
from common.errors import EX_INTERRUPTED, EX_SOFTWARE, EX_UNAVAILABLE, EX_USAGE, CloudError, UsageError
from provision import ami


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


def up_args(name, *more):
    return ["up", "--name", name, "--ssh-cidr", CIDR, "--no-wait", *more]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("code", sorted(_FIXES))
def test_every_known_aws_error_is_one_line_with_a_fix(code):
    with pytest.raises(CloudError) as caught:
        with aws_errors("launch the box"):
            raise client_error(code, "RunInstances", "Some message from AWS.")
    text = str(caught.value)
    assert "\n" not in text and code in text and "Some message from AWS." in text
    assert caught.value.fix, f"{code} names no next step"
    assert caught.value.exit_code == CloudError.exit_code


def test_an_unknown_aws_error_still_names_the_action():
    with pytest.raises(CloudError, match=r"AWS refused to start the box \(Weird: odd\)"):
        with aws_errors("start the box"):
            raise client_error("Weird", "StartInstances", "odd")


def test_no_credentials_and_no_region():
    from botocore.exceptions import NoCredentialsError, NoRegionError

    with pytest.raises(CloudError, match="no AWS credentials") as c:
        with aws_errors("x"):
            raise NoCredentialsError()
    assert c.value.exit_code == CloudError.exit_code
    with pytest.raises(UsageError, match="--region") as u:
        with aws_errors("x"):
            raise NoRegionError()
    assert u.value.exit_code == UsageError.exit_code


def _handler(exc):
    def handler(args):
        raise exc

    return handler


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (UsageError("bad", "do this"), EX_USAGE),
        (CloudError("aws said no"), EX_UNAVAILABLE),
        (ValueError("a bug"), EX_SOFTWARE),
    ],
)
def test_top_level_handler_prints_one_line_and_maps_exit_codes(capsys, exc, code):
    assert (EX_USAGE, EX_UNAVAILABLE, EX_SOFTWARE, EX_INTERRUPTED) == (64, 69, 70, 130), "the table in common/errors.py"
    args = Parser().parse_args([])
    args.debug = False
    assert run_cli(_handler(exc), args) == code
    assert one_line(capsys.readouterr().err)


def test_ctrl_c_exits_130(capsys):
    args = Parser().parse_args([])
    args.debug = False
    assert run_cli(_handler(KeyboardInterrupt()), args) == EX_INTERRUPTED == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_debug_shows_the_traceback():
    args = Parser().parse_args([])
    args.debug = True
    with pytest.raises(ValueError):
        run_cli(_handler(ValueError("a bug")), args)


@pytest.mark.parametrize(
    "argv",
    [["up", "--volume-gb", "0"], ["up", "--max-hours", "-1"], ["nope"], ["state", "--bogus"], ["nb", "--port", "x"]],
)
def test_bad_usage_is_exit_2_one_line(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == UsageError.exit_code
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--help" in err


def test_bad_cidr_is_exit_2(aws, capsys, name):
    assert main(["up", "--name", name, "--ssh-cidr", "10.0.0.0/33", "--no-wait"]) == UsageError.exit_code
    assert "not a CIDR" in one_line(capsys.readouterr().err)


def test_type_not_offered_is_exit_2_naming_offered_types(aws, capsys, name):
    assert main(up_args(name, "--instance-type", "p2.xlarge")) == UsageError.exit_code
    err = capsys.readouterr().err
    line = one_line(err)
    assert "p2.xlarge is not offered in us-east-1" in line and "g4dn.xlarge" in line
    assert "did not finish" not in err  # refused before anything was made: no `down` needed


def test_a_missing_ami_is_exit_3_one_line(aws, ec2, capsys, name):
    assert main(up_args(name, "--ami", "ami-0000000000000dead")) == CloudError.exit_code
    err = capsys.readouterr().err
    line = one_line(err)
    assert "AMI" in line and "drop --ami" in line
    assert f"provision down --name {name}` removes it" in err
    assert live(ec2, name) == []


def test_up_with_the_key_of_a_live_box_lost_is_exit_2_one_line(aws, moto_ami, capsys, name):
    from common import paths

    assert main(up_args(name, "--ami", moto_ami)) == 0
    paths.key_path(name).unlink()
    capsys.readouterr()
    assert main(up_args(name, "--ami", moto_ami)) == UsageError.exit_code
    err = capsys.readouterr().err
    line = one_line(err)
    assert "private key" in line and f"provision down --name {name}" in line
    assert "did not finish" not in err  # nothing was made, nothing to clean


def test_up_without_a_findable_ami_is_exit_3(aws, capsys, name):
    # moto has no DLAMI SSM parameters: the real lookup finds nothing.
    assert main(up_args(name)) == CloudError.exit_code
    assert "--ami" in one_line(capsys.readouterr().err)


# ---------------------------------------------------------------- AMI


def test_p2_finds_the_k80_dlami_by_name(ec2):
    image = ami.resolve(ec2, "p2.xlarge")
    assert image.name.startswith("Deep Learning AMI") and "Ubuntu" in image.name
    assert image.login_user == "ubuntu"


def test_the_newest_dlami_comes_from_the_injected_lookup(ec2, moto_ami):
    assert ami.resolve(ec2, "g4dn.xlarge", latest_id=lambda: moto_ami).id == moto_ami
    with pytest.raises(CloudError, match="newest Deep Learning Base AMI"):
        ami.resolve(ec2, "g4dn.xlarge", latest_id=lambda: None)


def test_given_ami_wins(ec2, moto_ami):
    assert ami.resolve(ec2, "p2.xlarge", ami=moto_ami, latest_id=lambda: "ami-other").id == moto_ami


def test_ssm_lookup_reads_the_public_parameter(aws):
    from botocore.stub import Stubber

    ssm = aws.client("ssm")
    path = ami.SSM_BASE.format(os="ubuntu-22.04")
    with Stubber(ssm) as stub:
        stub.add_response("get_parameter", {"Parameter": {"Name": path, "Value": "ami-0abc"}}, {"Name": path})
        stub.add_client_error("get_parameter", "ParameterNotFound", expected_params={"Name": path})
        assert ami.ssm_lookup(ssm) == "ami-0abc"
        assert ami.ssm_lookup(ssm) is None
        stub.assert_no_pending_responses()


# ---------------------------------------------------------------- up, state


def test_up_prints_address_and_price_and_flags_reach_aws(aws, ec2, moto_ami, capsys, name):
    import base64

    rc = main(
        up_args(name, "--ami", moto_ami, "--spot", "--max-hours", "3", "--idle-minutes", "20", "--volume-gb", "64")
    )
    assert rc == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    box = state.load(name)
    assert f"at {box.public_ip} ($0.526/h)" in out and box.instance_id in out
    d = ec2.describe_instances(InstanceIds=[box.instance_id])["Reservations"][0]["Instances"][0]
    assert d.get("InstanceLifecycle") == "spot"
    vol = ec2.describe_volumes(VolumeIds=[d["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]])["Volumes"][0]
    assert vol["Size"] == 64
    from provision.up import user_data_text

    script = user_data_text(
        base64.b64decode(
            ec2.describe_instance_attribute(InstanceId=box.instance_id, Attribute="userData")["UserData"]["Value"]
        )
    )
    assert "max_seconds=10800" in script and "idle_seconds=1200" in script
    assert "TRAINBOX_BOOTSTRAP_EOF" in script, "the CLI hands `up` the bootstrap for the first boot"


def test_state_json_has_uptime_price_and_cost(aws, moto_ami, capsys, name, tmp_path):
    assert main(up_args(name, "--ami", moto_ami)) == 0
    capsys.readouterr()
    assert main(["state", "--name", name, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert {
        "name",
        "instance_id",
        "instance_type",
        "state",
        "address",
        "uptime_s",
        "price_per_hour",
        "cost_so_far",
        "sandbox",
    } <= set(s)
    assert s["state"] == "running" and s["price_per_hour"] == 0.526 and s["uptime_s"] >= 0
    assert s["cost_so_far"] == pytest.approx(0.526 * s["uptime_s"] / 3600, rel=0.05, abs=1e-3)
    # trainbox.toml in the working directory overrides the price table.
    from provision import config

    (tmp_path / "trainbox.toml").write_text('[prices]\n"g4dn.xlarge" = 2.5\n')
    config._toml.cache_clear()
    assert main(["state", "--name", name, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["price_per_hour"] == 2.5
    assert s["cost_so_far"] == pytest.approx(2.5 * s["uptime_s"] / 3600, rel=0.05, abs=1e-3)
    assert main(["state", "--name", name]) == 0
    table = capsys.readouterr().out
    assert "$2.500/h" in table and "uptime" in table and "cost so far" in table


def test_stop_then_state_then_start_refreshes_the_address(aws, moto_ami, capsys, name):
    assert main(up_args(name, "--ami", moto_ami)) == 0
    assert main(["stop", "--name", name]) == 0
    assert "stopped" in capsys.readouterr().out
    assert main(["state", "--name", name, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["state"], s["address"], s["cost_so_far"]) == ("stopped", None, None)
    assert main(["ip", "--name", name]) == UsageError.exit_code
    assert "provision start" in one_line(capsys.readouterr().err)
    assert main(["start", "--name", name]) == 0
    assert f"at {state.load(name).ssh_host}" in capsys.readouterr().out


# ---------------------------------------------------------------- the real CLI


def test_down_with_no_state_removes_everything_tagged_orphans_too(cli, moto_endpoint, tmp_path):
    """up, lose the state file, add orphans; ls sees them, down removes them all."""
    from common.aws import Cloud
    from provision.tags import tag_spec
    from testkit import tagged

    ec2 = Cloud("us-east-1", moto_endpoint).client("ec2")
    image = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["Deep Learning AMI Ubuntu*"]}])[
        "Images"
    ][0]
    up = cli(
        "provision",
        "up",
        "--no-wait",
        "--ssh-cidr",
        CIDR,
        "--ami",
        image["ImageId"],
        "--region",
        "us-east-1",
        cwd=tmp_path,
    )
    assert up.code == 0, up.err
    alloc = ec2.allocate_address(Domain="vpc", TagSpecifications=tag_spec("elastic-ip", "default"))["AllocationId"]
    vol = ec2.create_volume(Size=8, AvailabilityZone="us-east-1a", TagSpecifications=tag_spec("volume", "default"))[
        "VolumeId"
    ]
    state.forget("default")

    ls = cli("provision", "ls", "--json", "--region", "us-east-1", cwd=tmp_path)
    assert ls.code == 0, ls.err
    found = {(r["kind"], r["id"]) for r in json.loads(ls.out)}
    assert {("address", alloc), ("volume", vol)} <= found
    assert {"instance", "vpc", "security-group", "key-pair"} <= {k for k, _ in found}

    down = cli("provision", "down", "--yes", "--region", "us-east-1", cwd=tmp_path)
    assert down.code == 0, down.err
    assert tagged(moto_endpoint) == []
    assert "each verified" in down.out

    again = cli("provision", "ls", "--region", "us-east-1", cwd=tmp_path)
    assert again.code == 0 and "nothing is up: no boxes, nothing left billing" in again.out
