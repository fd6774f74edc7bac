"""The preview: a small PNG per result that shows it from an oblique angle, to check a batch at a glance.

A mesh or solid is ray-cast with Open3D's `RaycastingScene` (Embree, on the CPU: it needs no
GPU, display or graphics driver) and shaded by its triangles' normals in its vertex colours; a
point cloud is splatted into a depth buffer. Open3D's OffscreenRenderer (Filament) was not
chosen: without a GPU it needs a Vulkan driver (Mesa's lavapipe) and there took from one
second to minutes per picture, depending on the mesh (docs/meshing.md). A depth-map output's
preview, and any preview if the ray caster fails (the reason is logged once, and later
previews of the process skip it), is the depth map itself: its surface normals,
Lambert-shaded in the photo's colours, seen from the photo's camera.
"""

from __future__ import annotations

import io
import logging
import math
from typing import Optional

import cv2
import numpy as np
from PIL import Image

from mesh.data import MeshData
from ppd_core.geometry.camera import CameraRecord, unproject

PREVIEW_PX = 512
"""The preview's longest side in pixels; the other side follows the photo's aspect ratio."""

BACKGROUND = (236, 236, 236)
GREY = (170, 170, 170)                       # a solid, or points without colours
VIEW_FOV_DEG = 45.0                          # the preview camera's vertical field of view
TURN_DEG, RISE_DEG = 35.0, 20.0              # a scene: the photo's view turned and raised about its middle
SOLID_TURN_DEG, SOLID_RISE_DEG = 25.0, 40.0  # a print solid: from the front and above, as on a build plate
SCENE_FILL, SOLID_FILL = 0.65, 0.9           # how much of the picture the shape's bounding sphere spans
AMBIENT = 0.3
DEPTH_LIGHT = np.array([-0.4, -0.7, -0.6]) / np.linalg.norm([-0.4, -0.7, -0.6])  # toward the light, camera frame
VIEW_LIGHT = np.array([-0.3, -0.4, -0.85]) / np.linalg.norm([-0.3, -0.4, -0.85])  # (right, down, forward) of the view

RENDERED, SHADED_DEPTH = "oblique view", "shaded depth"

log = logging.getLogger(__name__)
_renderer_problem: Optional[str] = None  # why the ray caster failed in this process, once it has


def preview_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) of the preview of a `width` x `height` photo: PREVIEW_PX on its longest side."""
    scale = PREVIEW_PX / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def renderer_for(geometry: str, shape: Optional[MeshData]) -> str:
    """What the preview of `geometry` (`shape`) is in this process: the oblique view, or the
    shaded depth (for a depth map, an empty shape, or once the ray caster has failed)."""
    if geometry == "depth" or shape is None or not len(shape.vertices) or _renderer_problem is not None:
        return SHADED_DEPTH
    return RENDERED


def preview_png(geometry: str, shape: Optional[MeshData], depth: np.ndarray, rgb: np.ndarray,
                camera: CameraRecord) -> bytes:
    """The preview PNG of one result: `shape` (a mesh, points or solid) seen from an oblique
    angle or, for a depth map (or when that fails), the shaded `depth` (metres, any grid) in
    the colours of the photo `rgb`, seen by its `camera`."""
    global _renderer_problem
    size = preview_size(camera.width, camera.height)
    picture = None
    if renderer_for(geometry, shape) == RENDERED:
        try:
            picture = render_oblique(shape, size)
        except Exception as error:  # a preview must never fail the job: fall back, say why once
            _renderer_problem = f"{type(error).__name__}: {error}"
            log.warning("preview: the oblique view failed (%s); previews show the shaded depth map instead",
                        _renderer_problem)
    if picture is None:
        picture = shaded_depth(depth, rgb, camera, size)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def shaded_depth(depth: np.ndarray, rgb: np.ndarray, camera: CameraRecord, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 picture of `size`: the depth map's surface normals, Lambert-shaded in the
    photo's colours; depth edges come out dark (their normals turn away), no depth is background."""
    height, width = depth.shape
    points = unproject(depth, camera.intrinsics.scaled(width, height)).astype(np.float64)
    with np.errstate(invalid="ignore"):
        normals = np.cross(np.gradient(points, axis=0), np.gradient(points, axis=1))  # toward the camera
        normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
        light = np.nan_to_num(np.clip(normals @ DEPTH_LIGHT, 0.0, 1.0))
    colours = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA).astype(np.float64)
    picture = colours * (AMBIENT + (1.0 - AMBIENT) * light)[..., None]
    picture[~(np.isfinite(depth) & (depth > 0))] = BACKGROUND
    picture = np.clip(np.rint(picture), 0, 255).astype(np.uint8)
    return cv2.resize(picture, size, interpolation=cv2.INTER_AREA if size[0] < width else cv2.INTER_LINEAR)


def oblique_view(shape: MeshData) -> dict[str, np.ndarray]:
    """The preview camera: the point it looks at ("centre"), its "eye", "up" and vertical "fov"
    (degrees), far enough away that the shape's bounding sphere about fills the picture.

    A scene (camera frame, up is -y) is seen from the photo's camera turned TURN_DEG about the
    middle of its 1st..99th percentile box (stray points do not shrink it) and raised
    RISE_DEG; a print solid (z up, the photo's top at +y) from its front, above."""
    vertices = shape.vertices.astype(np.float64)
    if shape.frame == "print_mm":
        low, high, up = vertices.min(axis=0), vertices.max(axis=0), np.array([0.0, 0.0, 1.0])
        turn, rise = math.radians(SOLID_TURN_DEG), math.radians(SOLID_RISE_DEG)
        direction = np.array([math.sin(turn) * math.cos(rise), -math.cos(turn) * math.cos(rise), math.sin(rise)])
        fill = SOLID_FILL
    else:
        low, high, up = *np.percentile(vertices, [1.0, 99.0], axis=0), np.array([0.0, -1.0, 0.0])
        back = -(low + high) / 2.0  # from the middle to the photo's camera
        distance = max(float(np.linalg.norm(back)), 1e-9)
        turn = math.atan2(back[0], back[2]) + math.radians(TURN_DEG)
        rise = math.asin(np.clip(-back[1] / distance, -1.0, 1.0)) + math.radians(RISE_DEG)
        direction = np.array([math.cos(rise) * math.sin(turn), -math.sin(rise), math.cos(rise) * math.cos(turn)])
        fill = SCENE_FILL
    centre, radius = (low + high) / 2.0, max(float(np.linalg.norm(high - low)) / 2.0, 1e-9)
    eye = centre + direction * fill * radius / math.sin(math.radians(VIEW_FOV_DEG / 2.0))
    return {"centre": centre, "eye": eye, "up": up, "fov": np.array(VIEW_FOV_DEG)}


def render_oblique(shape: MeshData, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 picture of `size`: `shape` seen from `oblique_view`, Lambert-shaded by a
    light over the viewer's left shoulder, in its vertex colours (a solid in grey)."""
    view = oblique_view(shape)
    forward = view["centre"] - view["eye"]
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, view["up"])
    right /= np.linalg.norm(right)
    basis = np.stack([right, np.cross(forward, right), forward])  # rows: the view's right, down, forward
    focal = size[1] / 2.0 / math.tan(math.radians(float(view["fov"])) / 2.0)
    if shape.is_points:
        return _splat_points(shape, view["eye"], basis, focal, size)
    return _ray_cast(shape, view["eye"], basis, focal, size)


def _shade(colours: np.ndarray, normals: Optional[np.ndarray], basis: np.ndarray) -> np.ndarray:
    """Colours (N, 3) lit from over the viewer's shoulder, both sides of a surface alike."""
    if normals is None:
        return colours
    light = np.abs(normals @ (VIEW_LIGHT @ basis))
    return colours * (AMBIENT + (1.0 - AMBIENT) * np.nan_to_num(light))[:, None]


def _ray_cast(shape: MeshData, eye: np.ndarray, basis: np.ndarray, focal: float,
              size: tuple[int, int]) -> np.ndarray:
    """A mesh ray-cast through every pixel centre; each hit shaded by its triangle's normal and
    coloured by its vertices' colours, blended by where in the triangle the ray hits."""
    import open3d as o3d  # heavy (~3 s to load): imported on first use

    width, height = size
    x = (np.arange(width) + 0.5 - width / 2.0) / focal
    y = (np.arange(height) + 0.5 - height / 2.0) / focal
    directions = (x[None, :, None] * basis[0] + y[:, None, None] * basis[1] + basis[2]).reshape(-1, 3)
    rays = np.column_stack([np.broadcast_to(eye, directions.shape), directions]).astype(np.float32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(shape.vertices.astype(np.float32), shape.faces.astype(np.uint32))
    hits = {key: value.numpy() for key, value in scene.cast_rays(o3d.core.Tensor(rays)).items()}
    hit = np.isfinite(hits["t_hit"])
    triangles = shape.faces[hits["primitive_ids"][hit]]
    if shape.colors is None:
        colours = np.broadcast_to(np.asarray(GREY, np.float64), (len(triangles), 3))
    else:
        u, v = hits["primitive_uvs"][hit].T
        weights = np.column_stack([1.0 - u - v, u, v])
        colours = np.einsum("nk,nkc->nc", weights, shape.colors[triangles].astype(np.float64))
    picture = np.full((height * width, 3), BACKGROUND, np.float64)
    picture[hit] = _shade(colours, hits["primitive_normals"][hit].astype(np.float64), basis)
    return np.clip(np.rint(picture), 0, 255).astype(np.uint8).reshape(height, width, 3)


def _splat_points(shape: MeshData, eye: np.ndarray, basis: np.ndarray, focal: float,
                  size: tuple[int, int]) -> np.ndarray:
    """Points projected into the view, the nearest one winning each pixel, 2x2 pixels each."""
    width, height = size
    local = (shape.vertices.astype(np.float64) - eye) @ basis.T  # right, down, forward
    ahead = local[:, 2] > 1e-9
    local = local[ahead]
    column = np.floor(local[:, 0] / local[:, 2] * focal + width / 2.0).astype(np.int64)
    row = np.floor(local[:, 1] / local[:, 2] * focal + height / 2.0).astype(np.int64)
    colours = (np.full((len(local), 3), GREY, np.float64) if shape.colors is None
               else shape.colors[ahead].astype(np.float64))
    colours = _shade(colours, None if shape.normals is None else shape.normals[ahead].astype(np.float64), basis)
    picture = np.full((height * width, 3), BACKGROUND, np.float64)
    nearest = np.full(height * width, np.inf)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        x, y = column + dx, row + dy
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        pixel, depth = (y * width + x)[inside], local[inside, 2]
        order = np.lexsort((depth, pixel))  # by pixel, nearest first
        first = order[np.r_[True, pixel[order][1:] != pixel[order][:-1]]] if len(order) else order
        closer = depth[first] < nearest[pixel[first]]
        picture[pixel[first][closer]] = colours[inside][first][closer]
        nearest[pixel[first][closer]] = depth[first][closer]
    return np.clip(np.rint(picture), 0, 255).astype(np.uint8).reshape(height, width, 3)
