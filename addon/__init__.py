"""Depth from Image: one photo to a mesh, point cloud or printable solid, inside Blender.

A thin client: the depth network runs in a worker process (`python -m ppd_core.worker`)
started with the interpreter set in the preferences; this add-on only talks to it
(`ppd_core.client`) and imports its result (`ppd_core.files.result_file`). Those modules
need only the standard library and numpy: the extension zip carries a wheel of them that
Blender unpacks into its own Python (see build.py), and the backend's environment installs
the project's full wheel with its dependencies.

Layout, imports running one way (down this list): the UI (`panel`, `preferences`, `status`,
`ui_text`) → the operators (`run_ops`, `backend_ops`, `weights_ops`, `print_ops`) → the run
and the state (`session`, `state`, `settings`, `properties`) → `scene/` (creates Blender data)
and `backend/` (no bpy: set-up, interpreters, downloads, background tasks) → ppd_core.
"""

import atexit

import bpy

from . import backend_ops, panel, preferences, print_ops, properties, run_ops, session, state, weights_ops

MODULES = (backend_ops, weights_ops, print_ops, preferences, properties, run_ops, panel)


@bpy.app.handlers.persistent
def _drop_run_on_load(_filepath) -> None:
    """A new .blend replaces the scene the run would import into: drop the run."""
    session.SESSION.abandon(bpy.context)


def register() -> None:
    for module in MODULES:
        module.register()
    bpy.app.handlers.load_pre.append(_drop_run_on_load)
    atexit.register(session.SESSION.shutdown)


def unregister() -> None:
    atexit.unregister(session.SESSION.shutdown)
    if _drop_run_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_drop_run_on_load)
    session.SESSION.shutdown()
    state.reset()
    for module in reversed(MODULES):
        module.unregister()
