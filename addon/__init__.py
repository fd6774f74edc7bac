"""Depth from Image: one photo to a mesh, point cloud or printable solid, inside Blender.

A thin client: the depth network runs in a worker process (`python -m ppd_core.worker`)
started with the interpreter set in the preferences; this add-on only talks to it
(ppd_client.py, a copy of ppd_core/client.py made by build.py) and imports its result.
"""

import atexit

import bpy

from . import operators, panel, preferences, properties, runner

MODULES = (preferences, properties, operators, panel)


@bpy.app.handlers.persistent
def _drop_run_on_load(_filepath) -> None:
    """A new .blend replaces the scene the run would import into: drop the run."""
    runner.SESSION.abandon(bpy.context)


def register() -> None:
    for module in MODULES:
        module.register()
    bpy.app.handlers.load_pre.append(_drop_run_on_load)
    atexit.register(runner.SESSION.shutdown)


def unregister() -> None:
    atexit.unregister(runner.SESSION.shutdown)
    if _drop_run_on_load in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_drop_run_on_load)
    runner.SESSION.shutdown()
    for module in reversed(MODULES):
        module.unregister()
