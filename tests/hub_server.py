"""A stand-in for the Hugging Face hub on 127.0.0.1: the two requests huggingface-hub makes to
download a file (HEAD for its size and ETag, GET with an optional Range to resume), slowly
enough that progress, cancel and resume can be watched; optionally redirecting to a "CDN" on
another host (localhost instead of 127.0.0.1), as the real hub does. For the tests only."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

COMMIT = "0123456789abcdef0123456789abcdef01234567"
CHUNK = 64 * 1024


class FakeHub:
    """Serves `files` {"repo/id/filename": bytes} under /{repo}/resolve/{revision}/{filename};
    `ranges` records the Range header of every GET that sends bytes (None when absent), `gets`
    the (path, Authorization header) of every GET. The methods in `cdn_redirects` ("HEAD",
    "GET") are answered with a 302 to the same file under /cdn/ on localhost, with the size and
    ETag in the hub's X-Linked-* headers."""

    def __init__(self, files: dict, seconds_per_chunk: float = 0.01, cdn_redirects: tuple = ()) -> None:
        self.files = files
        self.seconds_per_chunk = seconds_per_chunk
        self.cdn_redirects = cdn_redirects
        self.ranges: list = []
        self.gets: list = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _file(self) -> Optional[bytes]:
                match = re.fullmatch(r"/(?:cdn/)?(.+)/resolve/[^/]+/(.+)", self.path.split("?")[0])
                return hub.files.get(f"{match.group(1)}/{match.group(2)}") if match else None

            def _redirected(self, data: bytes) -> bool:
                """Answer with a redirect to the CDN when this request is to be redirected."""
                if self.command not in hub.cdn_redirects or self.path.startswith("/cdn/"):
                    return False
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{hub.server.server_address[1]}/cdn{self.path}")
                self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Linked-Size", str(len(data)))
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True

            def _headers(self, data: bytes, status: int, start: int = 0) -> None:
                self.send_response(status)
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("Content-Length", str(len(data) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()

            def do_HEAD(self) -> None:
                data = self._file()
                if data is None:
                    self.send_error(404)
                elif not self._redirected(data):
                    self._headers(data, 200)

            def do_GET(self) -> None:
                hub.gets.append((self.path, self.headers.get("Authorization")))
                data = self._file()
                if data is None:
                    self.send_error(404)
                    return
                if self._redirected(data):
                    return
                requested = self.headers.get("Range")
                hub.ranges.append(requested)
                start = int(re.match(r"bytes=(\d+)-", requested).group(1)) if requested else 0
                self._headers(data, 206 if requested else 200, start)
                try:
                    for offset in range(start, len(data), CHUNK):
                        self.wfile.write(data[offset:offset + CHUNK])
                        self.wfile.flush()
                        time.sleep(hub.seconds_per_chunk)
                except (BrokenPipeError, ConnectionResetError):  # the client was stopped
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()
