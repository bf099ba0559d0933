"""box/s3.py, the box's own S3 client: SigV4 against AWS's documented vector, and against a real
moto server on 127.0.0.1 with moto's signature and IAM checks switched on, the role's
credentials read from an IMDSv2 stand-in (a real HTTP server here, as on the box)."""

from __future__ import annotations

import datetime
import hashlib
import http.server
import json
import threading
import urllib.request

import pytest

from box import agent, s3
from provision import boxstore

# AWS's SigV4 example "GET Object" (Amazon S3 API reference, "Signature Calculations for the
# Authorization Header: Transferring Payload in a Single Chunk"): a Range GET of /test.txt.
AWS_KEY = s3.Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
AWS_HEADERS = {
    "Host": "examplebucket.s3.amazonaws.com",
    "Range": "bytes=0-9",
    "x-amz-content-sha256": s3.EMPTY_SHA256,
    "x-amz-date": "20130524T000000Z",
}


def test_the_canonical_request_is_aws_documented_one():
    request, signed = s3.canonical_request("GET", "/test.txt", {}, AWS_HEADERS, s3.EMPTY_SHA256)
    assert signed == "host;range;x-amz-content-sha256;x-amz-date"
    assert request == (
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
        f"x-amz-content-sha256:{s3.EMPTY_SHA256}\nx-amz-date:20130524T000000Z\n\n"
        f"host;range;x-amz-content-sha256;x-amz-date\n{s3.EMPTY_SHA256}"
    )
    assert hashlib.sha256(request.encode()).hexdigest() == (
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
    )


def test_the_signature_is_aws_documented_one():
    auth = s3.authorization(
        AWS_KEY, "us-east-1", "20130524T000000Z", "GET", "/test.txt", {}, AWS_HEADERS, s3.EMPTY_SHA256
    )
    assert auth == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_a_query_is_sorted_and_encoded_once():
    assert s3.canonical_query({"prefix": "boxes/b 1/", "list-type": "2"}) == "list-type=2&prefix=boxes%2Fb%201%2F"


# ---------------------------------------------------------------- against moto, auth on

BUCKET = "trainbox-123456789012-us-east-1"
BOX = "b1"


@pytest.fixture(scope="module")
def moto_auth():
    """A moto server of this module's own (its auth switch is the process's), auth off at first."""
    from moto.server import ThreadedMotoServer

    from common.procs import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    _auth(f"http://127.0.0.1:{port}", "inf")
    server.stop()


def _auth(endpoint: str, count: str) -> None:
    req = urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=count.encode(), method="POST", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(req, timeout=10).close()


class RoleImds:
    """IMDSv2 serving one role's credentials (the instance profile's), as EC2 does."""

    def __init__(self, role: str, creds: dict):
        self.role, self.creds, self.reads = role, creds, 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body=b""):
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self):
                self._send(200, b"tok")

            def do_GET(self):
                if self.headers.get("X-aws-ec2-metadata-token") != "tok":
                    return self._send(401)
                if self.path == s3.CREDENTIALS_PATH:
                    return self._send(200, outer.role.encode())
                if self.path == s3.CREDENTIALS_PATH + outer.role:
                    outer.reads += 1
                    return self._send(200, json.dumps(outer.creds).encode())
                self._send(404)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def role_creds(moto_auth, monkeypatch):
    """The box's role (boxstore's policy: its prefix only), assumed: temporary credentials."""
    import boto3

    _auth(moto_auth, "inf")
    # moto's backends are the process's: emptied, as tests/conftest.py's moto_endpoint does.
    urllib.request.urlopen(urllib.request.Request(f"{moto_auth}/moto-api/reset", method="POST"), timeout=10).close()
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    kw = dict(endpoint_url=moto_auth, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    boto3.client("s3", **kw).create_bucket(Bucket=BUCKET)
    iam = boto3.client("iam", **kw)
    role = boxstore.role_name(BOX)
    try:
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(boxstore.trust_document()))
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    # boxstore's policy, but for the listing, which moto cannot judge as AWS does: it checks no
    # Condition on an S3 request (access_control's check_action_permitted is given no condition
    # values, so the s3:prefix condition refuses every listing), and it names ListObjectsV2's
    # action s3:ListObjectsV2 where AWS's is s3:ListBucket. The object statement is boxstore's.
    policy = boxstore.policy_document(BUCKET, BOX)
    assert "Condition" in policy["Statement"][1]
    del policy["Statement"][1]["Condition"]
    policy["Statement"][1]["Action"] = ["s3:ListBucket", "s3:ListObjectsV2"]
    iam.put_role_policy(RoleName=role, PolicyName=boxstore.POLICY, PolicyDocument=json.dumps(policy))
    arn = iam.get_role(RoleName=role)["Role"]["Arn"]
    got = boto3.client("sts", **kw).assume_role(RoleArn=arn, RoleSessionName="i-1")["Credentials"]
    creds = {
        "Code": "Success",
        "AccessKeyId": got["AccessKeyId"],
        "SecretAccessKey": got["SecretAccessKey"],
        "Token": got["SessionToken"],
        "Expiration": got["Expiration"].astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    _auth(moto_auth, "0")  # from here on moto checks every request's signature and policy
    yield role, creds
    _auth(moto_auth, "inf")


def test_a_signed_round_trip_with_the_role_from_imds(moto_auth, role_creds, tmp_path):
    role, creds = role_creds
    imds = RoleImds(role, creds)
    client = s3.S3(BUCKET, "us-east-1", moto_auth, s3.CredentialSource(agent.Imds(imds.endpoint), environ={}))
    src = tmp_path / "ckpt.weights.h5"
    src.write_bytes(bytes(range(256)) * 5000)
    key = f"{boxstore.prefix(BOX)}runs/r1/out/ckpt weights+1.h5"  # a space and a plus: encoded once
    client.put_file(key, str(src))
    listed = list(client.list(boxstore.prefix(BOX)))
    assert [(o.key, o.size) for o in listed] == [(key, src.stat().st_size)]
    dest = tmp_path / "back" / "ckpt.h5"
    assert client.get_file(key, str(dest)) == src.stat().st_size
    assert dest.read_bytes() == src.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == ["ckpt.h5"], "no temporary file is left"
    client.delete(key)
    assert list(client.list(boxstore.prefix(BOX))) == []
    assert imds.reads == 1, "the role's credentials are read once while they are valid"


def test_the_role_reaches_its_prefix_only(moto_auth, role_creds, tmp_path):
    role, creds = role_creds
    client = s3.S3(BUCKET, "us-east-1", moto_auth, s3.CredentialSource(agent.Imds(RoleImds(role, creds).endpoint), {}))
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(s3.S3Error) as e:
        client.put_file("boxes/other/runs/r1/run.json", str(f))
    assert e.value.code == "AccessDenied" and e.value.status == 403


def test_a_wrong_secret_is_refused_by_its_signature(moto_auth, role_creds, tmp_path):
    _, creds = role_creds
    env = {"AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    env["AWS_SESSION_TOKEN"] = creds["Token"]
    client = s3.S3(BUCKET, "us-east-1", moto_auth, s3.CredentialSource(None, env))
    with pytest.raises(s3.S3Error) as e:
        list(client.list(boxstore.prefix(BOX)))
    assert e.value.code == "SignatureDoesNotMatch"


def test_a_missing_object_is_its_s3_code(moto_auth, role_creds, tmp_path):
    _, creds = role_creds
    env = {"AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"]}
    env["AWS_SESSION_TOKEN"] = creds["Token"]
    client = s3.S3(BUCKET, "us-east-1", moto_auth, s3.CredentialSource(None, env))
    with pytest.raises(s3.S3Error) as e:
        client.get_file(f"{boxstore.prefix(BOX)}runs/none/state.json", str(tmp_path / "got" / "s.json"))
    assert e.value.code == "NoSuchKey"
    assert not (tmp_path / "got").exists() or not list((tmp_path / "got").iterdir()), "nothing is written"


def test_credentials_are_read_again_before_they_expire(moto_auth, role_creds):
    role, creds = role_creds
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=s3.REFRESH_BEFORE_S - 1)
    imds = RoleImds(role, dict(creds, Expiration=soon.strftime("%Y-%m-%dT%H:%M:%SZ")))
    source = s3.CredentialSource(agent.Imds(imds.endpoint), {})
    source.get()
    source.get()
    assert imds.reads == 2


def test_no_role_is_one_clear_error():
    imds = RoleImds("", {})
    with pytest.raises(s3.S3Error) as e:
        s3.CredentialSource(agent.Imds(imds.endpoint), {}).get()
    assert e.value.code == "NoCredentials"


# ---------------------------------------------------------------- box/release.py: the guard lets go of the group


def make_group(endpoint: str, name: str) -> None:
    import boto3

    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    ec2, asg = boto3.client("ec2", **kw), boto3.client("autoscaling", **kw)
    ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData={"ImageId": "ami-12c6146b"})
    asg.create_auto_scaling_group(
        AutoScalingGroupName=name,
        LaunchTemplate={"LaunchTemplateName": name},
        MinSize=1,
        MaxSize=1,
        DesiredCapacity=1,
        AvailabilityZones=["us-east-1a"],
    )


def group_size(endpoint: str, name: str) -> tuple[int, int]:
    import boto3

    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    (g,) = boto3.client("autoscaling", **kw).describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"
    ]
    return g["MinSize"], g["DesiredCapacity"]


def test_the_guard_s_release_sets_the_box_s_group_to_zero_with_the_role_s_credentials(moto_auth, role_creds):
    from box import release

    role, creds = role_creds
    _auth(moto_auth, "inf")
    group = f"trainbox-{BOX}"
    make_group(moto_auth, group)
    # boxstore's group statement, on any resource and with no condition: moto judges every action but S3's against the
    # resource "*" (core/authorization.py), so it refuses a statement naming the group's ARN, which
    # AWS allows (tests/provision/test_boxstore.py checks the ARN the role gets).
    import boto3

    kw = dict(endpoint_url=moto_auth, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    iam = boto3.client("iam", **kw)
    doc = iam.get_role_policy(RoleName=role, PolicyName=boxstore.POLICY)["PolicyDocument"]
    (statement,) = [st for st in doc["Statement"] if st["Action"] == "autoscaling:UpdateAutoScalingGroup"]
    assert statement["Resource"] == boxstore.group_arn(BOX)
    assert statement["Condition"] == {"NumericLessThanEqualsIfExists": {"autoscaling:MaxSize": "1"}}
    statement["Resource"] = "*"
    del statement[
        "Condition"
    ]  # moto evaluates no Auto Scaling condition key (AWS's own check of it stays untested here)
    iam.put_role_policy(RoleName=role, PolicyName=boxstore.POLICY, PolicyDocument=json.dumps(doc))
    _auth(moto_auth, "0")
    source = s3.CredentialSource(agent.Imds(RoleImds(role, creds).endpoint), environ={})
    release.release(group, "us-east-1", moto_auth, source)
    _auth(moto_auth, "inf")
    assert group_size(moto_auth, group) == (0, 0)


def test_release_names_aws_s_refusal(moto_auth, role_creds):
    from box import release

    role, creds = role_creds
    source = s3.CredentialSource(agent.Imds(RoleImds(role, creds).endpoint), environ={})
    _auth(moto_auth, "inf")  # past the signature and policy: the group itself is missing
    with pytest.raises(s3.S3Error) as e:
        release.release("trainbox-no-such-group", "us-east-1", moto_auth, source)
    assert e.value.code == "ValidationError"
