"""The add-on's live state, in one bottom module that imports no operators: the background
tasks by name, what the last Detect, Check, weights check, removal, download and export
said, and the one timer that finishes tasks on Blender's main thread.

Operators start work with `start_task(task, on_done)`; the rules of a task are in
`backend.tasks`. `on_done(task)` runs on the main thread once the task is done (it may touch
bpy), then the preferences and sidebars are redrawn. Answers that depend on the settings
carry the `settings.backend_key` they were made for (`FOR`), so no stale answer is shown.
"""

from __future__ import annotations

from typing import Callable, Optional

import bpy

from .backend.tasks import Task

POLL_S = 0.2
#: The latest task of each name: "setup", "download", "detect", "check", "remove",
#: "weights-check", "print-export".
TASKS: dict = {}
_ON_DONE: dict = {}
#: The last Check: the worker's handshake or its problem, for the settings in "for".
CHECK = {"for": None, "handshake": {}, "error": ""}
#: The last weights check (`ppd-weights where --json` in the backend), for the settings in "for".
WEIGHTS = {"for": None, "record": {}, "error": ""}
#: One-line outcomes the UI shows: Detect's report lines, the removal's and download's words,
#: the last print export's line and whether it went well.
NOTES = {"detect": [], "removal": "", "removal_ok": False, "download": "", "export": "", "export_ok": False}


def start_task(task: Task, on_done: Optional[Callable[[Task], None]] = None) -> Task:
    """Keep `task` as the latest of its name; call `on_done(task)` on the main thread when it ends."""
    TASKS[task.name] = task
    _ON_DONE[task.name] = (task, on_done)
    if not bpy.app.timers.is_registered(poll_tasks):
        bpy.app.timers.register(poll_tasks, first_interval=POLL_S)
    return task


def running(name: str) -> bool:
    """Whether the latest task `name` is still at work."""
    task = TASKS.get(name)
    return task is not None and not task.status().done


def status(name: str):
    """The latest task `name`'s status, or None when there was none."""
    task = TASKS.get(name)
    return task.status() if task is not None else None


def poll_tasks() -> Optional[float]:
    """The one timer: finish the tasks that are done (their `on_done`), redraw; None when idle."""
    for name, (task, on_done) in list(_ON_DONE.items()):
        if task.status().done:
            del _ON_DONE[name]
            if on_done is not None:
                on_done(task)
    redraw()
    return POLL_S if _ON_DONE else None


def pending() -> bool:
    """Whether a task still waits for its `on_done` (scripts and tests drive `poll_tasks` then)."""
    return bool(_ON_DONE)


def redraw() -> None:
    """Redraw the preferences and the 3D views' sidebars (where the add-on shows its state)."""
    window_manager = bpy.context.window_manager
    for window in window_manager.windows if window_manager is not None else ():
        for area in window.screen.areas:
            if area.type in ("PREFERENCES", "VIEW_3D"):
                area.tag_redraw()


def forget_answers() -> None:
    """Drop the Check's and the weights check's answers (the backend or weights changed)."""
    CHECK.update({"for": None, "handshake": {}, "error": ""})
    WEIGHTS.update({"for": None, "record": {}, "error": ""})


def reset() -> None:
    """The add-on is disabled: cancel every task, forget every answer, stop the timer."""
    for task in TASKS.values():
        task.cancel()
    TASKS.clear()
    _ON_DONE.clear()
    forget_answers()
    NOTES.update(detect=[], removal="", removal_ok=False, download="", export="", export_ok=False)
    if bpy.app.timers.is_registered(poll_tasks):
        bpy.app.timers.unregister(poll_tasks)
