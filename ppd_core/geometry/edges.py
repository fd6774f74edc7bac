"""Depth discontinuities: where a depth map jumps between surfaces, and the pixels smeared across.

Canny edges of the log-depth and of the photo say where to look; relative depth-jump tests
in disparity (affine across any plane, so tilted planes and creases pass) decide, at several
scales, and curvature-aware so that rounded objects grazing into a jump keep their rims;
flagged pixels that continue a clean surface are given back. Beside a hole (NaN, masked) the
side away from it alone judges a pixel, with no give-back. The thresholds grow with the
map's own grain. `ppd_core.geometry.lift` drops what is found, and the mesher cuts there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from scipy import ndimage

from mesh.grid import relative_noise
from ppd_core.errors import BadInputError
from ppd_core.options import check_option

NOISE_SIGMAS = 3.0
"""Jumps smaller than this many standard deviations of the depth's own pixel noise are never
discontinuities: a predicted map is slightly grainy, and a fixed 1-3% threshold would
otherwise cut a noisy but continuous surface to pieces."""

GIVE_BACK_SCALES = (1, 2, 4)
"""A flagged pixel is given back when the surface of its clean neighbours on one side reaches
it at all these scales (pixels between samples). One scale is not enough: a down-sampled
map's bilinear ramp fades into the far surface as a straight line, and only the wider
scales see that line bend away from the clean surface beyond it."""

HOLE_MISSES = 3
"""A pixel beside a hole is off its side's surface when it misses it at this many scales: one
or two misses are more often a far sample on the next surface, or a smoothed map's grain at
the wide scales, than smear (which misses at every scale past its own width)."""

_Positions = tuple[np.ndarray, ...]  # np.nonzero's answer: the pixels a test looks at

_SOBEL_SCALE = 1000.0  # log-depth Sobel responses are scaled by this into int16 for cv2.Canny


@dataclass(frozen=True)
class EdgeThresholds:
    """The detector's settings, all derived from the one user-facing `edge_strength` in [0, 1]."""

    jump: float  # relative depth jump between two sides (or two 4-neighbours) that is a discontinuity
    off_surface: float  # relative miss from a side's surface that puts a pixel off it
    radius: int  # largest scale (pixels) of the side tests; the band around Canny edges is twice that
    depth_canny: tuple[float, float]  # Canny hysteresis on log-depth slope per pixel (low, high)
    photo_canny: tuple[float, float]  # Canny hysteresis on 8-bit grey photo gradients

    @classmethod
    def from_strength(cls, edge_strength: float) -> EdgeThresholds:
        """Stronger = more pixels flagged: smaller jumps, wider band, lower Canny thresholds."""
        check_option("edge_strength", edge_strength)
        s = float(edge_strength)
        return cls(
            jump=0.01 + 0.02 * (1.0 - s),
            off_surface=0.01 - 0.01 * s + 0.0005,
            radius=int(round(3 + 4 * s)),
            depth_canny=(0.01 - 0.01 * s + 0.001, 0.02 - 0.02 * s + 0.002),
            photo_canny=(100.0 - 80.0 * s, 200.0 - 120.0 * s),
        )


def valid_depth(depth: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0)


def filled_log_depth(depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """log(depth) with each invalid pixel given its nearest valid pixel's value."""
    log_depth = np.zeros(depth.shape, dtype=np.float32)
    log_depth[valid] = np.log(depth[valid])
    if valid.all():
        return log_depth
    _, (rows, cols) = ndimage.distance_transform_edt(~valid, return_indices=True)
    return log_depth[rows, cols]


def _depth_canny(log_depth: np.ndarray, low: float, high: float) -> np.ndarray:
    """Canny edges of the log-depth map (thresholds in log-depth change per pixel)."""
    # The 3x3 Sobel of a unit ramp is 8, so per-pixel slopes are scaled by 8 * _SOBEL_SCALE.
    dx = cv2.Sobel(log_depth, cv2.CV_32F, 1, 0, ksize=3, borderType=cv2.BORDER_REPLICATE)
    dy = cv2.Sobel(log_depth, cv2.CV_32F, 0, 1, ksize=3, borderType=cv2.BORDER_REPLICATE)
    dx, dy = (np.clip(g * _SOBEL_SCALE, -32767, 32767).astype(np.int16) for g in (dx, dy))
    scale = 8.0 * _SOBEL_SCALE
    return cv2.Canny(dx, dy, low * scale, high * scale, L2gradient=True) > 0


def _photo_canny(rgb: np.ndarray, low: float, high: float) -> np.ndarray:
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return cv2.Canny(grey, low, high, L2gradient=True) > 0


def square_kernel(radius: int) -> np.ndarray:
    return np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)


def _near_canny_edges(log_depth: np.ndarray, rgb: Optional[np.ndarray],
                      settings: EdgeThresholds) -> np.ndarray:
    """Pixels within 2 * `radius` of a Canny edge of the log-depth or of the photo: where to look."""
    edges = _depth_canny(log_depth, *settings.depth_canny)
    if rgb is not None:
        edges |= _photo_canny(rgb, *settings.photo_canny)
    # A smeared ramp at the widest scale spans up to 2 * radius pixels, and Canny marks its
    # steepest log-depth slope, at the near end: the band must reach the far end too.
    return cv2.dilate(edges.astype(np.uint8), square_kernel(2 * settings.radius)) > 0


def check_depth(depth: np.ndarray) -> np.ndarray:
    depth = np.asarray(depth)
    if depth.ndim != 2 or depth.size == 0 or not np.issubdtype(depth.dtype, np.number):
        raise BadInputError(f"depth must be a non-empty 2-D numeric map, got shape {depth.shape}")
    return depth.astype(np.float32, copy=False)


def check_rgb(rgb: Optional[np.ndarray], shape: tuple[int, int]) -> Optional[np.ndarray]:
    """The photo on the depth grid: same size, or resized when only the resolution differs."""
    if rgb is None:
        return None
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise BadInputError(f"photo must be (H, W, 3) uint8 RGB, got {rgb.dtype} {rgb.shape}")
    h, w = shape
    if rgb.shape[:2] == (h, w):
        return rgb
    if abs(rgb.shape[1] / rgb.shape[0] - w / h) > 0.01 * (w / h):
        raise BadInputError(f"photo {rgb.shape[1]}x{rgb.shape[0]} and depth {w}x{h} differ in aspect ratio")
    return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)


def _along(image: np.ndarray, taps: dict[int, float], axis: int) -> np.ndarray:
    """Linear filter along columns (axis 0) or rows (axis 1): sum of taps[o] * image[p + o],
    edges replicated. One OpenCV pass: the whole-image tests run on every pixel."""
    reach = max(abs(o) for o in taps)
    kernel = np.zeros(2 * reach + 1, np.float32)
    for offset, weight in taps.items():
        kernel[reach + offset] = weight
    kernel = kernel[:, None] if axis == 0 else kernel[None, :]
    return cv2.filter2D(image, cv2.CV_32F, kernel, borderType=cv2.BORDER_REPLICATE)


def _next(mask: np.ndarray, axis: int) -> np.ndarray:
    """mask(p + 1) along the axis (False past the end)."""
    moved = np.zeros(mask.shape, dtype=bool)
    if axis == 0:
        moved[:-1] = mask[1:]
    else:
        moved[:, :-1] = mask[:, 1:]
    return moved


def _both_pixels(pairs: np.ndarray, axis: int) -> np.ndarray:
    """Pairs (p, p+1) along the axis, marked at p -> both of their pixels."""
    both = pairs.copy()
    if axis == 0:
        both[1:] |= pairs[:-1]
    else:
        both[:, 1:] |= pairs[:, :-1]
    return both


class _Padded:
    """A map padded by `reach` pixels (edge values, or `fill`), read at a few pixels and at
    offsets from them along a column (axis 0) or a row (axis 1): the side tests only run
    where a cheap whole-image test says they might hold."""

    def __init__(self, image: np.ndarray, reach: int, fill: Optional[bool] = None) -> None:
        self.reach = reach
        if fill is None:
            self.image = np.pad(image, reach, mode="edge")
        else:
            self.image = np.pad(image, reach, constant_values=fill)

    def read(self, at: _Positions, axis: int, step: int, multiples: range) -> dict[int, np.ndarray]:
        """{j: map(p + j * step along the axis)} for the pixels `at`, j in `multiples`."""
        rows, cols = at[0] + self.reach, at[1] + self.reach
        if axis == 0:
            return {j: self.image[rows + j * step, cols] for j in multiples}
        return {j: self.image[rows, cols + j * step] for j in multiples}


@dataclass(frozen=True)
class _Tolerances:
    """Relative thresholds of the side tests. Flagging ones are raised to NOISE_SIGMAS standard
    deviations of the grain seen through their filters (sides' difference sqrt(10), a line
    sqrt(6), two pixels sqrt(2)). The parabola (gain sqrt(20)) only excuses a curved rim, so
    it shares the line's floor: a looser one would excuse smear on grainy maps. Giving a
    pixel back is the risky direction, so its floor is one standard deviation: on grain,
    only pixels that clearly continue their surface are given back."""

    jump: float  # two sides' surfaces (or a 4-neighbour pair) differ by more: a discontinuity
    miss: float  # farther than this from the line (or parabola) through one side: off that side
    fit: float  # within this of the line (or parabola) through clean pixels: on their surface
    value_gap: float  # two pixels differ by more than this: distinct values

    @classmethod
    def for_map(cls, settings: EdgeThresholds, noise: float) -> _Tolerances:
        def floored(threshold: float, sigmas: float, gain: float) -> float:
            return max(threshold, sigmas * np.sqrt(gain) * noise)

        return cls(jump=floored(settings.jump, NOISE_SIGMAS, 10.0),
                   miss=floored(settings.off_surface, NOISE_SIGMAS, 6.0),
                   fit=floored(settings.off_surface, 1.0, 6.0),
                   value_gap=floored(settings.off_surface, NOISE_SIGMAS, 2.0))


def _line_miss(d: dict[int, np.ndarray], side: int) -> np.ndarray:
    """D(p) minus the line through the samples d[side], d[2 * side] (d[j] = D(p + j*k))."""
    return d[0] - 2.0 * d[side] + d[2 * side]


def _parabola_miss(d: dict[int, np.ndarray], side: int) -> np.ndarray:
    """D(p) minus the parabola through the samples d[side], d[2 * side], d[3 * side]."""
    return d[0] - 3.0 * d[side] + 3.0 * d[2 * side] - d[3 * side]


def _sharp_step_pairs(disparity: np.ndarray, axis: int, tol: _Tolerances) -> np.ndarray:
    """Pairs (p, p+1) along the axis across a sharp step, marked at p: D jumps by more than
    `jump` and the line through p-1, p misses p+1, and the line through p+2, p+1 misses p,
    by as much. Steep but planar surfaces continue linearly and pass."""
    next_ = _along(disparity, {1: 1.0}, axis)
    bend_here = np.abs(_along(disparity, {-1: 1.0, 0: -2.0, 1: 1.0}, axis))
    bend_next = np.abs(_along(disparity, {0: 1.0, 1: -2.0, 2: 1.0}, axis))
    return ((np.abs(next_ - disparity) > tol.jump * np.minimum(disparity, next_))
            & (bend_here > tol.jump * next_) & (bend_next > tol.jump * disparity))


def _off_side(d: dict[int, np.ndarray], side: int, tol: _Tolerances) -> np.ndarray:
    """Off the surface on one side (-1 before, +1 after): off the line through the samples
    at side*k, 2*side*k and off the parabola that adds 3*side*k. The parabola follows a
    surface that curves away toward a grazing silhouette (a ball, a head), whose rim
    pixels a line from a few pixels in would miss."""
    limit = tol.miss * d[0]
    return (np.abs(_line_miss(d, side)) > limit) & (np.abs(_parabola_miss(d, side)) > limit)


def _between_sides(disparity: _Padded, at: _Positions, axis: int, k: int, tol: _Tolerances) -> np.ndarray:
    """At pixels `at`: inside a smeared step at scale k along the axis. A blur or a resize
    mixes the two sides, so a smeared pixel lies between the sides' values D(p -/+ k), off
    both sides' surfaces, which disagree at p by more than `jump`. Planes of any tilt,
    creases (both surfaces meet there), thin objects (not between their sides) and convex
    bends such as a box's edge (farther than both surfaces; a smeared pixel is nearer
    than at least one) pass."""
    d = disparity.read(at, axis, k, range(-3, 4))
    here = d[0]
    before, after = _line_miss(d, -1), _line_miss(d, 1)
    rise_before, rise_after = here - d[-1], here - d[1]
    margin = tol.value_gap * here
    between_values = ((rise_before * rise_after < 0) & (np.abs(rise_before) > margin)
                      & (np.abs(rise_after) > margin))
    sides_disagree = np.abs(after - before) > tol.jump * here
    not_convex_bend = np.maximum(before, after) > 0
    return (between_values & sides_disagree & not_convex_bend
            & _off_side(d, -1, tol) & _off_side(d, 1, tol))


def _smeared(disparity: np.ndarray, scales: range, tol: _Tolerances, candidates: np.ndarray) -> np.ndarray:
    """Candidates inside a smeared step along a column or a row at some scale."""
    padded = _Padded(disparity, 3 * scales[-1])
    jump = tol.jump * disparity
    found = np.zeros(candidates.shape, dtype=bool)
    for axis in (0, 1):
        # The sides' disagreement is rare: tested on every pixel, the rest only where it holds.
        maybe = np.zeros(candidates.shape, dtype=bool)
        for k in scales:
            maybe |= np.abs(_along(disparity, {-2 * k: -1.0, -k: 2.0, k: -2.0, 2 * k: 1.0}, axis)) > jump
        at = np.nonzero(maybe & candidates)
        for k in scales:
            found[at] |= _between_sides(padded, at, axis, k, tol)
    return found


def _continues_clean_side(disparity: _Padded, clean: _Padded, at: _Positions, axis: int, side: int,
                          tol: _Tolerances) -> np.ndarray:
    """At pixels `at`: on the surface of the clean neighbours on one side (-1 before, +1 after)
    at every scale k of GIVE_BACK_SCALES, that is the line through clean p + side*k,
    p + 2*side*k, or the parabola that adds clean p + 3*side*k (a curved surface), reaches it."""
    fits = np.ones(at[0].shape, dtype=bool)
    for k in GIVE_BACK_SCALES:
        d = disparity.read(at, axis, side * k, range(4))
        is_clean = clean.read(at, axis, side * k, range(1, 4))
        limit = tol.fit * d[0]
        on_line = is_clean[1] & is_clean[2] & (np.abs(_line_miss(d, 1)) <= limit)
        on_parabola = is_clean[1] & is_clean[2] & is_clean[3] & (np.abs(_parabola_miss(d, 1)) <= limit)
        fits &= on_line | on_parabola
    return fits


def _anchored(disparity: np.ndarray, flagged: np.ndarray, valid: np.ndarray, tol: _Tolerances) -> np.ndarray:
    """Flagged pixels that continue a clean surface before or after them along a column or a
    row (see _continues_clean_side)."""
    reach = 3 * max(GIVE_BACK_SCALES)
    padded, clean = _Padded(disparity, reach), _Padded(valid & ~flagged, reach, fill=False)
    at = np.nonzero(flagged)
    fits = np.zeros(at[0].shape, dtype=bool)
    for axis in (0, 1):
        for side in (-1, 1):
            fits |= _continues_clean_side(padded, clean, at, axis, side, tol)
    anchored = np.zeros(flagged.shape, dtype=bool)
    anchored[at] = fits
    return anchored


def _smeared_beside_holes(disparity: np.ndarray, valid: np.ndarray, clean: np.ndarray, scales: range,
                          tol: _Tolerances) -> np.ndarray:
    """Valid pixels within `scales[-1]` pixels of an invalid one along a column or a row whose
    depth may come from across it. A hole (a sensor's, MoGe-2's sky) may hide a depth step: a
    filled and smoothed map mixes values from across it into the pixels around it, and only
    the side away from the hole says what their surface is. At each scale k whose samples on
    that side are clean, the pixel is on or off the line and parabola through them
    (`_off_side`); it is smeared when off at HOLE_MISSES scales or more, or on at none (nothing
    vouches for it: a sliver between two holes, or between a hole and a step)."""
    reach = scales[-1]
    at = np.nonzero(valid & (cv2.dilate((~valid).astype(np.uint8), square_kernel(reach)) > 0))
    padded = _Padded(disparity, 3 * reach)
    is_clean, has_depth = _Padded(clean, 3 * reach, fill=False), _Padded(valid, reach, fill=True)
    missed, vouched, judged = (np.zeros(at[0].shape, dtype=bool) for _ in range(3))
    for axis in (0, 1):
        for toward in (-1, 1):
            hole_there = ~np.logical_and.reduce(list(has_depth.read(at, axis, toward, range(1, reach + 1)).values()))
            here = tuple(a[hole_there] for a in at)
            misses, fits = np.zeros(here[0].shape, dtype=int), np.zeros(here[0].shape, dtype=bool)
            for k in scales:
                testable = np.logical_and.reduce(list(is_clean.read(here, axis, -toward * k, range(1, 4)).values()))
                off = _off_side(padded.read(here, axis, -toward * k, range(4)), 1, tol)
                misses += testable & off
                fits |= testable & ~off
            missed[hole_there] |= misses >= HOLE_MISSES
            vouched[hole_there] |= fits
            judged |= hole_there
    smeared = np.zeros(valid.shape, dtype=bool)
    smeared[at] = missed | (judged & ~vouched)
    return smeared


def _steps_between_surfaces(pairs: list[np.ndarray], anchored: np.ndarray) -> np.ndarray:
    """Both pixels of sharp-step pairs (one map per axis) whose two pixels are each on a clean
    surface: a real step between two surfaces, not the end of a smeared ramp."""
    found = np.zeros(anchored.shape, dtype=bool)
    for axis, pair in enumerate(pairs):
        found |= _both_pixels(pair & anchored & _next(anchored, axis), axis)
    return found


def discontinuity_mask(depth: np.ndarray, rgb: Optional[np.ndarray] = None, edge_strength: float = 0.5) -> np.ndarray:
    """(H, W) bool: pixels at or inside a depth discontinuity's transition.

    Canny edges of log-depth and of the photo locate candidate edges; within 2 * `radius`
    pixels of them two relative depth-jump tests flag pixels: both pixels of a sharp step
    (a 4-neighbour pair differing by more than the jump, so the mesher cuts it), and pixels
    lying between two surfaces that disagree by more than the jump, at scales 2..radius
    (the smeared, "flying" pixels of a blurred or resized map). Flagged pixels that continue
    a clean surface are given back. Tilted planes and creases pass. The thresholds grow with
    the map's own noise (`relative_noise`), so grain is never mistaken for an edge. Invalid
    pixels are never flagged; valid ones beside them (a sensor's holes, MoGe-2's masked sky)
    may hold depth smoothed in from across the hole and are judged against their other side.
    """
    depth = check_depth(depth)
    rgb = check_rgb(rgb, depth.shape)
    settings = EdgeThresholds.from_strength(edge_strength)
    valid = valid_depth(depth)
    if not valid.any():
        return np.zeros(depth.shape, dtype=bool)
    log_depth = filled_log_depth(depth, valid)
    candidates = _near_canny_edges(log_depth, rgb, settings) & valid
    disparity = np.exp(-log_depth)
    tol = _Tolerances.for_map(settings, relative_noise(disparity, valid))
    pairs = [_sharp_step_pairs(disparity, axis, tol) for axis in (0, 1)]
    on_steps = _both_pixels(pairs[0], 0) | _both_pixels(pairs[1], 1)
    # Scale 1 adds nothing: a one-pixel smear is two sharp steps, and scale 2 sees it too.
    flagged = candidates & (on_steps | _smeared(disparity, range(2, settings.radius + 1), tol, candidates))
    # The wide scales also flag a rounded object's rim and a thin pole's middle, and a sharp
    # step flags the clean pixel at the end of a smeared ramp: such pixels continue a clean
    # surface and are given back, except the two sides of a real step, so the mesher cuts it.
    anchored = _anchored(disparity, flagged, valid, tol)
    found = flagged & ~(anchored & ~_steps_between_surfaces(pairs, anchored))
    if valid.all():
        return found
    # Beside a hole only one side is seen, and the filled hole is no surface to give a pixel
    # back on: the side away from the hole alone decides, and nothing it drops is given back.
    return found | _smeared_beside_holes(disparity, valid, valid & ~found, range(1, settings.radius + 1), tol)
