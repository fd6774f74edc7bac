"""Synthetic scenes with exact ground truth, rendered by a small vectorised ray caster.

Each scene is a few analytic primitives (planes, rotated boxes, spheres, ellipsoids, a capped
vertical cylinder) seen by a pinhole camera at the origin of the OpenCV frame (x right, y down,
z forward, metres). Rendering gives the exact depth of every pixel centre and a textured,
shaded photo (checker texture, per-object colour) so Canny sees real image edges. Every
primitive also has a signed distance, so "how far is this point from the true surface"
is exact, not estimated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ppd_core.geometry.camera import Intrinsics, intrinsics_from_fov

SCENE_NAMES = ("boxes", "spheres", "pole", "wall_floor", "ball", "head")
_ELLIPSOID_BISECTIONS = 56  # halvings of the root bracket: 2^-56 of its width, below float64 resolution
_LIGHT = np.array([-0.4, -0.8, -0.45]) / np.linalg.norm([-0.4, -0.8, -0.45])  # toward the light


def _yaw_matrix(degrees: float) -> np.ndarray:
    """Rotation about the vertical (y) axis."""
    a = math.radians(degrees)
    return np.array([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])


def _ellipsoid_root(radii: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per row of q (N, 3), the t > -min(radii^2) where sum((radii q / (radii^2 + t))^2) = 1.

    Bounding each term by the smallest and largest radius brackets the root; each
    component is its own contiguous array because this loop dominates scoring time."""
    r2 = radii**2
    rq = [np.ascontiguousarray(radii[i] * q[:, i]) for i in range(3)]
    length = np.linalg.norm(q, axis=-1)
    low = np.maximum(radii.min() * length - r2.max(), -r2.min())
    high = np.maximum(radii.max() * length - r2.min(), low)
    for _ in range(_ELLIPSOID_BISECTIONS):
        mid = 0.5 * (low + high)
        root_above = (rq[0] / (r2[0] + mid)) ** 2 + (rq[1] / (r2[1] + mid)) ** 2 + (rq[2] / (r2[2] + mid)) ** 2 > 1.0
        np.copyto(low, mid, where=root_above)
        np.copyto(high, mid, where=~root_above)
    return 0.5 * (low + high)


@dataclass
class Plane:
    """The infinite plane through `point` with unit `normal`."""

    point: tuple[float, float, float]
    normal: tuple[float, float, float]
    color: tuple[float, float, float]

    def intersect(self, rays: np.ndarray) -> np.ndarray:
        n, p0 = np.asarray(self.normal, float), np.asarray(self.point, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (n @ p0) / (rays @ n)
        return np.where(t > 0, t, np.inf)

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        return (points - np.asarray(self.point, float)) @ np.asarray(self.normal, float)

    def surface_normal(self, points: np.ndarray) -> np.ndarray:
        return np.broadcast_to(np.asarray(self.normal, float), points.shape)


@dataclass
class Box:
    """A box of half extents `half` centred at `center`, turned `yaw_deg` about the y axis."""

    center: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw_deg: float
    color: tuple[float, float, float]
    rotation: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rotation = _yaw_matrix(self.yaw_deg)

    def _local(self, points: np.ndarray) -> np.ndarray:
        return (points - np.asarray(self.center, float)) @ self.rotation

    def intersect(self, rays: np.ndarray) -> np.ndarray:
        origin = -np.asarray(self.center, float) @ self.rotation
        direction = rays @ self.rotation
        half = np.asarray(self.half, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (-half - origin) / direction
            t2 = (half - origin) / direction
        t_near = np.nanmax(np.minimum(t1, t2), axis=-1)
        t_far = np.nanmin(np.maximum(t1, t2), axis=-1)
        return np.where((t_near <= t_far) & (t_near > 0), t_near, np.inf)

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        q = np.abs(self._local(points)) - np.asarray(self.half, float)
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
        inside = np.minimum(q.max(axis=-1), 0.0)
        return outside + inside

    def surface_normal(self, points: np.ndarray) -> np.ndarray:
        local = self._local(points) / np.asarray(self.half, float)
        axis = np.abs(local).argmax(axis=-1)
        normal = np.zeros_like(local)
        np.put_along_axis(normal, axis[..., None], np.sign(np.take_along_axis(local, axis[..., None], -1)), -1)
        return normal @ self.rotation.T


@dataclass
class Sphere:
    center: tuple[float, float, float]
    radius: float
    color: tuple[float, float, float]

    def intersect(self, rays: np.ndarray) -> np.ndarray:
        c = np.asarray(self.center, float)
        a = (rays * rays).sum(-1)
        b = rays @ c
        disc = b * b - a * (c @ c - self.radius**2)
        with np.errstate(invalid="ignore"):
            t = (b - np.sqrt(disc)) / a
        return np.where((disc >= 0) & (t > 0), t, np.inf)

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        return np.linalg.norm(points - np.asarray(self.center, float), axis=-1) - self.radius

    def surface_normal(self, points: np.ndarray) -> np.ndarray:
        return (points - np.asarray(self.center, float)) / self.radius


@dataclass
class Ellipsoid:
    """An axis-aligned ellipsoid centred at `center` with semi-axes `radii` (x, y, z)."""

    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    color: tuple[float, float, float]

    def intersect(self, rays: np.ndarray) -> np.ndarray:
        # In coordinates scaled by 1 / radii the ellipsoid is the unit sphere.
        radii = np.asarray(self.radii, float)
        c = np.asarray(self.center, float) / radii
        d = rays / radii
        a = (d * d).sum(-1)
        b = d @ c
        disc = b * b - a * (c @ c - 1.0)
        with np.errstate(invalid="ignore"):
            t = (b - np.sqrt(disc)) / a
        return np.where((disc >= 0) & (t > 0), t, np.inf)

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """Exact: with q the point relative to the centre (in the positive octant, by symmetry),
        the nearest surface point is r^2 q / (r^2 + t) for the root t > -min(r^2) of
        sum((r q / (r^2 + t))^2) = 1. That sum falls monotonically in t, so bisection finds t."""
        radii = np.asarray(self.radii, float)
        q = np.abs(np.asarray(points, float) - np.asarray(self.center, float))
        shape = q.shape[:-1]
        q = q.reshape(-1, 3)
        t = _ellipsoid_root(radii, q)
        nearest = radii**2 * q / (radii**2 + t[:, None])
        distance = np.linalg.norm(q - nearest, axis=-1)
        inside = ((q / radii) ** 2).sum(-1) < 1.0
        return np.where(inside, -distance, distance).reshape(shape)

    def surface_normal(self, points: np.ndarray) -> np.ndarray:
        gradient = (points - np.asarray(self.center, float)) / np.asarray(self.radii, float) ** 2
        return gradient / np.linalg.norm(gradient, axis=-1, keepdims=True)


@dataclass
class Pole:
    """A vertical cylinder (axis along y) at (x, z) = `base`, between heights y_top and y_bottom."""

    base: tuple[float, float]
    radius: float
    y_top: float
    y_bottom: float
    color: tuple[float, float, float]

    def intersect(self, rays: np.ndarray) -> np.ndarray:
        bx, bz = self.base
        dx, dy, dz = rays[..., 0], rays[..., 1], rays[..., 2]
        a = dx * dx + dz * dz
        b = dx * bx + dz * bz
        disc = b * b - a * (bx * bx + bz * bz - self.radius**2)
        with np.errstate(invalid="ignore", divide="ignore"):
            t = (b - np.sqrt(disc)) / a
        y = t * dy
        hit = (disc >= 0) & (t > 0) & (y >= self.y_top) & (y <= self.y_bottom)
        return np.where(hit, t, np.inf)

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        radial = np.hypot(points[..., 0] - self.base[0], points[..., 2] - self.base[1]) - self.radius
        mid, half = 0.5 * (self.y_top + self.y_bottom), 0.5 * (self.y_bottom - self.y_top)
        vertical = np.abs(points[..., 1] - mid) - half
        q = np.stack([radial, vertical], -1)
        return np.linalg.norm(np.maximum(q, 0.0), axis=-1) + np.minimum(q.max(-1), 0.0)

    def surface_normal(self, points: np.ndarray) -> np.ndarray:
        normal = np.zeros_like(points)
        normal[..., 0] = points[..., 0] - self.base[0]
        normal[..., 2] = points[..., 2] - self.base[1]
        return normal / np.linalg.norm(normal, axis=-1, keepdims=True)


@dataclass
class Rendering:
    """Exact depth (metres, float64), photo (uint8 RGB) and primitive id of every pixel."""

    depth: np.ndarray
    rgb: np.ndarray
    object_id: np.ndarray
    intrinsics: Intrinsics


@dataclass
class Scene:
    name: str
    primitives: list

    def distance_to_surface(self, points: np.ndarray) -> np.ndarray:
        """Exact unsigned distance (metres) from each point (N, 3) to the nearest surface."""
        points = np.asarray(points, dtype=np.float64)
        return np.min([np.abs(p.signed_distance(points)) for p in self.primitives], axis=0)

    def render(self, width: int, height: int, hfov_deg: float = 60.0) -> Rendering:
        """Ray-cast every pixel centre; shade with a checker texture and one directional light."""
        intrinsics = intrinsics_from_fov(width, height, hfov_deg)
        u = (np.arange(width) + 0.5 - intrinsics.cx) / intrinsics.fx
        v = (np.arange(height) + 0.5 - intrinsics.cy) / intrinsics.fy
        rays = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((height, width))), -1)
        hits = np.stack([p.intersect(rays) for p in self.primitives])  # z == t since ray z is 1
        object_id = hits.argmin(axis=0)
        depth = hits.min(axis=0)
        points = rays * depth[..., None]
        rgb = np.zeros((height, width, 3))
        for k, primitive in enumerate(self.primitives):
            here = object_id == k
            if not here.any():
                continue
            p = points[here]
            checker = (np.floor(p * 8.0).astype(np.int64).sum(-1) % 2) * 0.35 + 0.65
            light = np.clip(primitive.surface_normal(p) @ _LIGHT, 0.0, None)
            shade = 0.35 + 0.65 * np.abs(light)
            rgb[here] = np.asarray(primitive.color) * (checker * shade)[:, None]
        photo = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
        return Rendering(depth=depth, rgb=photo, object_id=object_id, intrinsics=intrinsics)


def _room(wall_z: float, floor_y: float = 1.2) -> list:
    return [
        Plane((0.0, 0.0, wall_z), (0.0, 0.0, -1.0), (0.85, 0.82, 0.75)),
        Plane((0.0, floor_y, 0.0), (0.0, -1.0, 0.0), (0.55, 0.45, 0.35)),
    ]


def make_scene(name: str) -> Scene:
    """One of `SCENE_NAMES`: boxes, spheres, a thin pole, a wall-and-floor corner with a shelf,
    a ball or a head and shoulders (rounded silhouettes that graze into a jump to a far wall)."""
    if name == "boxes":
        prims = _room(5.0) + [
            Box((-0.6, 0.9, 2.4), (0.3, 0.3, 0.3), 30.0, (0.8, 0.25, 0.2)),
            Box((0.75, 0.75, 3.2), (0.35, 0.45, 0.35), -20.0, (0.2, 0.45, 0.8)),
            Box((0.05, 1.0, 3.8), (0.5, 0.2, 0.25), 10.0, (0.3, 0.7, 0.3)),
        ]
    elif name == "spheres":
        prims = _room(4.5) + [
            Sphere((-0.55, 0.7, 2.2), 0.5, (0.85, 0.3, 0.25)),
            Sphere((0.65, 0.8, 3.0), 0.4, (0.25, 0.5, 0.85)),
            Sphere((0.1, -0.25, 3.4), 0.35, (0.9, 0.8, 0.2)),
        ]
    elif name == "pole":
        prims = _room(3.5) + [
            Pole((0.15, 1.8), 0.05, -3.0, 1.2, (0.2, 0.2, 0.25)),
            Pole((-0.7, 2.4), 0.04, -3.0, 1.2, (0.7, 0.3, 0.6)),
        ]
    elif name == "wall_floor":
        prims = _room(4.0) + [
            Plane((1.6, 0.0, 0.0), (-0.94, 0.0, -0.34), (0.7, 0.75, 0.85)),
            Box((-0.6, -0.1, 3.8), (0.7, 0.06, 0.2), 0.0, (0.6, 0.4, 0.2)),
            Box((-0.2, 0.95, 3.7), (0.9, 0.25, 0.3), 0.0, (0.35, 0.35, 0.4)),
        ]
    elif name == "ball":
        prims = _room(3.0) + [
            Sphere((0.0, 0.05, 1.5), 0.5, (0.85, 0.45, 0.2)),
            Sphere((0.95, 0.6, 2.4), 0.3, (0.3, 0.6, 0.8)),
        ]
    elif name == "head":
        prims = _room(1.6) + [
            Ellipsoid((0.0, -0.05, 0.55), (0.085, 0.115, 0.1), (0.85, 0.65, 0.55)),
            Pole((0.0, 0.57), 0.045, 0.0, 0.2, (0.8, 0.6, 0.5)),
            Ellipsoid((0.0, 0.25, 0.6), (0.23, 0.1, 0.12), (0.3, 0.35, 0.6)),
        ]
    else:
        raise ValueError(f"unknown scene {name!r}; choose from {', '.join(SCENE_NAMES)}")
    return Scene(name, prims)
