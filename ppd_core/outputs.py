"""Writing one job's outputs: all or none, never over its inputs, each described for the summary.

Every output is first written into a hidden staging folder beside its final name
(`ppd_core.staging`), then all are moved into place together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from ppd_core.progress import report


def describe(geometry, check) -> dict:
    """Stats of one written geometry: counts, bounds, size with its unit, watertightness."""
    bounds = geometry.bounds()
    size = (bounds[1] - bounds[0]).round(4).tolist()
    stats = {"vertices": int(len(geometry.vertices)), "faces": int(len(geometry.faces)),
             "bounds": bounds.round(6).tolist()}
    if geometry.frame == "print_mm":
        stats.update(size_mm=size, watertight=check.watertight, check=check.summary(),
                     printable=check.printable, volume_mm3=round(check.volume, 3))
    else:
        stats.update(size_m=size, watertight=None)
    return stats


def write_outputs(outputs: dict, wanted: dict, geometry: dict, metric: np.ndarray, image, camera,
                  on_progress, replace: bool = True) -> tuple[dict, list[Path]]:
    """Write every output into a hidden staging folder beside it, then move them all into
    place: a failure or cancel at any point leaves the user's folders as they were. Without
    `replace`, an output file that exists by then (another run made it) is an error."""
    import shutil

    from mesh.checks import check_mesh
    from mesh.export import DEPTH_PNG_MAX_M, export, output_files, write_depth_png
    from ppd_core.errors import OutputError
    from ppd_core.staging import make_staging, move_into_place

    checks = {name: check_mesh(shape) for name, shape in geometry.items() if shape.frame == "print_mm"}
    staging: dict[Path, Path] = {}
    details: dict[str, dict] = {}
    try:
        for number, (kind, path) in enumerate(outputs.items()):
            report(on_progress, "export", number / len(outputs), f"writing {path.name}")
            folder = path.parent
            if folder not in staging:
                staging[folder] = make_staging(folder)
            staged = staging[folder] / path.name
            try:
                if kind == "depth_png":
                    write_depth_png(staged, metric)
                    with np.errstate(invalid="ignore"):
                        beyond = int(np.count_nonzero(metric > DEPTH_PNG_MAX_M))
                    details[kind] = {"size_px": [int(metric.shape[1]), int(metric.shape[0])], "clipped_px": beyond}
                else:
                    shape = geometry[wanted[kind]]
                    export(kind, staged, shape, texture=image.rgb, camera=camera, npz_kind=wanted[kind])
                    details[kind] = describe(shape, checks.get(wanted[kind]))
            except OutputError as error:  # name the user's file, not the hidden staging copy
                raise OutputError(str(error).replace(str(staging[folder]), str(folder))) from None
        report(on_progress, "export", 1.0, "moving files into place")
        moves = [(staging[path.parent] / final.name, final)
                 for kind, path in outputs.items() for final in output_files(kind, path)]
        move_into_place(moves, replace)
    finally:
        for folder in staging.values():
            shutil.rmtree(folder, ignore_errors=True)
    return details, [final for _, final in moves]


def refuse_overwriting_inputs(photo: Union[str, Path], outputs: dict, options) -> None:
    """The photo and the depth file are never written over, whoever asks (CLI, worker, API)."""
    from mesh.export import output_files
    from ppd_core.errors import OutputError

    inputs = {Path(photo).resolve(): "the photo itself"}
    if options.depth is not None:
        inputs[Path(options.depth).resolve()] = "the depth file"
    for kind, path in outputs.items():
        for target in output_files(kind, path):
            if target.resolve() in inputs:
                raise OutputError(f"{target}: refusing to overwrite {inputs[target.resolve()]}")
