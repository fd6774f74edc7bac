"""Long messages in Blender's UI: a label never wraps, so a long error would be cut off."""

from __future__ import annotations

import textwrap

import bpy


def wrapped_label(layout: bpy.types.UILayout, text: str, icon: str = "NONE", width: int = 60) -> None:
    """`text` as several labels of at most `width` characters (a label never wraps itself,
    so a long message would be cut off); the icon on the first line, the rest indented."""
    lines = textwrap.wrap(text, width, break_on_hyphens=False) or [""]
    column = layout.column(align=True)
    for number, line in enumerate(lines):
        column.label(text=line, icon=icon if number == 0 else ("BLANK1" if icon != "NONE" else "NONE"))
