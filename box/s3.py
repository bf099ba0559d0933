"""A small S3 client for the box's agent (standard library only): a --recover box's runs in S3.

The box has no boto3 (its agent runs with /usr/bin/python3 before any environment exists), and
it needs four calls on one prefix of one bucket: PutObject, GetObject, ListObjectsV2 and
DeleteObject, signed with AWS Signature Version 4. Its credentials are the instance role's,
read from IMDSv2 (box/agent.py's Imds) and read again before they expire; the user's never
reach the box. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (with AWS_SESSION_TOKEN) are taken
when set, which only tests do.

The endpoint is AWS's virtual-hosted one, https://<bucket>.s3.<region>.amazonaws.com, unless
AWS_ENDPOINT_URL_S3 names another (the sandbox's moto server), which is addressed path-style.
Every failure is an S3Error carrying S3's error code (or the transport's, for a network error).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials/"
REFRESH_BEFORE_S = 300  # read the role's credentials again this long before they expire
HTTP_TIMEOUT_S = 60.0
CHUNK = 1 << 20
# A body's type, said: urllib would call it a form, which a server may parse away (moto's does).
OCTETS = "application/octet-stream"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class S3Error(Exception):
    """One S3 call that failed: S3's error code (``NoSuchKey``, ``AccessDenied``...), or
    ``Network`` / ``NoCredentials`` when no answer came."""

    def __init__(self, code: str, message: str, status: int | None = None, key: str | None = None):
        super().__init__(f"S3 {code}" + (f" on {key}" if key else "") + f": {message}")
        self.code, self.status, self.key = code, status, key


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str | None = None
    expires: float | None = None  # unix time; None: never (the environment's)


def _parse_expiration(text: str) -> float:
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()


class CredentialSource:
    """The environment's keys when set, else the instance role's from IMDSv2 (read again before
    they expire). ``imds``: an object with ``get(path) -> str | None`` (box/agent.py's Imds)."""

    def __init__(self, imds=None, environ=None):
        self.imds, self.environ = imds, os.environ if environ is None else environ
        self._held: Credentials | None = None

    def get(self) -> Credentials:
        key, secret = self.environ.get("AWS_ACCESS_KEY_ID"), self.environ.get("AWS_SECRET_ACCESS_KEY")
        if key and secret:
            return Credentials(key, secret, self.environ.get("AWS_SESSION_TOKEN") or None)
        held = self._held
        if held is None or (held.expires is not None and time.time() >= held.expires - REFRESH_BEFORE_S):
            self._held = held = self._from_imds()
        return held

    def _from_imds(self) -> Credentials:
        if self.imds is None:
            raise S3Error("NoCredentials", "no AWS_ACCESS_KEY_ID in the environment and no IMDS to ask")
        try:
            roles = (self.imds.get(CREDENTIALS_PATH) or "").split()
            if not roles:
                raise S3Error("NoCredentials", "the instance has no role (IMDS lists none)")
            doc = json.loads(self.imds.get(CREDENTIALS_PATH + roles[0]) or "{}")
        except (OSError, ValueError) as e:
            raise S3Error("NoCredentials", f"reading the instance role's credentials from IMDS: {e}") from e
        try:
            return Credentials(
                doc["AccessKeyId"], doc["SecretAccessKey"], doc.get("Token"), _parse_expiration(doc["Expiration"])
            )
        except (KeyError, ValueError) as e:
            raise S3Error("NoCredentials", f"IMDS gave role {roles[0]} no usable credentials ({e})") from e


# ---------------------------------------------------------------- SigV4


def quote_path(path: str) -> str:
    return urllib.parse.quote(path, safe="/~")


def canonical_query(query: dict[str, str]) -> str:
    return "&".join(
        f"{urllib.parse.quote(k, safe='~')}={urllib.parse.quote(v, safe='~')}" for k, v in sorted(query.items())
    )


def canonical_request(
    method: str, path: str, query: dict[str, str], headers: dict[str, str], payload_sha256: str
) -> tuple[str, str]:
    """The canonical request and its signed headers' list, as SigV4 defines them (S3: the path
    encoded once). ``path`` is already URI-encoded; ``headers`` are the ones signed."""
    canon = {k.lower().strip(): " ".join(str(v).split()) for k, v in headers.items()}
    signed = ";".join(sorted(canon))
    lines = "".join(f"{k}:{canon[k]}\n" for k in sorted(canon))
    return "\n".join((method, path, canonical_query(query), lines, signed, payload_sha256)), signed


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def authorization(
    creds: Credentials,
    region: str,
    amz_date: str,
    method: str,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    payload_sha256: str,
    service: str = "s3",
) -> str:
    """The Authorization header's value for a request whose signed headers are ``headers``
    (host, x-amz-date, x-amz-content-sha256 and any token among them)."""
    request, signed = canonical_request(method, path, query, headers, payload_sha256)
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(("AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(request.encode()).hexdigest()))
    key = _hmac(("AWS4" + creds.secret_key).encode(), amz_date[:8])
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope},SignedHeaders={signed},Signature={signature}"


def signed_headers(
    creds: Credentials,
    region: str,
    method: str,
    host: str,
    path: str,
    query: dict[str, str],
    payload_sha256: str,
    extra: dict[str, str],
    service: str = "s3",
) -> dict[str, str]:
    """A request's headers, signed now: host, x-amz-date, the session token if any, the
    ``extra`` ones (all signed), and Authorization."""
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    signed = {"host": host, "x-amz-date": amz_date, **extra}
    if creds.token:
        signed["x-amz-security-token"] = creds.token
    auth = authorization(creds, region, amz_date, method, path, query, signed, payload_sha256, service)
    return {**signed, "Authorization": auth}


def send(transport: Callable[[Request], Any], req: Request, key: str | None = None):
    """Send one signed request; its response when AWS said yes, else an S3Error with AWS's code
    (or "Network" when no answer came whole)."""
    try:
        resp = transport(req)
    except (OSError, http.client.HTTPException) as e:
        raise S3Error("Network", f"{req.method} {req.url}: {e}", key=key or None) from e
    status = getattr(resp, "status", None) or resp.getcode()
    if status >= 300:
        text = resp.read()
        resp.close()
        raise aws_error(status, text, key)
    return resp


# ---------------------------------------------------------------- the client


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    body: object = None  # bytes, a binary file, or None


def urlopen_transport(req: Request):
    """Send one request; the response (a file-like with .status, .headers). HTTPError is an answer too."""
    r = urllib.request.Request(req.url, data=req.body, method=req.method, headers=req.headers)  # type: ignore[arg-type]
    try:
        return urllib.request.urlopen(r, timeout=HTTP_TIMEOUT_S)
    except urllib.error.HTTPError as e:
        return e


@dataclass(frozen=True)
class Listed:
    key: str
    size: int
    etag: str
    modified: float  # unix time


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class S3:
    """One bucket's objects. ``transport``: sends a Request (tests count what goes through it)."""

    def __init__(
        self,
        bucket: str,
        region: str | None = None,
        endpoint: str | None = None,
        credentials: CredentialSource | None = None,
        transport: Callable[[Request], Any] = urlopen_transport,
    ):
        self.bucket = bucket
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.endpoint = (endpoint if endpoint is not None else os.environ.get("AWS_ENDPOINT_URL_S3") or "").rstrip("/")
        self.credentials = credentials or CredentialSource()
        self.transport = transport

    def _url(self, key: str) -> tuple[str, str, str]:
        """(scheme://host, host, the encoded path) of an object (key "" : the bucket)."""
        if self.endpoint:  # path-style: the sandbox's moto server
            parts = urllib.parse.urlsplit(self.endpoint)
            base = parts.path.rstrip("/")
            return f"{parts.scheme}://{parts.netloc}", parts.netloc, quote_path(f"{base}/{self.bucket}/{key}")
        host = f"{self.bucket}.s3.{self.region}.amazonaws.com"
        return f"https://{host}", host, quote_path(f"/{key}")

    def _call(
        self,
        method: str,
        key: str,
        query: dict[str, str] | None = None,
        body=None,
        payload_sha256: str = EMPTY_SHA256,
        extra: dict[str, str] | None = None,
    ):
        query = query or {}
        origin, host, path = self._url(key)
        headers = signed_headers(
            self.credentials.get(),
            self.region,
            method,
            host,
            path,
            query,
            payload_sha256,
            {"x-amz-content-sha256": payload_sha256, **(extra or {})},
        )
        url = origin + path + (f"?{canonical_query(query)}" if query else "")
        return send(self.transport, Request(method, url, headers, body), key)

    def put_file(self, key: str, path: str) -> None:
        """Upload a file, streamed from disk (its sha256 read first: the signature covers the body)."""
        digest = file_sha256(path)
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            extra = {"content-length": str(size), "content-type": OCTETS}
            self._call("PUT", key, body=f, payload_sha256=digest, extra=extra).close()

    def put_bytes(self, key: str, data: bytes) -> None:
        extra = {"content-length": str(len(data)), "content-type": OCTETS}
        self._call("PUT", key, body=data, payload_sha256=hashlib.sha256(data).hexdigest(), extra=extra).close()

    def get_file(self, key: str, path: str) -> int:
        """Download an object to path (written beside under a temporary name, then renamed); its size."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.part-{os.getpid()}"
        resp = self._call("GET", key)
        n = 0
        try:
            with open(tmp, "wb") as f:
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    n += len(chunk)
            os.replace(tmp, path)
        except OSError as e:
            raise S3Error("Network", f"reading {key}: {e}", key=key) from e
        finally:
            resp.close()
            if os.path.exists(tmp):
                os.unlink(tmp)
        return n

    def get_bytes(self, key: str) -> bytes:
        resp = self._call("GET", key)
        try:
            return resp.read()
        finally:
            resp.close()

    def list(self, prefix: str) -> Iterator[Listed]:
        """Every object under prefix (ListObjectsV2, page after page)."""
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            resp = self._call("GET", "", query)
            try:
                root = ET.fromstring(resp.read())
            except ET.ParseError as e:
                raise S3Error("BadResponse", f"listing {prefix}: {e}") from e
            finally:
                resp.close()
            for c in root.iter(f"{_NS}Contents"):
                yield Listed(
                    c.findtext(f"{_NS}Key") or "",
                    int(c.findtext(f"{_NS}Size") or 0),
                    (c.findtext(f"{_NS}ETag") or "").strip('"'),
                    _parse_modified(c.findtext(f"{_NS}LastModified") or ""),
                )
            token = root.findtext(f"{_NS}NextContinuationToken")
            if root.findtext(f"{_NS}IsTruncated") != "true" or not token:
                return

    def delete(self, key: str) -> None:
        self._call("DELETE", key).close()


def _parse_modified(text: str) -> float:
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def aws_error(status: int, body: bytes, key: str | None) -> S3Error:
    code, message = f"HTTP{status}", body[:200].decode(errors="replace").strip() or "no message"
    try:
        root = ET.fromstring(body)  # S3's <Error>, or a query API's <ErrorResponse><Error> (namespaced)
        code = root.findtext("Code") or root.findtext(".//{*}Code") or code
        message = root.findtext("Message") or root.findtext(".//{*}Message") or message
    except ET.ParseError:
        if status == 404:
            code = "NoSuchKey"  # a HEAD-like answer with no body
    return S3Error(code, message, status, key or None)
