"""The sandbox's IMDSv2 stand-in: the spot notice a container box's agent polls, on 127.0.0.1.

An instance's agent (box/agent.py) asks EC2's metadata service, at the
link-local 169.254.169.254, for ``spot/instance-action``; the sandbox never
reaches that address. Each container box gets this small server instead, on
127.0.0.1 (the container shares this machine's network), started when the
box boots and recorded like the sandbox's other servers (pid and start time),
stopped by ``down``. The box's agent is pointed at it by an environment file
in the box's layer (AWS_EC2_METADATA_SERVICE_ENDPOINT, botocore's convention).

It speaks the part of IMDSv2 the agent uses, as EC2 does:

- ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds``: a token;
- ``GET`` with ``X-aws-ec2-metadata-token``: 401 without a token it gave;
  ``/latest/meta-data/spot/instance-action`` is 404 until a notice is set, then
  the instance-action document (``{"action": "stop", "time": "...Z"}``).

The notice is a file (``notice.json`` beside the record), read at every GET:
``python -m provision sandbox-notice`` writes it (a test or bench flips it
that way), and each boot of the box removes it (a restarted instance has no
notice pending). Standard library only; run as a script by path.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import secrets
import sys

NOTICE_PATH = "/latest/meta-data/spot/instance-action"
TOKEN_PATH = "/latest/api/token"


def make_server(port: int, notice_file: str) -> http.server.ThreadingHTTPServer:
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
            if self.path != NOTICE_PATH:
                return self._send(404)
            try:
                with open(notice_file, "rb") as f:
                    body = f.read()
            except FileNotFoundError:
                return self._send(404)
            self._send(200, body, "application/json")

    return http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)


def notice_document(action: str, at_unix: float) -> str:
    """The instance-action document as EC2 writes it (UTC, to the second)."""
    import time

    return json.dumps({"action": action, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at_unix))})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="trainbox's IMDSv2 stand-in for one sandbox box (127.0.0.1 only)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--notice-file", required=True)
    args = p.parse_args(argv)
    server = make_server(args.port, os.path.abspath(args.notice_file))
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
