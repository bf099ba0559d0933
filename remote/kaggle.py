"""``--data kaggle:...``: the laptop asks Kaggle, the box downloads, the credential stays here.

Kaggle answers a download request made with the user's credential by
redirecting to a signed storage URL (docs/kaggle.md has the sources). The
laptop makes that one request itself, does not follow the redirect, and
hands only the signed URL to the box, inside the JSON plan on the stdin of
one SSH exec (as S3's presigned URLs are); the box downloads it with the URL
path of box/fetch.py (resume, cache, extract, Kaggle's layout
organized). The box's cache key comes from the Kaggle reference, never from
the signed URL, which changes every time.

Where Kaggle streams the file instead (no redirect), the laptop downloads it
into its own cache and pushes it with the incremental push; the box then
extracts it as if it had downloaded it.

No credential, token or key ever reaches the box: not in a file, not in an
environment variable, not on a command line. A redirect whose URL contains
the credential is refused.

Why ~350 lines: Kaggle's side of one protocol (the credential, the RPC, the
redirect refused, the laptop's own download and cache when there is no
redirect, the push) reads as one story; the box's half is box/fetch.py.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from box import fetch as boxfetch
from common.errors import CloudError, UsageError

from . import sync
from .datasource import KaggleSource, archive_kind

API_ENV = "TRAINBOX_KAGGLE_API"
DEFAULT_API = "https://api.kaggle.com"  # kagglesdk's PROD endpoint; RPCs under /v1/
UPLINK_ENV = "TRAINBOX_UPLINK_MBIT"
DEFAULT_UPLINK_MBIT = 20.0  # a typical home uplink; only used for the push-time estimate
TIMEOUT_S = 30
SETTINGS = "https://www.kaggle.com/settings"
CHUNK = 1 << 20


# ---------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credential:
    """The user's Kaggle credential: an access token (Bearer) or a legacy API key (basic auth)."""

    scheme: str  # "Bearer" or "Basic"
    secret: str = field(repr=False)  # the token, or the key
    username: str | None
    where: str  # where it was found, for messages

    def header(self) -> str:
        if self.scheme == "Bearer":
            return f"Bearer {self.secret}"
        return "Basic " + base64.b64encode(f"{self.username}:{self.secret}".encode()).decode()

    def secrets(self) -> list[str]:
        """Every form of the credential that must never leave the laptop except to Kaggle's API."""
        return [self.secret, self.header().split(" ", 1)[1]]


def _read_token(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return text or None


def find_credential(env: Mapping[str, str] | None = None, home: Path | None = None) -> Credential:
    """The credential the kaggle package would use, in its order, or UsageError naming every place looked in.

    1. an access token: ``KAGGLE_API_TOKEN`` (the token, or a file holding it),
       ``~/.kaggle/access_token``, ``~/.kaggle/access_token.txt``;
    2. a legacy API key: ``KAGGLE_USERNAME`` + ``KAGGLE_KEY``, else ``kaggle.json``
       in ``KAGGLE_CONFIG_DIR``, ``~/.kaggle/``, or ``$XDG_CONFIG_HOME/kaggle/``.
    (``kaggle auth login``'s OAuth refresh token is not read: it needs a call to mint a token.)
    """
    env = os.environ if env is None else env
    home = Path(env.get("HOME") or Path.home()) if home is None else home
    looked: list[str] = []

    value = env.get("KAGGLE_API_TOKEN")
    looked.append("KAGGLE_API_TOKEN")
    if value:
        if Path(value).expanduser().is_file():
            token = _read_token(Path(value).expanduser())
            if token:
                return Credential("Bearer", token, None, f"the file KAGGLE_API_TOKEN names ({value})")
        else:
            return Credential("Bearer", value.strip(), None, "KAGGLE_API_TOKEN")
    for name in ("access_token", "access_token.txt"):
        path = home / ".kaggle" / name
        looked.append(str(path))
        token = _read_token(path)
        if token:
            return Credential("Bearer", token, None, str(path))

    looked.append("KAGGLE_USERNAME/KAGGLE_KEY")
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return Credential("Basic", env["KAGGLE_KEY"], env["KAGGLE_USERNAME"], "KAGGLE_USERNAME/KAGGLE_KEY")
    dirs = [Path(env["KAGGLE_CONFIG_DIR"]).expanduser()] if env.get("KAGGLE_CONFIG_DIR") else []
    dirs += [home / ".kaggle", Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "kaggle"]
    for d in dirs:
        path = d / "kaggle.json"
        looked.append(str(path))
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
            return Credential("Basic", str(data["key"]), str(data["username"]), str(path))
        except (OSError, ValueError, KeyError, TypeError):
            raise UsageError(
                f'{path} is not a Kaggle API key file (expected {{"username": ..., "key": ...}})',
                f'download a new one from {SETTINGS} ("Create Legacy API Key")',
            ) from None
    raise UsageError(
        f"no Kaggle credentials on this laptop (looked in {', '.join(looked)})",
        f'make a token on {SETTINGS} ("Generate New Token") and save it in {home / ".kaggle" / "access_token"} '
        "or export KAGGLE_API_TOKEN; it stays on this laptop",
    )


# ---------------------------------------------------------------- the request


@dataclass
class Answer:
    """Kaggle's answer to a download request: a signed URL to hand over, or the file's bytes."""

    url: str | None = None  # the redirect's Location
    body: Any = None  # a streaming HTTP response, when Kaggle sent the file itself
    size: int | None = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects come back as HTTPError: the laptop keeps the Location and never fetches it."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def api_base(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return (env.get(API_ENV) or DEFAULT_API).rstrip("/")


def rpc(source: KaggleSource) -> tuple[str, dict]:
    """kagglesdk's RPC (service/method) and JSON body for downloading source."""
    if source.owner:
        body = {"ownerSlug": source.owner, "datasetSlug": source.name}
        if source.file:
            body["fileName"] = source.file
        return "datasets.DatasetApiService/DownloadDataset", body
    if source.file:
        return "competitions.CompetitionApiService/DownloadDataFile", {
            "competitionName": source.name,
            "fileName": source.file,
        }
    return "competitions.CompetitionApiService/DownloadDataFiles", {"competitionName": source.name}


def _kaggle_message(body: bytes) -> str:
    try:
        message = json.loads(body.decode()).get("message")
    except (ValueError, AttributeError, UnicodeDecodeError):
        message = None
    return f": {str(message)[:160]}" if message else ""


def request_download(source: KaggleSource, cred: Credential, api: str | None = None) -> Answer:
    """Ask Kaggle for source's download with cred, following no redirect.

    UsageError (exit 64): the credential refused (401), rules not accepted or no
    access (403), no such competition, dataset or file (404), a redirect that
    would carry the credential. CloudError (exit 69): Kaggle not reachable, or a
    server error.
    """
    api = api or api_base()
    method, body = rpc(source)
    req = urllib.request.Request(
        f"{api}/v1/{method}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "*/*",
            "User-Agent": "trainbox",
            "Authorization": cred.header(),
        },
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        resp = opener.open(req, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        with e:
            if 300 <= e.code < 400 and e.headers.get("Location"):
                url = urllib.parse.urljoin(req.full_url, e.headers["Location"])
                if any(s in url for s in cred.secrets()):
                    raise UsageError(
                        f"Kaggle's download link for {source} carries your credential; trainbox will not hand it to the box",
                        f"download it on the laptop (`kaggle {'datasets' if source.owner else 'competitions'} download ...`) "
                        "and pass the folder as --data",
                    ) from None
                return Answer(url=url)
            raise _refused(source, cred, e.code, _kaggle_message(e.read())) from None
    except (urllib.error.URLError, OSError) as e:
        why = getattr(e, "reason", e)
        raise CloudError(
            f"cannot reach Kaggle at {api} ({why})", f"check this laptop's network; {API_ENV} names another endpoint"
        ) from None
    ctype = resp.headers.get("Content-Type", "")
    if "application/json" in ctype:
        with resp:
            raise CloudError(
                f"Kaggle answered the download of {source} with no file{_kaggle_message(resp.read())}",
                "try again later; if it persists, `kaggle competitions download` shows what Kaggle says",
            )
    length = resp.headers.get("Content-Length")
    return Answer(body=resp, size=int(length) if length and length.isdigit() else None)


def _refused(source: KaggleSource, cred: Credential, code: int, said: str) -> Exception:
    what = f"dataset {source.ref}" if source.owner else f"competition {source.name}"
    if code == 401:
        return UsageError(
            f"Kaggle refused the credential from {cred.where} (401{said})",
            f"make a new token on {SETTINGS} and save it where trainbox looked",
        )
    if code == 403 and not source.owner:
        return UsageError(
            f"Kaggle refused the download of {source} (403{said}): the competition's rules are not "
            f"accepted for this account ({cred.username or cred.where})",
            f"accept them on https://www.kaggle.com/c/{source.name}/rules, then run this again",
        )
    if code == 403:
        return UsageError(
            f"Kaggle refused the download of {source} (403{said}): this account may not read {what}",
            f"open https://www.kaggle.com/datasets/{source.ref} signed in as that account",
        )
    if code == 404:
        listing = f"kaggle {'datasets' if source.owner else 'competitions'} files {source.ref}"
        missing = f"{what} has no file {source.file}" if source.file else f"Kaggle has no {what}"
        return UsageError(f"{missing} (404{said})", f"check the name (`{listing}` lists its files)")
    return CloudError(f"Kaggle answered the download of {source} with HTTP {code}{said}", "try again later")


# ---------------------------------------------------------------- the laptop's cache


def cache_dir() -> Path:
    """The machine's cache (common.paths.cache_dir: ``TRAINBOX_CACHE``, else the user cache dir)."""
    from common import paths

    return paths.cache_dir()


def local_copy(source: KaggleSource) -> Path:
    return cache_dir() / "kaggle" / source.key / source.archive_name


def download_here(answer: Answer, dest: Path, quiet: bool, say: Callable[[str], None]) -> int:
    """Stream Kaggle's body into dest (via dest.partial, renamed when whole); the byte count."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.parent.with_name(dest.parent.name + ".partial")  # outside the folder that is pushed
    got, started, last = 0, time.monotonic(), 0.0
    try:
        with answer.body as resp, open(partial, "wb") as f:
            while True:
                chunk = resp.read(CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                got += len(chunk)
                now = time.monotonic()
                if not quiet and now - last >= 1.0:
                    last = now
                    say(_progress_line(dest.name, got, answer.size, now - started))
    except (OSError, urllib.error.URLError) as e:
        partial.unlink(missing_ok=True)
        raise CloudError(
            f"the download of {dest.name} from Kaggle broke off at {boxfetch.human(got)} ({e})", "run it again"
        ) from None
    if answer.size is not None and got != answer.size:
        partial.unlink(missing_ok=True)
        raise CloudError(
            f"the download of {dest.name} from Kaggle stopped at {boxfetch.human(got)} of "
            f"{boxfetch.human(answer.size)}",
            "run it again",
        )
    if not quiet:
        say(_progress_line(dest.name, got, answer.size, time.monotonic() - started) + ", done")
    os.replace(partial, dest)
    return got


def _progress_line(name: str, got: int, total: int | None, took: float) -> str:
    rate = got / max(took, 1e-6)
    line = f"download {name} to this laptop: {boxfetch.human(got)}"
    if total:
        line += f" of {boxfetch.human(total)} ({100 * got / total:.0f}%)"
    return line + f", {boxfetch.human(rate)}/s"


def uplink_mbit() -> float:
    try:
        value = float(os.environ.get(UPLINK_ENV) or DEFAULT_UPLINK_MBIT)
    except ValueError:
        raise UsageError(
            f"{UPLINK_ENV}={os.environ[UPLINK_ENV]!r} is not a number", "give your uplink in Mbit/s, e.g. 20"
        ) from None
    return value if value > 0 else DEFAULT_UPLINK_MBIT


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


# ---------------------------------------------------------------- the fetch


def _box_has(conn, workdir: str, key: str) -> bool:
    from .connection import run
    from .fetch_on_box import data_root

    d = shlex.quote(f"{data_root(workdir)}/{key}")
    return (
        run(conn, f"[ -e {d}/{boxfetch.ENTRY} ] && echo yes; true", "reading the box's dataset cache").strip() == "yes"
    )


def fetch_kaggle(
    conn,
    source: KaggleSource,
    workdir: str,
    python: str,
    code_dir: str,
    quiet: bool = False,
    say: Callable[[str], None] = lambda s: None,
    env: Mapping[str, str] | None = None,
):
    """Have source on the box (fetch.Fetched): already cached, fetched by the box from a signed URL,
    or downloaded here and pushed."""
    from . import fetch_on_box as fetch

    plan = fetch.base_plan("url", workdir, python, code_dir, quiet)
    plan.update(
        key=source.key,
        source=str(source),
        url=None,
        sha256=None,
        kind=archive_kind(source.archive_name),
        name=source.archive_name,
        expand_inner=True,
    )
    if _box_has(conn, workdir, source.key):
        return fetch.fetched(fetch.run_box(conn, python, plan, say))
    here = local_copy(source)
    if not here.is_file():
        cred = find_credential(env)
        answer = request_download(source, cred, api_base(env))
        if answer.url is not None:
            say(
                f"{source}: Kaggle handed out a signed download link; the box downloads it (your credential stays here)"
            )
            plan["url"] = answer.url
            return fetch.fetched(fetch.run_box(conn, python, plan, say), urls=1)
        say(f"{source}: Kaggle sent the file itself, with no link the box could use: downloading it to this laptop")
        download_here(answer, here, quiet, say)
    else:
        say(f"{source}: using this laptop's copy {here}")
    size = here.stat().st_size
    rate = uplink_mbit()
    say(
        f"{source} came to this laptop ({boxfetch.human(size)} in {here.parent}); pushing it to the box takes about "
        f"{duration(size * 8 / (rate * 1e6))} at {rate:g} Mbit/s ({UPLINK_ENV} sets your uplink)"
    )
    incoming = f"{fetch.data_root(workdir)}/{boxfetch.INCOMING}/{source.key}"
    started = time.monotonic()
    pushed = sync.push(conn, here.parent, incoming)
    took = time.monotonic() - started
    say(
        f"{source}: pushed {boxfetch.human(pushed.send_bytes)} in {duration(took)}"
        + (f" ({boxfetch.human(pushed.send_bytes / took)}/s)" if pushed.send_bytes and took > 0 else "")
    )
    plan["archive"] = f"{incoming}/{source.archive_name}"
    got = fetch.fetched(fetch.run_box(conn, python, plan, say))
    got.how = "pushed from this laptop"
    return got
