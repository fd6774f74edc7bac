"""Downloading a released weight file from the Hugging Face hub, with byte progress.

Into the Hugging Face cache, huggingface-hub does the transfer; while it runs, the size of its
partial file (`*.incomplete` in the cache's blobs) is the progress. Into a folder (`ppd-weights
download --dir`, the Blender add-on's "Download weights") the file is fetched here instead, from
the URL and ETag huggingface-hub resolves: since huggingface-hub 1.0 every download starts over
(each process writes its own temporary file), while a multi-GB file on a home connection must
resume where it stopped. The partial file is kept as `.<name>.<etag hash>.part` beside the final
name, the next run asks only for the rest (an HTTP Range request) when the hub still serves the
same ETag, and the finished file is checked against the size the hub gave before it takes its
name; a partial file of another ETag (an older revision) is removed, never continued. The
token goes only to the hub's own host: the file itself usually comes from a signed CDN URL,
which must not see it (as huggingface-hub does).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlsplit

from huggingface_hub import constants as hub_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.utils import build_hf_headers
from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

from ..errors import PPDError, WeightsMissingError, brief
from ..progress import ProgressCallback, report
from ..weight_sources import DOWNLOAD_HINT, WeightSource, licence_notice

log = logging.getLogger(__name__)

READ_BYTES = 1 << 20
TIMEOUT_S = 60.0
REACH_TIMEOUT_S = 5.0
HEARTBEAT_S = 2.0
"""Seconds between progress reports while a download runs (the worker's client treats a
long silence as a hung worker, and a weights file takes minutes to arrive)."""


@dataclass(frozen=True)
class Transfer:
    """How far one file's download is."""

    name: str
    done: int                   # bytes on disk so far (a resumed download starts above 0)
    total: Optional[int]        # the file's size, when the hub said
    speed: float                # bytes per second since the last report

    def describe(self) -> str:
        total = f" of {_size(self.total)}" if self.total else ""
        return f"{self.name}: {_size(self.done)}{total}, {self.speed / 1e6:.1f} MB/s"


def _size(count: int) -> str:
    return f"{count / 1e9:.2f} GB" if count >= 1e9 else f"{count / 1e6:.0f} MB"


def _partial_bytes(repo: str) -> int:
    """Bytes of a cache download in progress: the `.incomplete` files huggingface-hub writes."""
    root = Path(hub_constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "blobs"
    return sum(path.stat().st_size for path in root.glob("*.incomplete") if path.is_file())


def _file_size(repo: str, filename: str) -> Optional[int]:
    try:
        return get_hf_file_metadata(hf_hub_url(repo, filename)).size
    except Exception:  # the size only decorates the progress; the download itself reports failures
        return None


def download_source(source: WeightSource, folder: Optional[Path] = None, *,
                    on_progress: Optional[ProgressCallback] = None,
                    on_transfer: Optional[Callable[[Transfer], None]] = None) -> Path:
    """Download `source` into the Hugging Face cache, or into `folder` under the file's folder
    name (moge2.pt, not the hub's model.pt), resuming a partial one there; report the bytes
    every HEARTBEAT_S seconds. A Cancelled raised by a callback stops the download; nothing
    partial ever has the final name."""
    repo = source.repo()
    notice = licence_notice(source)
    if notice:  # before the bytes arrive, on the terminal (logging's last resort) or the worker's log events
        log.warning(notice)
    report(on_progress, "download", 0.0, f"downloading {source.name} from https://huggingface.co/{repo} "
                                         f"({source.licence})")
    try:
        check_reachable()
        with _quiet_hub_retries():
            if folder is None:
                path = _into_cache(source, on_progress, on_transfer)
            else:
                path = _into_folder(source, Path(folder), on_progress, on_transfer)
    except PPDError:  # Cancelled from a callback
        raise
    except Exception as exc:  # the hub's, urllib's and the file system's errors: one line
        raise WeightsMissingError(f"could not download {source.name} from https://huggingface.co/{repo}: "
                                  f"{download_problem(exc)}") from None
    report(on_progress, "download", 1.0, f"downloaded {source.name}")
    return path


def check_reachable(timeout: float = REACH_TIMEOUT_S) -> None:
    """Raise `ConnectionError` at once when the hub's host (or the proxy to it) cannot be
    reached: without this, huggingface-hub retries for about half a minute before it says so."""
    endpoint = urlsplit(hub_constants.ENDPOINT)
    target = endpoint
    proxy = urllib.request.getproxies().get(endpoint.scheme)
    if proxy and not urllib.request.proxy_bypass(endpoint.hostname or ""):
        target = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        socket.create_connection((target.hostname, port), timeout=timeout).close()
    except OSError as error:
        via = "" if target is endpoint else f" through the proxy {target.hostname}:{port}"
        raise ConnectionError(
            f"cannot reach {hub_constants.ENDPOINT}{via} ({error.strerror or error}): no network? Fetch the weights "
            "where there is one (`ppd-weights download --dir DIR`), then pass --weights DIR (or set PPD_WEIGHTS)"
        ) from None


class _Reporter:
    """Turns a growing byte count into progress reports at most every HEARTBEAT_S seconds."""

    def __init__(self, name: str, total: Optional[int], done: int, on_progress, on_transfer) -> None:
        self.name, self.total = name, total
        self.on_progress, self.on_transfer = on_progress, on_transfer
        self.last_bytes, self.last_time = done, time.monotonic()

    def __call__(self, done: int, force: bool = False) -> None:
        """Report `done` bytes if HEARTBEAT_S has passed since the last report, or now when `force`."""
        now = time.monotonic()
        if not force and now - self.last_time < HEARTBEAT_S:
            return
        transfer = Transfer(self.name, done, self.total, max(0.0, (done - self.last_bytes) / max(now - self.last_time,
                                                                                                 1e-9)))
        self.last_bytes, self.last_time = done, now
        report(self.on_progress, "download", done / self.total if self.total else 0.0,
               f"downloading {transfer.describe()}")
        if self.on_transfer is not None:
            self.on_transfer(transfer)


def _origin(url: str) -> tuple[str, str]:
    """The scheme and host:port of `url`: two URLs with the same origin reach the same server."""
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _on_hub(url: str) -> bool:
    """Whether `url` is on the hub endpoint's own host and port, the only place the token is for."""
    return _origin(url) == _origin(hub_constants.ENDPOINT)


class _TokenStaysOnHub(urllib.request.HTTPRedirectHandler):
    """Follows redirects like urllib, which would carry the Authorization header to any host,
    but drops it when the redirect leaves the hub's host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        request = super().redirect_request(req, fp, code, msg, headers, newurl)
        if request is not None and not _on_hub(request.full_url):
            request.remove_header("Authorization")
        return request


def _request(url: str, start: int) -> urllib.request.Request:
    """A GET of `url` from byte `start` on, with huggingface-hub's headers; the token only for the hub's host."""
    headers = {key: value for key, value in build_hf_headers().items()
               if key.lower() != "authorization" or _on_hub(url)}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.Request(url, headers=headers)


def _partial_file(folder: Path, name: str, etag: Optional[str]) -> Path:
    """Where the download of `name` at `etag` collects, other partial files of `name` removed:
    an older revision's bytes must not be continued with this one's."""
    tag = hashlib.sha256((etag or "").encode()).hexdigest()[:16]
    part = folder / f".{name}.{tag}.part"
    for stale in folder.glob(f".{name}.*part"):
        if stale != part:
            stale.unlink()
    return part


def _into_folder(source: WeightSource, folder: Path, on_progress, on_transfer) -> Path:
    """The file fetched into `folder`, resuming its partial file when it is of the same ETag."""
    metadata = get_hf_file_metadata(hf_hub_url(source.repo(), source.repo_filename))
    folder.mkdir(parents=True, exist_ok=True)
    final, part = folder / source.name, _partial_file(folder, source.name, metadata.etag)
    start = part.stat().st_size if part.exists() else 0
    if metadata.size is not None and start > metadata.size:
        start = 0  # not this file's bytes
    reporter = _Reporter(source.name, metadata.size, start, on_progress, on_transfer)
    opener = urllib.request.build_opener(_TokenStaysOnHub)
    with opener.open(_request(metadata.location, start), timeout=TIMEOUT_S) as response:
        if start and response.status != 206:  # the server sent the whole file: start over
            start = 0
        done = start
        with part.open("ab" if start else "wb") as out:
            for chunk in iter(lambda: response.read(READ_BYTES), b""):
                out.write(chunk)
                done += len(chunk)
                reporter(done)
    reporter(done, force=True)
    if metadata.size is not None and done != metadata.size:
        raise OSError(f"the download ended after {done} of {metadata.size} bytes; run it again to resume")
    os.replace(part, final)
    return final


def _into_cache(source: WeightSource, on_progress, on_transfer) -> Path:
    """hf_hub_download into the Hugging Face cache on a helper thread, its partial file watched."""
    repo = source.repo()
    outcome: dict = {}

    def fetch() -> None:
        try:
            outcome["path"] = Path(hf_hub_download(repo, source.repo_filename))
        except Exception as exc:  # re-raised on the caller's thread
            outcome["error"] = exc

    reporter = _Reporter(source.name, _file_size(repo, source.repo_filename), 0, on_progress, on_transfer)
    worker = threading.Thread(target=fetch, name=f"download {source.name}", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(HEARTBEAT_S)
        if worker.is_alive():
            reporter(_partial_bytes(repo), force=True)
    if "error" in outcome:
        raise outcome["error"]
    reporter(reporter.total or 0, force=True)
    return outcome["path"]


@contextlib.contextmanager
def _quiet_hub_retries():
    """huggingface-hub logs each of its connection retries as a warning; we report one line instead."""
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(level)


def download_problem(error: Exception) -> str:
    """A short reason for a failed download, without huggingface-hub's paragraph of advice."""
    if isinstance(error, LocalEntryNotFoundError):
        return "cannot reach the Hugging Face Hub (no network?) and the file is not cached; " + DOWNLOAD_HINT
    if isinstance(error, (GatedRepoError, RepositoryNotFoundError)):
        return "the Hub refused access (log in with `hf auth login` if the repository is gated)"
    text = str(error).strip()
    return brief(text.splitlines()[0], 200) if text else type(error).__name__
