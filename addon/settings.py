"""What the preferences mean for the backend: its folders and logs, the interpreter, the
worker's environment, and the key that says which settings an answer is for. Imports no
operators.
"""

from __future__ import annotations

import os

import bpy

from .backend import interpreters
from .backend.setup import backend_home

LOG_MAX_BYTES = 10_000_000
EXTENSION_DIR = os.path.dirname(os.path.abspath(__file__))


def addon_prefs(context: bpy.types.Context | None = None):
    """This add-on's preferences."""
    return (context or bpy.context).preferences.addons[__package__].preferences


def home() -> str:
    """The user's folder for the backend, the downloaded weights and the logs (outside the extension)."""
    return backend_home()


def backend_dir() -> str:
    return os.path.join(home(), "backend")


def setup_log_path() -> str:
    return os.path.join(home(), "setup.log")


def worker_log_path() -> str:
    """The worker log, appended to by every worker (`rotate_log` keeps it small)."""
    return os.path.join(home(), "worker.log")


def weights_target(prefs) -> str:
    """Where Download Weights puts the files: the Weights Folder when set, else the user's weights folder."""
    return bpy.path.abspath(prefs.weights_folder) if prefs.weights_folder else os.path.join(home(), "weights")


def rotate_log(path: str) -> None:
    """Move a log past LOG_MAX_BYTES to `path`.1; called only just before a new worker starts,
    as a running worker's client reads its crash lines back from the file it writes."""
    if os.path.isfile(path) and os.path.getsize(path) > LOG_MAX_BYTES:
        try:
            os.replace(path, path + ".1")
        except OSError:  # Windows: a closing worker still has it open; rotate another time
            pass


def interpreter(prefs) -> str:
    """The backend's interpreter file as set; ValueError with the fix when there is none."""
    return interpreters.resolve(bpy.path.abspath(prefs.python))


def worker_env(prefs) -> dict:
    """The worker's environment additions: the Weights Folder, and no downloads when Blender is offline."""
    env = {} if bpy.app.online_access else {"HF_HUB_OFFLINE": "1"}
    if prefs.weights_folder:
        env["PPD_WEIGHTS"] = bpy.path.abspath(prefs.weights_folder)
    return env


def backend_key(prefs) -> tuple:
    """What a handshake or a weights check is for: the Python as set in the preferences and the
    worker's environment (Weights Folder, online access). Cheap: the status block compares it
    on every draw."""
    return prefs.python, worker_env(prefs)
