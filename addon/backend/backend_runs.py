"""Short runs of the backend's own commands as tasks: the weights check and print exports (no bpy here).

Both run the backend's Python in a neutral folder (`-m` puts the working folder on
sys.path) and read one JSON line back: `ppd-weights where --json` says which model the
weights at hand make without loading torch; `ppd_core.print_export` writes a solid's STL or
3MF in millimetres with the project's writers and checks it as a slicer would.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Optional

from .tasks import Task, TaskFailed

WEIGHTS_MODULE = "ppd_core.model.weights"
PRINT_MODULE = "ppd_core.print_export"


def _json_run(task: Task, command: list, env: Optional[dict]) -> dict:
    """Run `command`; its last JSON object on stdout, or TaskFailed with its error line."""
    errors: list = []
    try:
        code, lines = task.run_process(command, on_error_line=errors.append, env=env, cwd=tempfile.gettempdir())
    except OSError as error:
        raise TaskFailed(f"cannot run {command[0]}: {error.strerror or error}") from None
    if code == 0:
        for line in reversed(lines):
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            if isinstance(answer, dict):
                return answer
    said = [line.strip() for line in errors if line.strip()]
    message = next((line[len("error: "):] for line in said if line.startswith("error: ")), None)
    raise TaskFailed(message or (said[-1] if said else f"{' '.join(command[1:3])} stopped (exit code {code})"))


def weights_check_command(python: str, folder: str) -> list:
    return [python, "-m", WEIGHTS_MODULE, "where", "--json", *(["--weights", folder] if folder else [])]


def start_weights_check(python: str, folder: str, env: Optional[dict] = None) -> Task:
    """Ask the backend which model the weights in `folder` (else the Hugging Face cache) make:
    the task's result is {"ready", "model", "folder", "files"} or {"ready": False, "problem"}."""
    command = weights_check_command(python, folder)
    return Task("weights-check", lambda task: _json_run(task, command, env)).start()


def start_print_export(python: str, solid_npz: str, targets: list, env: Optional[dict] = None) -> Task:
    """Write the solid in `solid_npz` to `targets` (.stl, .3mf) with the backend; the result is
    {"files", "size_mm", "printable", "check"}. The folder of `solid_npz` is removed at the end."""
    command = [python, "-m", PRINT_MODULE, solid_npz, *targets, "--json"]

    def work(task: Task) -> dict:
        try:
            return _json_run(task, command, env)
        finally:
            shutil.rmtree(os.path.dirname(solid_npz), ignore_errors=True)

    return Task("print-export", work).start()
