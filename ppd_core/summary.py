"""The words the command prints about a finished photo: one line per output, where the depth's
scale and the camera came from, the precision, and every warning. One place, so that the
in-process run, `--subprocess` and the batch say the same, and never claim a scale, camera
or size the result does not have.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

from ppd_core.batch import error_text
from ppd_core.options import OUTPUT_KINDS

WATERTIGHT_WORDS = {True: "yes", False: "no", None: "n/a (open)"}
DEPTH_MAP_WORDS = {"depth_png": " (+ preview)", "depth_exr": ", float32 metres, no depth = inf (+ mask, camera)"}


def depth_line(info: dict) -> str:
    """Where the depth's scale and the camera came from, and what MoGe-2's mask removed."""
    masked = f"; {info['masked_px']} px of sky or no surface left out" if info.get("masked_px") else ""
    if info.get("clipped_px"):  # the network said what it was never trained to say there
        masked += (f"; {info['clipped_px']} px ({info.get('clipped_share', 0):.1%}) of the network's depth outside "
                   "its trained range, clipped")
    reused = "; network result reused" if info.get("network_reused") else ""
    model = f" ({info['model']})" if info.get("model") else ""
    return f"  depth scale: {info['scale']}; camera: {info['camera']}{masked}{reused}{model}"


def precision_lines(info: dict) -> list[str]:
    """The network's precision and why (none for a depth file)."""
    precision = info.get("precision")
    if not isinstance(precision, dict) or not precision.get("name"):
        return []
    return [f"  precision: {precision['name']} ({precision.get('why', '')})"]


def warning_lines(info: dict) -> list[str]:
    """A guessed scale, a poor fit, another photo's result file, a precision known to be wrong here."""
    warnings = [w for w in info.get("warnings", []) if isinstance(w, str)]
    precision = info.get("precision")
    if isinstance(precision, dict) and precision.get("warning"):
        warnings.append(f"precision {precision['name']}: {precision['warning']}")
    return [f"  warning: {warning}" for warning in warnings]


def size_words(detail: dict, kind: str, scale_guessed: bool) -> str:
    """An output's size in its file's unit; a size from a guessed scale says so."""
    if "size_mm" in detail:  # a print solid: millimetres by construction
        return " x ".join(f"{v:.2f}" for v in detail["size_mm"]) + " mm"
    guessed = " at a guessed scale" if scale_guessed else ""
    if OUTPUT_KINDS[kind].z_up_mm:  # a scene, turned z up and written in millimetres
        width, height, depth = detail["size_m"]
        return " x ".join(f"{1000 * v:.1f}" for v in (width, depth, height)) + f" mm (z up){guessed}"
    return " x ".join(f"{v:.3f}" for v in detail["size_m"]) + f" m{guessed}"


def output_line(path: str, kind: str, detail: dict, scale_guessed: bool) -> str:
    """One output: a depth map's or preview's pixels; a point cloud's points; a mesh's counts."""
    if OUTPUT_KINDS[kind].depth_map:
        width, height = detail["size_px"]
        clipped = detail.get("clipped_px", 0)
        note = f"; {clipped} px beyond 65.535 m stored as 65.535 m" if clipped else ""
        return f"{path}: depth map {width}x{height} px{DEPTH_MAP_WORDS[kind]}{note}"
    if OUTPUT_KINDS[kind].picture:
        width, height = detail["size_px"]
        return f"{path}: preview {width}x{height} px ({detail['renderer']})"
    size = size_words(detail, kind, scale_guessed)
    if detail["faces"] == 0:
        return f"{path}: {detail['vertices']} points, {size}"
    watertight = WATERTIGHT_WORDS[detail["watertight"]]
    megabytes = f", {detail['file_bytes'] / 1e6:.1f} MB" if "size_mm" in detail and "file_bytes" in detail else ""
    return (f"{path}: {detail['vertices']} vertices, {detail['faces']} faces, {size}, watertight {watertight}"
            f"{megabytes}")


def filament_line(legend: list[dict]) -> str:
    """A colour relief's legend: each filament slot's colour, the first also printing sides and base."""
    slots = [f"{row['filament']} {row['rgb']} {row['name']} ({row['share']:.0%})" for row in legend]
    return f"  filaments in slot order (1 also prints the sides and base): {'; '.join(slots)}"


def summary_lines(stats: dict) -> list[str]:
    """One line per output (and a solid's check; an output kept from an earlier run, or
    written over a broken one, says so); then where the depth's scale and the camera came
    from, the precision, and the warnings."""
    info = stats.get("depth") or {}
    lines = []
    for kind, path in stats["outputs"].items():
        if kind in stats.get("kept", ()):
            lines.append(f"{path}: kept, complete from an earlier run")
            continue
        detail = stats["details"][kind]
        lines.append(output_line(path, kind, detail, bool(info.get("scale_guessed"))))
        if kind in stats.get("redone", {}):
            lines.append(f"  written anew: the old one was broken ({stats['redone'][kind]})")
        if "check" in detail:
            lines.append(f"  check: {detail['check']}")
        if "filaments" in detail:
            lines.append(filament_line(detail["filaments"]))
    if info:
        lines.append(depth_line(info))
        lines.extend(precision_lines(info))
        lines.extend(warning_lines(info))
    return lines


def failure_line(photo: Union[str, Path], error: Union[BaseException, str]) -> str:
    """One line for a failed photo (or argument): an exception, or a record's error text."""
    text = error if isinstance(error, str) else error_text(error)
    return f"ppd-mesh: {text}" if str(photo) in text else f"ppd-mesh: {photo}: {text}"
