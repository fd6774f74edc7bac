"""Depth from Image: one photo to a mesh, point cloud or printable solid, inside Blender.

A thin client: the depth network runs in a worker process (`python -m ppd_core.worker`)
started with the interpreter set in the preferences; this add-on only talks to it
(`ppd_core.client`) and imports its result (`ppd_core.files.result_file`). Those modules
need only the standard library and numpy: the extension zip carries this project's wheel,
which Blender unpacks into its own Python (see build.py), and the backend's environment
installs the same wheel with its dependencies.
"""

import atexit

import bpy

from . import backend_ops, operators, panel, preferences, properties, session, weights_ops

MODULES = (backend_ops, weights_ops, preferences, properties, operators, panel)


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
    for module in reversed(MODULES):
        module.unregister()
