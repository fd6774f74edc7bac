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
HOLE_SCENE_NAMES = ("crate", "fence", "wheel", "shelf", "leaves", "skyline")
"""Thin structures whose depth has holes: a depth camera's near their edges (`sensor_holes`),
or, in `skyline`, the sky that MoGe-2's mask removes."""
_ELLIPSOID_BISECTIONS = 56  # halvings of the root bracket: 2^-56 of its width, below float64 resolution
_SKY_COLOR = (0.55, 0.75, 0.95)
_LIGHT = np.array([-0.4, -0.8, -0.45]) / np.linalg.norm([-0.4, -0.8, -0.45])  # toward the light


def _rotation(yaw_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """Object-to-camera rotation: roll about the view axis (z), then pitch about x, then yaw
    about the vertical (y)."""
    y, p, r = (math.radians(a) for a in (yaw_deg, pitch_deg, roll_deg))
    yaw = np.array([[math.cos(y), 0.0, math.sin(y)], [0.0, 1.0, 0.0], [-math.sin(y), 0.0, math.cos(y)]])
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(p), -math.sin(p)], [0.0, math.sin(p), math.cos(p)]])
    roll = np.array([[math.cos(r), -math.sin(r), 0.0], [math.sin(r), math.cos(r), 0.0], [0.0, 0.0, 1.0]])
    return yaw @ pitch @ roll


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
    """A box of half extents `half` centred at `center`, turned `roll_deg` about the view axis,
    then `yaw_deg` about the y axis."""

    center: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw_deg: float
    color: tuple[float, float, float]
    roll_deg: float = 0.0
    rotation: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rotation = _rotation(self.yaw_deg, roll_deg=self.roll_deg)

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
    """An ellipsoid centred at `center` with semi-axes `radii` along its own x, y, z, which are
    turned `pitch_deg` about x, then `yaw_deg` about y (a leaf: one radius much smaller)."""

    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    color: tuple[float, float, float]
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    rotation: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rotation = _rotation(self.yaw_deg, self.pitch_deg)

    def intersect(self, rays: np.ndarray) -> np.ndarray:
        # In its own frame scaled by 1 / radii the ellipsoid is the unit sphere.
        radii = np.asarray(self.radii, float)
        c = (np.asarray(self.center, float) @ self.rotation) / radii
        d = (rays @ self.rotation) / radii
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
        q = np.abs((np.asarray(points, float) - np.asarray(self.center, float)) @ self.rotation)
        shape = q.shape[:-1]
        q = q.reshape(-1, 3)
        t = _ellipsoid_root(radii, q)
        nearest = radii**2 * q / (radii**2 + t[:, None])
        distance = np.linalg.norm(q - nearest, axis=-1)
        inside = ((q / radii) ** 2).sum(-1) < 1.0
        return np.where(inside, -distance, distance).reshape(shape)

    def surface_normal(self, points: np.ndarray) -> np.ndarray:
        local = (points - np.asarray(self.center, float)) @ self.rotation
        gradient = (local / np.asarray(self.radii, float) ** 2) @ self.rotation.T
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
    """Exact depth (metres, float64; inf where no surface is hit: sky), photo (uint8 RGB) and
    primitive id of every pixel (-1: sky)."""

    depth: np.ndarray
    rgb: np.ndarray
    object_id: np.ndarray
    intrinsics: Intrinsics


@dataclass
class Scene:
    name: str
    primitives: list
    sensor_holes: bool = False  # its depth is measured by a depth camera, with holes near edges

    def distance_to_surface(self, points: np.ndarray) -> np.ndarray:
        """Exact unsigned distance (metres) from each point (N, 3) to the nearest surface.
        An ellipsoid's distance (a bisection) is only computed for points its bounding ball
        might bring nearer than the other primitives: a scene of forty leaves stays quick."""
        points = np.asarray(points, dtype=np.float64)
        cheap = [p for p in self.primitives if not isinstance(p, Ellipsoid)]
        nearest = np.full(points.shape[:-1], np.inf)
        for primitive in cheap:
            np.minimum(nearest, np.abs(primitive.signed_distance(points)), out=nearest)
        for ellipsoid in (p for p in self.primitives if isinstance(p, Ellipsoid)):
            ball = np.linalg.norm(points - np.asarray(ellipsoid.center), axis=-1) - max(ellipsoid.radii)
            maybe = ball < nearest
            nearest[maybe] = np.minimum(nearest[maybe], np.abs(ellipsoid.signed_distance(points[maybe])))
        return nearest

    def render(self, width: int, height: int, hfov_deg: float = 60.0) -> Rendering:
        """Ray-cast every pixel centre; shade with a checker texture and one directional light."""
        intrinsics = intrinsics_from_fov(width, height, hfov_deg)
        u = (np.arange(width) + 0.5 - intrinsics.cx) / intrinsics.fx
        v = (np.arange(height) + 0.5 - intrinsics.cy) / intrinsics.fy
        rays = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((height, width))), -1)
        hits = np.stack([p.intersect(rays) for p in self.primitives])  # z == t since ray z is 1
        depth = hits.min(axis=0)
        sky = np.isinf(depth)
        object_id = np.where(sky, -1, hits.argmin(axis=0))
        with np.errstate(invalid="ignore"):
            points = rays * depth[..., None]
        rgb = np.zeros((height, width, 3))
        rgb[sky] = _SKY_COLOR
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
    elif name in HOLE_SCENE_NAMES:
        return Scene(name, _THIN_STRUCTURES[name](), sensor_holes=name != "skyline")
    else:
        raise ValueError(f"unknown scene {name!r}; choose from {', '.join(SCENE_NAMES + HOLE_SCENE_NAMES)}")
    return Scene(name, prims)


def _slats() -> list:
    """A crate of horizontal slats with corner posts, turned 25 degrees, before a wall."""
    wood = (0.75, 0.6, 0.4)
    slats = [Box((0.0, y, 1.5), (0.45, 0.03, 0.01), 25.0, wood) for y in np.arange(-0.35, 0.66, 0.1)]
    posts = [Box((x * math.cos(math.radians(25.0)), 0.15, 1.5 - x * math.sin(math.radians(25.0)) + 0.02),
                 (0.03, 0.55, 0.02), 25.0, (0.6, 0.45, 0.3)) for x in (-0.42, 0.42)]
    return _room(2.6) + slats + posts


def _fence() -> list:
    """Pickets on two rails, the fence turned 15 degrees, before a wall."""
    paint = (0.9, 0.9, 0.85)
    turn = math.radians(15.0)
    pickets = [Box((x * math.cos(turn), 0.1, 1.9 - x * math.sin(turn)), (0.04, 0.6, 0.01), 15.0, paint)
               for x in np.arange(-0.98, 0.99, 0.14)]
    rails = [Box((0.0, y, 1.9 + 0.02), (1.1, 0.03, 0.01), 15.0, (0.7, 0.7, 0.65)) for y in (-0.25, 0.45)]
    return _room(3.4) + pickets + rails


def _spokes() -> list:
    """A wheel facing the camera: a hub, twelve spokes and a rim of short bars."""
    wheel = (0.0, -0.05, 1.4)
    metal = (0.45, 0.45, 0.5)
    hub = Sphere(wheel, 0.06, (0.3, 0.3, 0.35))
    spokes = [Box((wheel[0] + 0.24 * math.cos(a), wheel[1] + 0.24 * math.sin(a), wheel[2]), (0.2, 0.0175, 0.015),
                  0.0, metal, roll_deg=math.degrees(a)) for a in np.radians(np.arange(0.0, 360.0, 30.0))]
    rim = [Box((wheel[0] + 0.45 * math.cos(a), wheel[1] + 0.45 * math.sin(a), wheel[2]), (0.042, 0.025, 0.02),
               0.0, (0.35, 0.25, 0.2), roll_deg=math.degrees(a) + 90.0) for a in np.radians(np.arange(0.0, 360.0, 10.0))]
    return _room(2.4) + [hub] + spokes + rim


def _shelf() -> list:
    """An open bookshelf turned 20 degrees: two sides, four boards 4 cm thick, a few books, before a wall."""
    turn = math.radians(20.0)

    def at(x: float, y: float, z: float) -> tuple[float, float, float]:
        return (x * math.cos(turn) + z * math.sin(turn), y, 1.7 - x * math.sin(turn) + z * math.cos(turn))

    board = (0.8, 0.7, 0.55)
    sides = [Box(at(x, 0.2, 0.0), (0.02, 0.75, 0.14), 20.0, board) for x in (-0.5, 0.5)]
    boards = [Box(at(0.0, y, 0.0), (0.48, 0.02, 0.14), 20.0, board) for y in (-0.5, -0.1, 0.3, 0.7)]
    books = [Box(at(x, y - 0.11, 0.02), (w, 0.09, 0.1), 20.0, color) for x, y, w, color in (
        (-0.3, -0.1, 0.06, (0.7, 0.2, 0.2)), (-0.15, -0.1, 0.03, (0.2, 0.4, 0.7)), (0.2, 0.3, 0.05, (0.3, 0.6, 0.3)))]
    return _room(2.8) + sides + boards + books


def _leaves() -> list:
    """Forty leaves, thin ellipsoids turned every way, on a thin stem, before a wall."""
    rng = np.random.default_rng(7)
    leaves = [Ellipsoid(tuple(centre), (0.05, 0.028, 0.004), (0.25 + 0.2 * g, 0.55 + 0.3 * g, 0.2),
                        yaw_deg=yaw, pitch_deg=pitch)
              for centre, g, yaw, pitch in zip(rng.uniform((-0.55, -0.45, 1.0), (0.55, 0.45, 1.5), (40, 3)),
                                               rng.uniform(0, 1, 40), rng.uniform(-60, 60, 40), rng.uniform(-60, 60, 40))]
    return _room(2.2) + [Pole((0.05, 1.3), 0.018, -0.6, 1.2, (0.4, 0.3, 0.2))] + leaves


def _skyline() -> list:
    """A fence, a lamp post before it and a tree against the sky, a hill behind: no room, and
    the sky has no depth (what MoGe-2's mask removes)."""
    ground = Plane((0.0, 1.2, 0.0), (0.0, -1.0, 0.0), (0.45, 0.55, 0.3))
    hill = Box((0.0, 0.6, 11.0), (30.0, 0.75, 0.5), 0.0, (0.35, 0.5, 0.3))
    turn = math.radians(-20.0)
    pickets = [Box((x * math.cos(turn), 0.35, 2.4 - x * math.sin(turn)), (0.04, 0.85, 0.012), -20.0, (0.85, 0.85, 0.8))
               for x in np.arange(-1.3, 0.31, 0.14)]
    rail = Box((-0.5 * math.cos(turn), -0.2, 2.42 + 0.5 * math.sin(turn)), (0.85, 0.035, 0.012), -20.0,
               (0.7, 0.7, 0.65))
    post = Pole((-0.3, 1.8), 0.05, -1.9, 1.2, (0.25, 0.25, 0.3))
    crown = Sphere((1.3, -0.6, 5.0), 0.7, (0.2, 0.45, 0.2))
    trunk = Pole((1.3, 5.0), 0.1, -0.3, 1.2, (0.4, 0.3, 0.2))
    return [ground, hill, rail, post, crown, trunk] + pickets


_THIN_STRUCTURES = {"crate": _slats, "fence": _fence, "wheel": _spokes, "shelf": _shelf, "leaves": _leaves,
                    "skyline": _skyline}
