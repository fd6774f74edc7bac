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


def chars_per_line(context: bpy.types.Context, fallback: int = 60) -> int:
    """About how many characters fit on a line of the region being drawn (the sidebar can
    be narrow or wide); `fallback` when there is no region (background mode)."""
    region = getattr(context, "region", None)
    if region is None or region.width <= 1:
        return fallback
    scale = context.preferences.system.ui_scale or 1.0  # 0 in background mode
    return max(20, int(region.width / (7.0 * scale)) - 4)
