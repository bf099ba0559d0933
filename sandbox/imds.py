"""The sandbox's IMDSv2 stand-in: an instance's metadata on 127.0.0.1, one per sandbox box.

An instance asks EC2's metadata service, at the link-local 169.254.169.254,
for its spot notice, its identity and its instance role's credentials; the
sandbox never reaches that address. Each container box gets this small server
instead, on 127.0.0.1 (the container shares this machine's network), started
when the box boots and recorded like the sandbox's other servers (pid and
start time), stopped when the box is removed. The box is pointed at it by an
environment file in its layer (AWS_EC2_METADATA_SERVICE_ENDPOINT, botocore's
convention). A box made for another instance (the group's replacement) is a
new box with a new stand-in, which answers that instance's id.

It speaks the part of IMDSv2 trainbox uses, as EC2 does:

- ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds``: a token;
- ``GET`` with ``X-aws-ec2-metadata-token`` (401 without a token it gave):
  - ``/latest/meta-data/spot/instance-action``: 404 until a notice is set, then
    the instance-action document (``{"action": "stop", "time": "...Z"}``);
  - ``/latest/meta-data/instance-id``, ``placement/availability-zone``,
    ``placement/region``: the instance the box plays (its zone asked of moto);
  - ``/latest/meta-data/iam/security-credentials/``: the instance role's name, and
    ``.../security-credentials/<role>``: its credentials, ``{"Code": "Success",
    "LastUpdated", "Type": "AWS-HMAC", "AccessKeyId", "SecretAccessKey", "Token",
    "Expiration"}``, from moto's STS AssumeRole on that role, fetched again
    before they expire (EC2 rotates them well ahead of expiry). An instance
    without a profile answers 404 there, as EC2 does.

The role is the instance's: its instance profile's. moto does not put the
launch template's IamInstanceProfile on an instance its Auto Scaling group
launches (moto 5.2: DescribeInstances has no IamInstanceProfile for it), so
here the profile is read from the launch template the instance was launched
from (the ``aws:ec2launchtemplate:id``/``version`` tags moto does put on it), as
EC2 would have applied it. moto does not enforce IAM: the credentials reach
any bucket there, where AWS would limit them to the role's policy (the box's
prefix, provision/boxstore.py).

It talks to the sandbox's moto only (its endpoint must be on 127.0.0.1),
with moto's fake credentials; nothing else of the laptop's reaches it.

The notice is a file (``notice.json`` beside the record), read at every GET:
``python -m provision sandbox-notice`` writes it (a test or bench flips it
that way), and each boot of the box removes it (a restarted instance has no
notice pending). Run as a script by path with the sandbox's Python (boto3,
imported only when moto is asked).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import secrets
import sys
import threading
import time
import urllib.parse

TOKEN_PATH = "/latest/api/token"
META = "/latest/meta-data/"
NOTICE_PATH = META + "spot/instance-action"
CREDENTIALS = META + "iam/security-credentials/"
# The credentials are fetched again when they have less than this left (EC2 rotates them
# at least five minutes before they expire).
REFRESH_BEFORE_S = 300.0
# moto's fake credentials: the only ones this process ever holds of its own.
MOTO_KEY = "testing"


class Moto:
    """What the stand-in asks of the sandbox's moto about its instance (boto3, on 127.0.0.1)."""

    def __init__(self, endpoint: str, region: str, instance_id: str, refresh_before_s: float = REFRESH_BEFORE_S):
        host = urllib.parse.urlsplit(endpoint).hostname
        if host not in ("127.0.0.1", "localhost"):
            raise SystemExit(f"imds: {endpoint} is not the sandbox's moto on 127.0.0.1")
        self.endpoint, self.region, self.instance_id = endpoint, region, instance_id
        self.refresh_before_s = refresh_before_s
        self._lock = threading.Lock()
        self._zone: str | None = None
        self._role: str | None = None
        self._role_asked = False
        self._creds: dict | None = None

    def _client(self, service: str):
        import boto3

        return boto3.session.Session(
            aws_access_key_id=MOTO_KEY, aws_secret_access_key=MOTO_KEY, region_name=self.region
        ).client(service, endpoint_url=self.endpoint)

    def _describe(self) -> dict:
        found = self._client("ec2").describe_instances(InstanceIds=[self.instance_id])["Reservations"]
        return found[0]["Instances"][0]

    def zone(self) -> str:
        with self._lock:
            if self._zone is None:
                self._zone = self._describe()["Placement"]["AvailabilityZone"]
            return self._zone

    def role(self) -> str | None:
        """The role in the instance's profile (None: it has none), asked once (an instance keeps its profile)."""
        with self._lock:
            if not self._role_asked:
                self._role, self._role_asked = self._find_role(), True
            return self._role

    def _find_role(self) -> str | None:
        inst = self._describe()
        arn = (inst.get("IamInstanceProfile") or {}).get("Arn")
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        if arn is None and "aws:ec2launchtemplate:id" in tags:  # what moto lacks: the template's profile
            versions = self._client("ec2").describe_launch_template_versions(
                LaunchTemplateId=tags["aws:ec2launchtemplate:id"],
                Versions=[tags.get("aws:ec2launchtemplate:version", "$Default")],
            )["LaunchTemplateVersions"]
            arn = (versions[0]["LaunchTemplateData"].get("IamInstanceProfile") or {}).get("Arn") if versions else None
        if arn is None:
            return None
        profile = self._client("iam").get_instance_profile(InstanceProfileName=arn.rsplit("/", 1)[1])
        roles = profile["InstanceProfile"].get("Roles", [])
        return roles[0]["RoleName"] if roles else None

    def credentials(self, role: str) -> dict:
        """The role's credentials, fetched again when they are near their expiry."""
        with self._lock:
            c = self._creds
            if c is None or c["expires"] - time.time() < self.refresh_before_s:
                arn = self._client("iam").get_role(RoleName=role)["Role"]["Arn"]
                got = self._client("sts").assume_role(RoleArn=arn, RoleSessionName=self.instance_id)["Credentials"]
                c = self._creds = {
                    "expires": got["Expiration"].timestamp(),
                    "doc": {
                        "Code": "Success",
                        "LastUpdated": _iso(time.time()),
                        "Type": "AWS-HMAC",
                        "AccessKeyId": got["AccessKeyId"],
                        "SecretAccessKey": got["SecretAccessKey"],
                        "Token": got["SessionToken"],
                        "Expiration": _iso(got["Expiration"].timestamp()),
                    },
                }
            return c["doc"]


def _iso(at_unix: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at_unix))


def make_server(port: int, notice_file: str, moto: Moto | None = None) -> http.server.ThreadingHTTPServer:
    """The stand-in on 127.0.0.1:port; ``moto`` None: a box that plays no instance (the notice only)."""
    tokens: set[str] = set()

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "trainbox-imds"

        def log_message(self, fmt, *args):
            sys.stderr.write("imds: " + fmt % args + "\n")

        def log_request(self, code="-", size="-"):
            if str(code) != "404":  # "no notice", every few seconds: not worth a line
                super().log_request(code, size)

        def _send(self, code: int, body: bytes = b"", kind: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_PUT(self):
            if self.path != TOKEN_PATH:
                return self._send(404)
            if not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                return self._send(400, b"missing X-aws-ec2-metadata-token-ttl-seconds")
            token = secrets.token_urlsafe(24)
            tokens.add(token)
            self._send(200, token.encode())

        def do_GET(self):
            if self.headers.get("X-aws-ec2-metadata-token") not in tokens:
                return self._send(401)
            if self.path == NOTICE_PATH:
                try:
                    with open(notice_file, "rb") as f:
                        return self._send(200, f.read(), "application/json")
                except FileNotFoundError:
                    return self._send(404)
            if moto is None:
                return self._send(404)
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                answer = self._instance(self.path)
            except (BotoCoreError, ClientError) as e:  # moto unreachable, the instance gone: logged
                sys.stderr.write(f"imds: {self.path}: {type(e).__name__}: {e}\n")
                return self._send(500)
            if answer is None:
                return self._send(404)
            body, kind = answer
            self._send(200, body.encode(), kind)

        def _instance(self, path: str) -> tuple[str, str] | None:
            assert moto is not None
            if path == META + "instance-id":
                return moto.instance_id, "text/plain"
            if path == META + "placement/region":
                return moto.region, "text/plain"
            if path == META + "placement/availability-zone":
                return moto.zone(), "text/plain"
            if path.startswith(CREDENTIALS):
                role = moto.role()
                if role is None:
                    return None  # no instance profile
                asked = path[len(CREDENTIALS) :]
                if asked == "":
                    return role, "text/plain"
                if asked.rstrip("/") == role:
                    return json.dumps(moto.credentials(role), indent=2), "text/plain"
            return None

    return http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)


def notice_document(action: str, at_unix: float) -> str:
    """The instance-action document as EC2 writes it (UTC, to the second)."""
    return json.dumps({"action": action, "time": _iso(at_unix)})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="trainbox's IMDSv2 stand-in for one sandbox box (127.0.0.1 only)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--notice-file", required=True)
    p.add_argument("--instance-id", help="the instance the box plays (its identity, zone and role from moto)")
    p.add_argument("--endpoint", help="the sandbox's moto on 127.0.0.1")
    p.add_argument("--region")
    args = p.parse_args(argv)
    moto = Moto(args.endpoint, args.region, args.instance_id) if args.instance_id and args.endpoint else None
    server = make_server(args.port, os.path.abspath(args.notice_file), moto)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
