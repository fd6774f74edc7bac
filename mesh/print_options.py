"""The print solid's shape words and limits: hangers, filament colours, and the checks that need
no depth map. Standard library only, like `mesh.limits`, so that the options table (the
command's, the worker's and the Blender add-on's) can refuse a bad combination before any work.
"""

from __future__ import annotations

import math
import re
from typing import Optional

HANGERS = ("none", "hole", "keyhole")
"""What the back of a flat relief offers a wall: nothing, a round hole through the solid near its
top edge (a nail or a string), or a keyhole slot for a screw head in its back."""

HOLE_MM = 5.0
"""Diameter of the hanging hole."""
KEYHOLE_HEAD_MM, KEYHOLE_SHANK_MM = 9.0, 4.5
"""Keyhole: the screw head enters a round opening this wide and slides up a slot as wide as
its shank, behind whose lip it hangs (a 4 mm wood screw: head about 8 mm, shank 4 mm)."""
KEYHOLE_SLOT_MM = 10.0
"""How far the head slides up from the opening's centre to where it hangs."""
KEYHOLE_LIP_MM, KEYHOLE_HEAD_ROOM_MM = 1.5, 2.5
"""The slot's lip at the back, and the room above it for the screw head."""
KEYHOLE_ROOF_MM = 1.0
"""Solid left above the keyhole pocket, so it does not show through the relief."""
KEYHOLE_BASE_MM = KEYHOLE_LIP_MM + KEYHOLE_HEAD_ROOM_MM + KEYHOLE_ROOF_MM
"""The thinnest base that holds a keyhole pocket under its roof."""
HANGER_WALL_MM = 3.0
"""Least solid between a hanger and the outline."""

MAX_BEND_DEG = 180.0
"""The most a curved panel bends: a half cylinder."""

FILAMENT_COUNTS = (2, 8)
"""How many filaments a colour relief may be quantised to (multi-material units hold 4 to 8)."""

FILAMENT_COLOURS: dict[str, str] = {
    "white": "#f4f4f2", "black": "#1c1c1c", "grey": "#8a8d8f", "silver": "#b4b8ba",
    "red": "#c8202a", "orange": "#f07020", "yellow": "#f4d51c", "green": "#1f9a48",
    "lime": "#9bcf3a", "teal": "#138a8a", "cyan": "#20a0dc", "blue": "#1e4fc8",
    "navy": "#1b2a55", "purple": "#7a3fa0", "magenta": "#d1338f", "pink": "#f29ab8",
    "brown": "#7a4a2a", "beige": "#e6d5b8", "gold": "#c9a437", "skin": "#e8b894",
}
"""Named filament colours a user may list (sRGB), as common PLA spools look; any other colour
is given as #rrggbb."""

_COLOUR = "(?:" + "|".join(FILAMENT_COLOURS) + r"|#[0-9a-fA-F]{6})"
FILAMENTS_PATTERN = (f"(?i:[{FILAMENT_COUNTS[0]}-{FILAMENT_COUNTS[1]}]"
                     f"|{_COLOUR}(?:,{_COLOUR}){{{FILAMENT_COUNTS[0] - 1},{FILAMENT_COUNTS[1] - 1}}})")
"""What `--filaments` takes: a count (2..8), or 2..8 colours by name or #rrggbb (any case), in
the order of the printer's filament slots."""


def filament_list(text: str) -> tuple[Optional[int], list[tuple[str, tuple[int, int, int]]]]:
    """(count, []) for "4"; (None, [(name, rgb), ...]) for "white,black,#2060c0"; ValueError otherwise."""
    text = text.strip().lower()
    if not re.fullmatch(FILAMENTS_PATTERN, text):
        raise ValueError(f"filaments {text!r}: give a count {FILAMENT_COUNTS[0]}..{FILAMENT_COUNTS[1]}, or "
                         f"{FILAMENT_COUNTS[0]}..{FILAMENT_COUNTS[1]} colours (names such as white, black, red, "
                         "or #rrggbb) separated by commas")
    if text.isdigit():
        return int(text), []
    colours = []
    for name in text.split(","):
        code = FILAMENT_COLOURS.get(name, name)
        colours.append((name, (int(code[1:3], 16), int(code[3:5], 16), int(code[5:7], 16))))
    return None, colours


def shape_problem(*, width_mm: float, base_mm: float, frame_mm: float = 0.0, corner_mm: float = 0.0,
                  hanger: str = "none", curve_radius_mm: Optional[float] = None) -> Optional[str]:
    """Why these print sizes cannot make a solid, in words for the user; None when they can.

    Only what is known before the depth map: the solid's length follows the photo's aspect."""
    if hanger not in HANGERS:
        return f"hanger {hanger!r} is not one of {', '.join(HANGERS)}"
    if 2 * frame_mm >= width_mm:
        return f"a {frame_mm:g} mm frame on each side leaves nothing of a {width_mm:g} mm wide print for the picture"
    if 2 * corner_mm > width_mm:
        return f"corners rounded by {corner_mm:g} mm need a print at least {2 * corner_mm:g} mm wide"
    if hanger == "keyhole" and base_mm < KEYHOLE_BASE_MM:
        return (f"a keyhole needs a base at least {KEYHOLE_BASE_MM:g} mm thick (--base-mm {KEYHOLE_BASE_MM:g}): "
                f"its pocket is {KEYHOLE_LIP_MM + KEYHOLE_HEAD_ROOM_MM:g} mm deep under a {KEYHOLE_ROOF_MM:g} mm roof")
    if curve_radius_mm is not None:
        bend = math.degrees(width_mm / curve_radius_mm)
        if bend > MAX_BEND_DEG:
            least = width_mm / math.radians(MAX_BEND_DEG)
            return (f"a {width_mm:g} mm wide panel curved at {curve_radius_mm:g} mm bends {bend:.0f} degrees; at most "
                    f"{MAX_BEND_DEG:g}: use a radius of at least {least:.1f} mm")
    return None
