"""Print files of a solid given as arrays: STL and 3MF in millimetres, with the slicer checks.

The Blender add-on's Export for Printing runs this in the backend, because Blender's Python
has neither trimesh nor pymeshlab: it saves the object's triangles in millimetres, z up, as
an NPZ (`vertices` float (N, 3), `faces` int (F, 3); a colour relief's 3MF also its paint:
`face_filaments`, `filament_colors`, `filament_names` as in the result file); this writes each file with the
project's writers (`mesh.export`), all or none, and prints one JSON line with the files, the
size and the checks (`mesh.checks`).

    python -m ppd_core.print_export solid.npz model.stl [model.3mf] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from mesh.checks import check_mesh
from mesh.data import MeshData, MeshError, Paint
from mesh.export import stl_bytes, threemf_bytes
from ppd_core.errors import BadInputError, OutputError, PPDError
from ppd_core.files.staging import make_staging, move_into_place

#: File suffix -> writer of a millimetre solid.
WRITERS = {".stl": stl_bytes, ".3mf": threemf_bytes}


def read_solid(path: Path) -> MeshData:
    """The solid in an NPZ of `vertices` (mm, z up) and `faces`; BadInputError naming what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            vertices, faces = arrays["vertices"], arrays["faces"]
            paint = None
            if "face_filaments" in arrays.files:
                paint = Paint(arrays["face_filaments"], arrays["filament_colors"],
                              tuple(json.loads(str(arrays["filament_names"][()]))))
    except (OSError, ValueError, KeyError) as error:  # a MeshError of the paint is a ValueError
        raise BadInputError(f"{path}: not a solid's arrays ({error})") from None
    if not len(faces) or not np.isfinite(vertices).all():
        raise BadInputError(f"{path}: the solid has no triangles, or positions that are not finite")
    try:
        return MeshData(vertices, faces, frame="print_mm", paint=paint)
    except (MeshError, ValueError) as error:
        raise BadInputError(f"{path}: {error}") from None


def export_solid(solid: MeshData, targets: list[Path]) -> dict:
    """Write `solid` to every target (its suffix picks the format), all or none; return the
    files and the slicer checks, JSON-ready."""
    unknown = [str(target) for target in targets if target.suffix.lower() not in WRITERS]
    if unknown:
        raise BadInputError(f"{', '.join(unknown)}: a print file ends in {' or '.join(WRITERS)}")
    staging: dict[Path, Path] = {}
    moves = []
    try:
        for target in targets:
            folder = target.parent
            if folder not in staging:
                staging[folder] = make_staging(folder)
            staged = staging[folder] / target.name
            try:
                staged.write_bytes(WRITERS[target.suffix.lower()](solid))
            except OSError as error:
                raise OutputError(f"{target}: cannot write ({error.strerror or error})") from None
            moves.append((staged, target))
        move_into_place(moves, replace=True)
    finally:
        for folder in staging.values():
            shutil.rmtree(folder, ignore_errors=True)
    check = check_mesh(solid)
    return {"files": [str(target) for target in targets], "size_mm": [round(v, 3) for v in check.size],
            "printable": check.printable, "check": check.summary()}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ppd_core.print_export", description=__doc__.splitlines()[0])
    parser.add_argument("solid", type=Path, help="NPZ of vertices (mm, z up) and faces")
    parser.add_argument("targets", type=Path, nargs="+", help="print files to write (.stl, .3mf)")
    parser.add_argument("--json", action="store_true", help="print the outcome as one JSON line")
    args = parser.parse_args(argv)
    try:
        outcome = export_solid(read_solid(args.solid), [target.absolute() for target in args.targets])
    except PPDError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    print(json.dumps(outcome) if args.json else f"{', '.join(outcome['files'])}: {outcome['check']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
