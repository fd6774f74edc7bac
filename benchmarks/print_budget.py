"""Print-budget benchmark: does `--max-mb` keep a relief's flying points and depth edges?

Each scene of `benchmarks.scenes` (exact depth; sky and holes have none) becomes a print relief
at the default 0.25 mm cells, and again under a file budget (edge-keeping decimation,
`mesh.decimate.decimate_solid`). Both are probed with one vertical ray per depth-map pixel
and compared with the relief the exact depth gives there, with the edge benchmark's own
measures (`benchmarks.edge_quality`): the share of flying points (top farther from the true
relief than `FLYING_TOLERANCE` of the relief height) and the mean height error within
`CHAMFER_BAND_PX` pixels of a true depth edge. A budget passes when both stay within
`TOLERANCE` of the full solid's. Also: triangles, STL size and the decimation's time.

    python -m benchmarks.print_budget                 # 100 mm reliefs under 4 MB, and 250 mm under 20 MB
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np

from benchmarks.edge_quality import CHAMFER_BAND_PX, FLYING_TOLERANCE, _band, true_edges
from benchmarks.scenes import HOLE_SCENE_NAMES, SCENE_NAMES, make_scene
from mesh.checks import check_mesh
from mesh.data import MeshData
from mesh.relief_print import ReliefSpec, relief_print, stl_face_budget
from mesh.solid import print_grid_shape, relief_heights

RELIEF_MM, BASE_MM = 5.0, 2.0
TOLERANCE = {"flying": 0.001, "edge_mm": 0.01}
"""A budgeted relief is unchanged when it has at most 0.1 percentage points more flying points
and at most 0.01 mm more height error at the edges than the full one (or 10 % of it)."""


@dataclass
class Figures:
    triangles: int
    megabytes: float
    flying: float
    edge_mm: float
    seconds: float
    printable: bool


def top_heights(solid: MeshData, xy: np.ndarray) -> np.ndarray:
    """Height of the solid's top above each (x, y) (a ray cast down, Open3D)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(solid.vertices.astype(np.float32), solid.faces.astype(np.uint32))
    rays = np.column_stack([xy, np.full(len(xy), 1000.0), np.zeros((len(xy), 2)), -np.ones(len(xy))])
    return 1000.0 - scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))["t_hit"].numpy()


def pixel_positions(shape: tuple[int, int], width_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) in mm of every depth pixel's centre on the relief (as the area resampling lays the
    map on the print grid), and which of them lie on the print."""
    height, width = shape
    rows, columns = print_grid_shape(shape, width_mm, 0.25)
    length_mm = width_mm * height / width
    u = ((np.arange(width) + 0.5) * columns / width - 0.5) * width_mm / (columns - 1) - width_mm / 2
    v = length_mm / 2 - ((np.arange(height) + 0.5) * rows / height - 0.5) * length_mm / (rows - 1)
    x, y = np.meshgrid(u, v)
    on_print = (np.abs(x) <= width_mm / 2 - 1e-6) & (np.abs(y) <= length_mm / 2 - 1e-6)
    return np.column_stack([x.ravel(), y.ravel()]), on_print.ravel()


def measure(solid: MeshData, truth_mm: np.ndarray, xy: np.ndarray, scored: np.ndarray, band: np.ndarray,
            seconds: float) -> Figures:
    error = np.abs(top_heights(solid, xy[scored]) - truth_mm[scored])
    stl_bytes = 84 + 50 * len(solid.faces)
    return Figures(triangles=len(solid.faces), megabytes=stl_bytes / 1e6,
                   flying=float(np.mean(error > FLYING_TOLERANCE * RELIEF_MM)),
                   edge_mm=float(error[band[scored]].mean()), seconds=seconds, printable=check_mesh(solid).printable)


def unchanged(full: Figures, budget: Figures) -> bool:
    return (budget.flying <= full.flying + TOLERANCE["flying"]
            and budget.edge_mm <= max(full.edge_mm + TOLERANCE["edge_mm"], 1.1 * full.edge_mm))


def run_scene(name: str, width_mm: float, megabytes: float, size: tuple[int, int]) -> tuple[Figures, Figures]:
    truth = make_scene(name).render(*size)
    depth = truth.depth.astype(np.float32)
    truth_mm = (BASE_MM + RELIEF_MM * relief_heights(depth)).ravel()
    xy, on_print = pixel_positions(depth.shape, width_mm)
    scored = on_print & np.isfinite(depth).ravel()
    band = _band(true_edges(truth.depth), CHAMFER_BAND_PX).ravel()
    spec = ReliefSpec(width_mm=width_mm, relief_mm=RELIEF_MM, base_mm=BASE_MM)
    started = time.perf_counter()
    full = relief_print(depth, spec=spec)
    full_seconds = time.perf_counter() - started
    started = time.perf_counter()
    budget = relief_print(depth, spec=ReliefSpec(width_mm=width_mm, relief_mm=RELIEF_MM, base_mm=BASE_MM,
                                                 max_faces=stl_face_budget(megabytes)))
    budget_seconds = time.perf_counter() - started
    return (measure(full, truth_mm, xy, scored, band, full_seconds),
            measure(budget, truth_mm, xy, scored, band, budget_seconds))


def table(width_mm: float, megabytes: float, scenes: list[str], size: tuple[int, int]) -> tuple[list[str], bool]:
    lines = [f"{width_mm:g} mm relief, budget {megabytes:g} MB of STL; depth {size[0]}x{size[1]}",
             f"{'scene':<11} {'triangles':>17} {'STL MB':>13} {'flying %':>13} {'edge error mm':>15} "
             f"{'budget s':>8}  unchanged"]
    passed = True
    for name in scenes:
        full, budget = run_scene(name, width_mm, megabytes, size)
        ok = unchanged(full, budget) and budget.megabytes <= megabytes and budget.printable and full.printable
        passed &= ok
        lines.append(f"{name:<11} {full.triangles:>8} -> {budget.triangles:<7} {full.megabytes:>5.1f} -> "
                     f"{budget.megabytes:<5.1f} {100 * full.flying:>5.2f} -> {100 * budget.flying:<5.2f} "
                     f"{full.edge_mm:>6.3f} -> {budget.edge_mm:<6.3f} {budget.seconds:>8.1f}  {'yes' if ok else 'NO'}")
    return lines, passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two scenes at 512x384, 100 mm only")
    args = parser.parse_args()
    size = (512, 384) if args.quick else (1024, 768)
    scenes = ["boxes", "skyline"] if args.quick else list(SCENE_NAMES + HOLE_SCENE_NAMES)
    print(f"{os.cpu_count()} cores, load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    lines, passed = table(100.0, 4.0, scenes, size)
    if not args.quick:
        more, more_passed = table(250.0, 20.0, ["boxes", "skyline"], size)
        lines += [""] + more
        passed &= more_passed
    print("\n".join(lines))
    print(f"every budget kept its scene's flying points and edges: {'yes' if passed else 'NO'}")


if __name__ == "__main__":
    main()
