"""Downloading a weight file from the link where its authors publish it (ppvd.pth: Google Drive).

Google Drive answers the link of a large file with an HTML page ("cannot scan this file for
viruses") whose form carries what it wants sent back to hand out the file; the form is sent
once, with the cookies of the first answer. A second page (a quota reached, the file taken
down) is said in one line with the way to fetch the file by hand. The bytes collect in a
partial file beside the final name, which the file takes only once it is whole and its keys
and shapes are those of the network (`weight_check`); a cancel or a failure removes it.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import urlencode, urljoin

from ..errors import CheckpointError, PPDError, WeightsMissingError, brief
from ..progress import ProgressCallback
from ..weight_sources import WeightSource, manual_steps
from .download import READ_BYTES, TIMEOUT_S, Transfer, _Reporter

PAGE_LIMIT = 1 << 20  # an HTML answer longer than this is not a confirmation page


class _ConfirmForm(HTMLParser):
    """The first form of a page: its action and hidden fields; and the page's title."""

    def __init__(self) -> None:
        super().__init__()
        self.action: Optional[str] = None
        self.fields: dict = {}
        self.title = ""
        self._in_title = self._form_done = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        values = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = values.get("action") or ""
        elif tag == "input" and self.action is not None and not self._form_done and values.get("name"):
            self.fields[values["name"]] = values.get("value") or ""
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._form_done = self._form_done or tag == "form"
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def _is_page(response) -> bool:
    return (response.headers.get_content_type() or "").startswith("text/html")


def _confirmed(opener, response, url: str):
    """The response that carries the file: `response` itself, or the answer to its confirmation form."""
    if not _is_page(response):
        return response
    page = _ConfirmForm()
    page.feed(response.read(PAGE_LIMIT).decode("utf-8", "replace"))
    response.close()
    if page.action is None:
        raise OSError(f"the link answered with a page ({' '.join(page.title.split()) or 'no title'}), not the file")
    target = urljoin(url, page.action) + "?" + urlencode(page.fields)
    confirmed = opener.open(urllib.request.Request(target), timeout=TIMEOUT_S)
    if _is_page(confirmed):
        confirmed.close()
        raise OSError("the download page did not hand out the file (its daily quota may be used up)")
    return confirmed


def download_published(source: WeightSource, folder: Path, *, on_progress: Optional[ProgressCallback] = None,
                       on_transfer: Optional[Callable[[Transfer], None]] = None) -> Path:
    """`source` fetched from `source.url` into `folder` under its name, checked; `WeightsMissingError`
    saying how to fetch it by hand when that fails, `CheckpointError` when the file is not the
    network's."""
    from .weight_check import check_weight_file  # loads torch: only once the bytes are there

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final, part = folder / source.name, folder / f".{source.name}.download.part"
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    try:
        try:
            with _confirmed(opener, opener.open(urllib.request.Request(source.url), timeout=TIMEOUT_S),
                            source.url) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                reporter = _Reporter(source.name, total, 0, on_progress, on_transfer)
                done = 0
                with part.open("wb") as out:
                    for chunk in iter(lambda: response.read(READ_BYTES), b""):
                        out.write(chunk)
                        done += len(chunk)
                        reporter(done)
                reporter(done, force=True)
            if total is not None and done != total:
                raise OSError(f"the download ended after {done} of {total} bytes")
        except PPDError:
            raise
        except Exception as error:  # urllib's, the page's and the file system's errors: one line
            text = re.sub(r"\s+", " ", str(error)).strip() or type(error).__name__
            raise WeightsMissingError(f"could not download {source.name} from {source.url}: {brief(text, 200)}; "
                                      f"{manual_steps(source)}") from None
        try:
            check_weight_file(part, source.name)
        except CheckpointError as error:
            raise CheckpointError(f"the file downloaded as {source.name} is not it: {error}") from None
        os.replace(part, final)
    finally:
        if part.exists():
            part.unlink()
    return final
