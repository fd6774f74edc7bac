"""The worker side of the wire format: JSON lines in, JSON lines out (docs/protocol.md).

Requests are parsed here, events written here, and the handshake (who the worker is, what
torch can run on) is assembled here, without loading a model. The protocol version is the
client's (`ppd_core.client.PROTOCOL_VERSION`): one number for both ends.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import sys
import threading
from typing import Any, BinaryIO, Optional

import ppd_core
from ppd_core.client import PROTOCOL_VERSION
from ppd_core.errors import BadInputError

#: Error kinds of job errors; the client adds worker_crashed and timeout of its own.
ERROR_KINDS = ("bad_input", "weights_missing", "out_of_memory", "cancelled", "internal")
MAX_REQUEST_BYTES = 1 << 20
"""Longest request line read (1 MiB; a job is a few hundred bytes): a longer one is skipped
to its end and answered with an error, so no line can take the worker's memory."""


def one_line(text: str) -> str:
    """Collapse a message to one line: events carry short messages, tracebacks go to the log."""
    return " ".join(str(text).split())


def error_event(job_id: Optional[str], kind: str, message: str) -> dict:
    """An error event; `message` must already be one line."""
    return {"type": "error", "id": job_id, "kind": kind, "message": message}


class EventWriter:
    """Writes one JSON object per line to a private copy of the original stdout."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.broken = False

    def emit(self, event: dict) -> None:
        """Send one event; a closed pipe (parent gone) is remembered, not raised."""
        data = (json.dumps(event, default=_jsonable) + "\n").encode("utf-8")
        with self._lock:
            if self.broken:
                return
            try:
                self._stream.write(data)
                self._stream.flush()
            except (OSError, ValueError):
                self.broken = True


def _jsonable(value: Any) -> Any:
    """Turn numpy scalars/arrays and paths into plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return repr(value)


def torch_problem() -> Optional[str]:
    """Return why torch cannot be used in this interpreter, or None when it imports."""
    pip = f'"{sys.executable}" -m pip install torch'
    if importlib.util.find_spec("torch") is None:
        return f"torch is not installed in {sys.executable}; install it with: {pip} (see pytorch.org for GPU builds)"
    try:
        import torch  # noqa: F401  (imported here to test that it loads)
    except Exception as exc:  # a broken install raises anything from OSError to AttributeError
        logging.getLogger("ppd_core.worker").exception("importing torch failed")
        return (
            f"torch is installed in {sys.executable} but does not load ({one_line(exc)}); "
            f"reinstall it: {pip} --force-reinstall"
        )
    return None


def handshake_event() -> dict:
    """The first event: who this worker is and what it can run on (no model is loaded)."""
    import torch  # only once `torch_problem` said it loads

    from ppd_core.model.device import list_devices  # loads torch too
    from ppd_core.model.precision_check import expected_precisions
    from ppd_core.model.weights import weights_record

    return {
        "type": "handshake",
        "protocol": PROTOCOL_VERSION,
        "version": ppd_core.__version__,
        "torch": torch.__version__,
        "devices": list_devices(),
        "precision": expected_precisions(),  # device id -> {"auto": what "auto" runs, "why"}, checks cached so far
        "pid": os.getpid(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "weights": weights_record(),  # which model the weights at hand make (no download), or the problem
    }


def parse_request(line: bytes) -> dict:
    """Decode one stdin line into a job or cancel request; BadInputError says what is wrong."""
    try:
        request = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadInputError(f"request is not a JSON line ({one_line(exc)})") from exc
    except RecursionError:  # thousands of nested brackets
        raise BadInputError("request is nested too deeply to be a job or a cancel") from None
    if not isinstance(request, dict):
        raise BadInputError("request is not a JSON object")
    kind = request.get("type")
    job_id = request.get("id")
    if job_id is not None and not isinstance(job_id, str):
        raise BadInputError(f"request id must be a string, not {job_id!r}")
    if kind == "cancel":
        return request
    if kind != "job":
        raise BadInputError(f"unknown request type {kind!r} (expected 'job' or 'cancel')")
    if not job_id:
        raise BadInputError("job has no id")
    if not isinstance(request.get("photo"), str) or not request["photo"]:
        raise BadInputError(f"job {job_id} has no photo path")
    outputs = request.get("outputs")
    if not isinstance(outputs, dict) or not outputs or not all(isinstance(v, str) for v in outputs.values()):
        raise BadInputError(f"job {job_id} needs 'outputs': an object of format -> file path")
    keep = request.get("keep", [])
    if not isinstance(keep, list) or not all(isinstance(kind, str) and kind in outputs for kind in keep):
        raise BadInputError(f"job {job_id} has 'keep' that is not a list of kinds among its outputs")
    if not isinstance(request.get("options", {}), dict):
        raise BadInputError(f"job {job_id} has 'options' that is not an object")
    return request


def guess_id(line: bytes) -> Optional[str]:
    """The id of a request that failed validation, when it has one, so the error finds its job."""
    try:
        job_id = json.loads(line).get("id")
    except (ValueError, AttributeError, RecursionError):
        return None
    return job_id if isinstance(job_id, str) else None
