"""Every figure of the docs, made by the product itself: `python docs/figures/make_figures.py [--out DIR]`.

Offline, on the CPU, without weights. A synthetic scene with exact depth
(`benchmarks.scenes`) stands in for the network's output; the product's own pipeline lifts,
meshes and closes it (`run_photo` with a depth file, as `ppd-mesh photo.png --depth
depth.npy --fov 60 --relief-mm 12 --npz --stl --depth-png` does); the edge benchmark's lifting methods
(`benchmarks.edge_quality`) make the comparison; Blender (bpy, the Workbench engine, which
renders headless on the CPU) renders the 3D panels, and Pillow lays them out. So the
pictures can never drift from the code: regenerate them after any change that shows.

    flow.png           photo -> coloured depth map -> textured mesh -> print solid
    flying_points.png  one soft depth map lifted by each of the edge benchmark's methods, from the side
    print.png          the print solid on a build plate, with its size in mm
    relief_*.png       each relief option's solid (`RELIEF_FIGURES`), with the size the command measured
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: ppd_core, mesh and benchmarks

import bpy  # noqa: E402  (Blender as a Python module)
import mathutils  # noqa: E402
import numpy as np  # noqa: E402
import trimesh  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from benchmarks.edge_quality import DEGRADATIONS, FLYING_TOLERANCE, METHODS  # noqa: E402
from benchmarks.scenes import make_scene  # noqa: E402
from mesh.data import MeshData  # noqa: E402
from mesh.export import OPENCV_TO_Z_UP  # noqa: E402  (Blender's world is z up, as a print is)
from ppd_core.files.preview import oblique_view  # noqa: E402
from ppd_core.files.result_file import read_result  # noqa: E402
from ppd_core.options import JobOptions  # noqa: E402
from ppd_core.pipeline import run_photo  # noqa: E402

FLOW_SCENE, PROMISE_SCENE = "boxes", "ball"
PHOTO_SIZE = (480, 360)                # the synthetic photo (and depth map), 60 degrees wide
PANEL = (360, 270)                     # one panel of the flow figure
ARROW_PX, CAPTION_PX = 44, 40
POINTS_PANEL = (480, 360)              # one panel of the flying-points figure
POINTS_DEGRADATION = "down4+bilinear"  # soft edges, as a network's depth has them
PRINT_SIZE = (800, 520)
RELIEF_PANEL = (480, 330)
RELIEF_FIGURES = {  # file: one (caption, scene, options, seen from behind) per panel
    "relief_frame.png": [("--frame-mm 6 --frame-height-mm 3", FLOW_SCENE, dict(frame_mm=6.0, frame_height_mm=3.0),
                          False)],
    "relief_corners.png": [("--corner-mm 12", FLOW_SCENE, dict(corner_mm=12.0), False)],
    "relief_hanger.png": [("--hanger hole", FLOW_SCENE, dict(hanger="hole"), False),
                          ("--hanger keyhole --base-mm 5, from behind", FLOW_SCENE,
                           dict(hanger="keyhole", base_mm=5.0), True)],
    "relief_curved.png": [("--curve-radius-mm 70", FLOW_SCENE, dict(curve_radius_mm=70.0), False)],
    "relief_smooth.png": [("grainy depth", "grainy", {}, False),
                          ("--smooth-mm 1.5", "grainy", dict(smooth_mm=1.5), False)],
    "relief_silhouette.png": [("--silhouette (the sky cut away)", "skyline", dict(silhouette=True), False)],
    "relief_budget.png": [("every triangle (12 MB of STL)", FLOW_SCENE, {}, False),
                          ("--max-mb 0.2", FLOW_SCENE, dict(max_mb=0.2), False)],
    "relief_colour.png": [("--filaments 4 --3mf", FLOW_SCENE, dict(filaments="4"), False)],
}
"""The relief options' figures: each panel a product run of `scene` with `options` (and
--relief-mm 8), in the colours of its filaments, or each triangle's own shade (budget)."""
FIGURES = {
    "flow.png": (4 * PANEL[0] + 3 * ARROW_PX, PANEL[1] + CAPTION_PX),
    "flying_points.png": (2 * POINTS_PANEL[0], math.ceil(len(METHODS) / 2) * (POINTS_PANEL[1] + CAPTION_PX)),
    "print.png": PRINT_SIZE,
    **{name: (len(panels) * RELIEF_PANEL[0], RELIEF_PANEL[1] + 2 * CAPTION_PX)
       for name, panels in RELIEF_FIGURES.items()},
}
"""Every figure this script writes, with its size in pixels (width, height)."""

INK = (40, 40, 40)
RED, SLATE, GREY = (0.85, 0.1, 0.08, 1.0), (0.5, 0.56, 0.66, 1.0), (0.72, 0.72, 0.72, 1.0)
PLATE, LINE = (0.25, 0.26, 0.28, 1.0), (0.4, 0.41, 0.43, 1.0)
QUAD = np.array([[0, 1, 2], [0, 2, 3]])


# -- Blender --------------------------------------------------------------------------------


def new_stage(size: tuple[int, int], color_type: str, cavity: bool = False) -> bpy.types.Scene:
    """An empty scene rendered by Workbench at `size` on a white world, coloured by `color_type`
    (VERTEX: the photo's, unlit; OBJECT: one colour per object, studio light), `cavity`
    darkening creases."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x, scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"  # the photo's colours as they are
    scene.world = bpy.data.worlds.new("white")
    scene.world.color = (1.0, 1.0, 1.0)
    shading = scene.display.shading
    # The photo's colours already hold its light: shown flat, as a viewer shows a texture; the rest lit.
    shading.light, shading.color_type = "FLAT" if color_type == "VERTEX" else "STUDIO", color_type
    shading.show_cavity = cavity
    return scene


def add_object(scene: bpy.types.Scene, name: str, vertices: np.ndarray, faces: np.ndarray,
               colors: np.ndarray | None = None, color: tuple = GREY) -> bpy.types.Object:
    """A mesh object from arrays (world frame), with per-vertex sRGB colours or one object colour."""
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", np.asarray(vertices, np.float32).ravel())
    if len(faces):
        mesh.loops.add(faces.size)
        mesh.loops.foreach_set("vertex_index", np.asarray(faces, np.int32).ravel())
        mesh.polygons.add(len(faces))
        mesh.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
        mesh.polygons.foreach_set("loop_total", np.full(len(faces), 3, dtype=np.int32))
    if colors is not None:
        attribute = mesh.color_attributes.new("Col", "BYTE_COLOR", "POINT")
        rgba = np.ones((len(colors), 4), np.float32)
        rgba[:, :3] = colors / np.float32(255.0)
        attribute.data.foreach_set("color_srgb", rgba.ravel())
        mesh.color_attributes.active_color = attribute
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    obj.color = color
    scene.collection.objects.link(obj)
    return obj


def add_points(scene: bpy.types.Scene, name: str, points: np.ndarray, color: tuple, radius: float) -> None:
    """Points (world frame) drawn as small spheres of `radius` (Geometry Nodes' Mesh to Points)."""
    obj = add_object(scene, name, points, np.zeros((0, 3), np.int32), color=color)
    group = bpy.data.node_groups.new(name, "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    to_points = group.nodes.new("GeometryNodeMeshToPoints")
    to_points.inputs["Radius"].default_value = radius
    group.links.new(group.nodes.new("NodeGroupInput").outputs[0], to_points.inputs["Mesh"])
    group.links.new(to_points.outputs["Points"], group.nodes.new("NodeGroupOutput").inputs[0])
    obj.modifiers.new(name, "NODES").node_group = group


def look(scene: bpy.types.Scene, eye, target, vertical_fov_deg: float) -> None:
    """The scene's camera at `eye` looking at `target` (world frame, z up)."""
    camera = bpy.data.cameras.new("camera")
    camera.sensor_fit, camera.angle_y = "VERTICAL", math.radians(vertical_fov_deg)
    camera.clip_start, camera.clip_end = 0.01, 10000.0
    obj = bpy.data.objects.new("camera", camera)
    obj.location = mathutils.Vector(tuple(map(float, eye)))
    towards = mathutils.Vector(tuple(map(float, target))) - obj.location
    obj.rotation_euler = towards.to_track_quat("-Z", "Y").to_euler()
    scene.collection.objects.link(obj)
    scene.camera = obj


def render(scene: bpy.types.Scene, folder: Path, name: str) -> Image.Image:
    """Render the scene to a PNG in `folder` and read it back as RGB."""
    scene.render.filepath = str(folder / f"{name}.png")
    bpy.ops.render.render(write_still=True)
    return Image.open(scene.render.filepath).convert("RGB")


def blender_oblique(shape: MeshData, size: tuple[int, int], folder: Path, name: str) -> Image.Image:
    """A mesh seen from the same oblique angle as the command's --preview (`oblique_view`): a
    scene in the photo's colours, a solid grey."""
    view = oblique_view(shape)
    turn = OPENCV_TO_Z_UP if shape.frame == "opencv" else np.eye(3)
    scene = new_stage(size, "VERTEX" if shape.colors is not None else "OBJECT", cavity=shape.colors is None)
    add_object(scene, name, shape.vertices @ turn.T, shape.faces, shape.colors)
    look(scene, turn @ view["eye"], turn @ view["centre"], float(view["fov"]))
    return render(scene, folder, name)


def add_plate(scene: bpy.types.Scene, half_mm: float, step_mm: float = 10.0) -> None:
    """A dark build plate reaching `half_mm` from the centre, with a line every `step_mm`."""
    add_object(scene, "plate", rectangle(-half_mm, half_mm, -half_mm, half_mm, -0.1), QUAD, color=PLATE)
    for at in np.arange(-half_mm, half_mm + 1e-9, step_mm):
        add_object(scene, "line", rectangle(at - 0.2, at + 0.2, -half_mm, half_mm, -0.05), QUAD, color=LINE)
        add_object(scene, "line", rectangle(-half_mm, half_mm, at - 0.2, at + 0.2, -0.05), QUAD, color=LINE)


def rectangle(x0: float, x1: float, y0: float, y1: float, z: float) -> np.ndarray:
    """The corners of a flat rectangle at height z, counter-clockwise seen from above."""
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]])


# -- the figures -----------------------------------------------------------------------------


def font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def product_run(folder: Path) -> tuple[dict, dict[str, Path]]:
    """The flow scene's photo and exact depth through the product's pipeline: (stats, outputs)."""
    truth = make_scene(FLOW_SCENE).render(*PHOTO_SIZE)
    Image.fromarray(truth.rgb).save(folder / "photo.png")
    np.save(folder / "depth.npy", truth.depth.astype(np.float32))
    outputs = {"npz": folder / "photo.npz", "stl": folder / "photo.stl", "depth_png": folder / "photo_depth.png"}
    options = JobOptions(depth_file=str(folder / "depth.npy"), fov=60.0, relief_mm=12.0)
    return run_photo(folder / "photo.png", outputs, options), outputs


def solid_shape(stl: Path) -> MeshData:
    solid = trimesh.load(stl, force="mesh")
    return MeshData(vertices=solid.vertices, faces=solid.faces, frame="print_mm")


def flow_figure(folder: Path, outputs: dict[str, Path]) -> Image.Image:
    """photo -> coloured depth map -> textured mesh -> print solid, each panel a product output."""
    result = read_result(outputs["npz"])
    scene_mesh = MeshData(vertices=result.vertices, faces=result.faces, colors=result.colors, frame=result.frame)
    panels = [
        ("photo", Image.open(folder / "photo.png").convert("RGB").resize(PANEL)),
        ("depth map (--depth-png)", Image.open(folder / "photo_depth_preview.png").convert("RGB").resize(PANEL)),
        ("textured mesh (--glb, --obj)", blender_oblique(scene_mesh, PANEL, folder, "mesh")),
        ("print solid (--stl, --3mf)", blender_oblique(solid_shape(outputs["stl"]), PANEL, folder, "solid")),
    ]
    figure = Image.new("RGB", FIGURES["flow.png"], "white")
    draw = ImageDraw.Draw(figure)
    for number, (caption, panel) in enumerate(panels):
        left = number * (PANEL[0] + ARROW_PX)
        figure.paste(panel, (left, 0))
        draw.text((left + PANEL[0] // 2, PANEL[1] + CAPTION_PX // 2), caption, fill=INK, font=font(20), anchor="mm")
        if number:
            arrow(draw, left - ARROW_PX + 8, left - 8, PANEL[1] // 2)
    return figure


def arrow(draw: ImageDraw.ImageDraw, x0: int, x1: int, y: int) -> None:
    """A right-pointing arrow from x0 to x1 at height y."""
    draw.line([(x0, y), (x1 - 10, y)], fill=INK, width=4)
    draw.polygon([(x1, y), (x1 - 14, y - 9), (x1 - 14, y + 9)], fill=INK)


def flying_points_figure(folder: Path) -> Image.Image:
    """The same soft depth lifted by each of the edge benchmark's methods, from the side; the
    points farther from the true surface than the benchmark's tolerance in red."""
    scene = make_scene(PROMISE_SCENE)
    truth = scene.render(*POINTS_PANEL)
    depth = DEGRADATIONS[POINTS_DEGRADATION](truth.depth.astype(np.float32))
    width, height = POINTS_PANEL
    figure = Image.new("RGB", FIGURES["flying_points.png"], "white")
    draw = ImageDraw.Draw(figure)
    for number, (method, lift_with) in enumerate(METHODS.items()):
        points, pixels = lift_with(depth, truth.intrinsics, truth.rgb)
        flying = scene.distance_to_surface(points) > FLYING_TOLERANCE * truth.depth.ravel()[pixels]
        stage = new_stage(POINTS_PANEL, "OBJECT")
        add_points(stage, "kept", points[~flying] @ OPENCV_TO_Z_UP.T, SLATE, 0.008)
        add_points(stage, "flying", points[flying] @ OPENCV_TO_Z_UP.T, RED, 0.012)
        look(stage, (3.2, 0.2, 1.2), (0.0, 2.0, 0.0), 40.0)  # from the right, above the ball
        left, top = (number % 2) * width, (number // 2) * (height + CAPTION_PX)
        figure.paste(render(stage, folder, f"points_{number}"), (left, top + CAPTION_PX))
        caption = f"{method}: {int(flying.sum()):,} flying of {len(points):,} points"
        draw.text((left + width // 2, top + CAPTION_PX // 2), caption, fill=INK, font=font(20), anchor="mm")
    return figure


def print_figure(folder: Path, stats: dict, outputs: dict[str, Path]) -> Image.Image:
    """The print solid on a build plate as a slicer shows it, with the size the product measured."""
    solid = solid_shape(outputs["stl"])
    scene = new_stage(PRINT_SIZE, "OBJECT", cavity=True)
    add_object(scene, "solid", solid.vertices, solid.faces)
    add_plate(scene, 1.6 * float(np.abs(solid.vertices[:, :2]).max()))
    view = oblique_view(solid)
    look(scene, view["eye"], view["centre"], float(view["fov"]))
    figure = render(scene, folder, "print")
    detail = stats["details"]["stl"]
    size = " x ".join(f"{value:.1f}" for value in detail["size_mm"])
    watertight = "yes" if detail["watertight"] else "no"
    lines = [f"{size} mm", f"volume {detail['volume_mm3'] / 1000:.1f} cm^3, watertight {watertight}"]
    draw = ImageDraw.Draw(figure)
    draw.multiline_text((24, 20), "\n".join(lines), fill=INK, font=font(26), spacing=8)
    return figure


def relief_run(folder: Path, scene_name: str, options: dict) -> tuple[MeshData, dict]:
    """(the print solid, its stats) of a product run on `scene_name`'s photo and exact depth
    ("grainy": the flow scene's with sensor grain), read back from the run's result file."""
    truth = make_scene("skyline" if scene_name == "skyline" else FLOW_SCENE).render(*PHOTO_SIZE)
    depth = truth.depth.astype(np.float32)
    if scene_name == "grainy":
        depth = depth * (1.0 + np.random.default_rng(0).normal(0.0, 0.01, depth.shape)).astype(np.float32)
    Image.fromarray(truth.rgb).save(folder / f"{scene_name}.png")
    np.save(folder / f"{scene_name}.npy", depth)
    outputs = {"npz": folder / "relief.npz", "stl": folder / "relief.stl"}
    job = JobOptions(depth_file=str(folder / f"{scene_name}.npy"), fov=60.0, relief_mm=8.0, solid=True, **options)
    stats = run_photo(folder / f"{scene_name}.png", outputs, job)
    result = read_result(outputs["npz"])
    return MeshData(result.vertices, result.faces, frame="print_mm", paint=result.paint), stats


def face_colours(solid: MeshData, shades: bool) -> np.ndarray:
    """(F, 3) uint8: each face's filament colour (the first for its sides and base), or, with
    `shades`, a grey of its own for every triangle so their sizes show."""
    if shades:
        return np.random.default_rng(0).integers(120, 235, (len(solid.faces), 1)).repeat(3, axis=1).astype(np.uint8)
    if solid.paint is None:
        return np.full((len(solid.faces), 3), 200, np.uint8)
    return solid.paint.colors[np.maximum(solid.paint.faces, 0)]


def relief_panel(folder: Path, solid: MeshData, colours: np.ndarray, behind: bool, name: str) -> Image.Image:
    """The solid from the preview's angle (turned over, seen from behind), each face its colour."""
    if behind:  # turned over about y: its back up, the picture's left on the right
        solid = MeshData(solid.vertices * np.array([-1.0, 1.0, -1.0]), solid.faces, frame="print_mm")
    corners = solid.vertices[solid.faces].reshape(-1, 3)
    scene = new_stage(RELIEF_PANEL, "VERTEX", cavity=True)
    scene.display.shading.light = "STUDIO"
    add_object(scene, name, corners, np.arange(len(corners)).reshape(-1, 3), colours.repeat(3, axis=0))
    view = oblique_view(solid)
    look(scene, view["eye"], view["centre"], float(view["fov"]))
    return render(scene, folder, name)


def relief_figure(folder: Path, name: str) -> Image.Image:
    """One relief option's figure: its panels, each captioned with the flags and the size measured."""
    panels = RELIEF_FIGURES[name]
    figure = Image.new("RGB", FIGURES[name], "white")
    draw = ImageDraw.Draw(figure)
    for number, (caption, scene_name, options, behind) in enumerate(panels):
        solid, stats = relief_run(folder, scene_name, options)
        detail = stats["details"]["stl"]
        size = " x ".join(f"{value:.1f}" for value in detail["size_mm"])
        left = number * RELIEF_PANEL[0]
        panel = relief_panel(folder, solid, face_colours(solid, "budget" in name), behind, f"{name}_{number}")
        figure.paste(panel, (left, 2 * CAPTION_PX))
        centre = left + RELIEF_PANEL[0] // 2
        draw.text((centre, CAPTION_PX // 2), caption, fill=INK, font=font(20), anchor="mm")
        draw.text((centre, 3 * CAPTION_PX // 2), f"{size} mm, {detail['faces']:,} triangles, "
                  f"{detail['file_bytes'] / 1e6:.1f} MB STL", fill=INK, font=font(17), anchor="mm")
    return figure


def save_small(image: Image.Image, path: Path) -> None:
    """A 256-colour PNG: the figures are flat shaded, so they stay well under 300 KB."""
    image.quantize(colors=256, dither=Image.Dither.NONE).save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="folder for the PNGs")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ppd-figures-") as scratch:
        folder = Path(scratch)
        stats, outputs = product_run(folder)
        figures = {"flow.png": flow_figure(folder, outputs), "flying_points.png": flying_points_figure(folder),
                   "print.png": print_figure(folder, stats, outputs),
                   **{name: relief_figure(folder, name) for name in RELIEF_FIGURES}}
        for name, figure in figures.items():
            path = args.out / name
            save_small(figure, path)
            print(f"{path}: {figure.width}x{figure.height} px, {path.stat().st_size // 1024} KB")
    print(f"{len(figures)} figures in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
