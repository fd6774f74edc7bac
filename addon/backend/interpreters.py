"""Finding Python interpreters that could run the worker (no bpy: runs on a thread)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from .setup import venv_python

PROBE = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('ppd_core') else 3)"


def resolve(python: str) -> str:
    """The interpreter file a setting names: a path, or a bare name on PATH (as Check finds it).
    Raises ValueError with the fix when there is none."""
    python = python.strip()
    if not python:
        raise ValueError("No Python interpreter set: open Preferences > Add-ons > Depth from Image and use "
                         "Set up backend (or Detect)")
    if os.path.isdir(python):
        raise ValueError(f"The Python interpreter is a folder: {python}; choose the python executable inside "
                         f"it ({os.path.join(python, 'Scripts' if os.name == 'nt' else 'bin', 'python')})")
    if os.sep not in python and (os.altsep is None or os.altsep not in python):
        found = shutil.which(python)
        if found is None:
            raise ValueError(f"Python interpreter not found: {python} is not on PATH; set its full path in the "
                             "add-on preferences")
        return found
    if not os.path.isfile(python):
        raise ValueError(f"Python interpreter not found: {python} (set it in the add-on preferences)")
    return python


def candidate_interpreters(setup_venv: str | None = None, environ: dict | None = None) -> list:
    """Existing interpreters, most likely first: the set-up environment, the active venv or
    conda environment, then python3 / python on PATH (not the Microsoft Store alias).
    Duplicates are dropped."""
    environ = os.environ if environ is None else environ
    found = []
    if setup_venv:
        found.append(venv_python(setup_venv))
    for variable in ("VIRTUAL_ENV", "CONDA_PREFIX"):
        if environ.get(variable):
            found.append(venv_python(environ[variable]))
    for name in ("python3", "python"):
        path = shutil.which(name, path=environ.get("PATH"))
        if path and "WindowsApps" not in path:  # Windows' alias that only offers the Microsoft Store
            found.append(path)
    unique = []
    for path in found:
        # abspath, not realpath: a venv's python is a symlink to its base, yet a different environment.
        if os.path.isfile(path) and os.path.abspath(path) not in {os.path.abspath(p) for p in unique}:
            unique.append(path)
    return unique


def has_worker_package(python: str, timeout: float = 15.0) -> bool:
    """True when `python` can import ppd_core (a quick probe, not the full handshake)."""
    try:
        # A neutral folder: `-c` puts the working folder on sys.path.
        done = subprocess.run([python, "-c", PROBE], capture_output=True, timeout=timeout, check=False,
                              cwd=tempfile.gettempdir())
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def detect(setup_venv: str | None = None) -> tuple:
    """(the first interpreter that has Depth from Image installed, or "" when none has;
    every candidate with whether it has it)."""
    report = [(path, has_worker_package(path)) for path in candidate_interpreters(setup_venv)]
    best = next((path for path, ok in report if ok), "")
    return best, report
