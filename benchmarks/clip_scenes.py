"""A synthetic clip with exact depth seen by a moving camera, and stand-ins for the video network
and MoGe-2 that know its depth, for the clip benchmarks and tests.

The camera moves by `step` metres a frame (the scene is moved the other way, which renders the
same); every surface is static. `OracleNetwork` answers a window as a perfect video network
would at its own resolution, but in an affine frame of its own per window (random scale and
shift of the normalised log-depth), as an affine-invariant network does: only the clip
pipeline's alignment and its one fit make the frames agree. `OracleMoGe` gives the exact
metric depth and camera of the frame it is shown. Both tell frames apart by their pixels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Sequence

import cv2
import numpy as np
import torch

from benchmarks.scenes import Rendering, Scene, make_scene
from ppd_core.video import model_input


def _moved(primitive, offset: np.ndarray):
    """The primitive moved by `offset` (x, y, z metres)."""
    if hasattr(primitive, "center"):
        return dataclasses.replace(primitive, center=tuple(np.asarray(primitive.center) + offset))
    if hasattr(primitive, "point"):
        return dataclasses.replace(primitive, point=tuple(np.asarray(primitive.point) + offset))
    return dataclasses.replace(primitive, base=(primitive.base[0] + offset[0], primitive.base[1] + offset[2]),
                               y_top=primitive.y_top + offset[1], y_bottom=primitive.y_bottom + offset[1])


@dataclass
class SceneClip:
    """Each frame's scene (moved), rendering (exact depth, photo, camera) and camera position."""

    scenes: list[Scene]
    renderings: list[Rendering]
    positions: list[np.ndarray]

    @property
    def frames(self) -> list[np.ndarray]:
        return [rendering.rgb for rendering in self.renderings]


def moving_camera_clip(scene_name: str = "boxes", frames: int = 30, width: int = 96, height: int = 72,
                       step: Sequence[float] = (0.012, -0.004, 0.02), hfov_deg: float = 60.0) -> SceneClip:
    """`frames` renderings of a scene of `benchmarks.scenes` by a camera moving `step` a frame."""
    base = make_scene(scene_name)
    scenes, renderings, positions = [], [], []
    for k in range(frames):
        position = k * np.asarray(step, float)
        scene = Scene(base.name, [_moved(p, -position) for p in base.primitives], base.sensor_holes)
        scenes.append(scene)
        renderings.append(scene.render(width, height, hfov_deg))
        positions.append(position)
    return SceneClip(scenes, renderings, positions)


def write_clip_video(path: Path, frames: Sequence[np.ndarray], fps: int = 24) -> Path:
    """The frames as a lossless FFV1 video (an .mkv): decoded, they are the rendered pixels exactly."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "bgr0"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def _identify(images: torch.Tensor, known: torch.Tensor) -> list[int]:
    """For each image (N, 3, H, W), the index of the nearest of `known` (K, 3, H, W)."""
    distances = ((images[:, None] - known[None]) ** 2).flatten(2).mean(-1)
    return distances.argmin(1).tolist()


class OracleNetwork:
    """Stands in for `PixelPerfectVideoDepth`: each window's depth is the exact normalised
    log-depth of its frames at the network's size, in a random affine frame of that window's."""

    def __init__(self, clip: SceneClip, size: tuple[int, int] = (64, 64), seed: int = 0,
                 affine_spread: float = 0.3) -> None:
        self.size = size
        self.device = torch.device("cpu")
        self.dit_video = SimpleNamespace(config=SimpleNamespace(input_size=size, hidden_size=0, depth=0))
        self.rng = np.random.default_rng(seed)
        self.affine_spread = affine_spread
        self.inputs = torch.stack([model_input(frame, size, self.device) for frame in clip.frames])
        log_depth = [np.log1p(r.depth.astype(np.float32)) for r in clip.renderings]
        low, high = np.percentile(log_depth[0], [2.0, 98.0])
        self.p = [cv2.resize((d - low) / (high - low), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
                  for d in log_depth]
        self.windows: list[list[int]] = []

    def sample_window(self, frames: torch.Tensor, noise: torch.Tensor, steps: int = 4, *, on_step=None):
        ids = _identify(frames, self.inputs)
        self.windows.append(ids)
        scale = 1.0 + self.affine_spread * self.rng.uniform(-1, 1) if self.windows[1:] else 1.0
        shift = 0.2 * self.affine_spread * self.rng.uniform(-1, 1) if self.windows[1:] else 0.0
        for done in range(steps + 1):
            if on_step is not None:
                on_step(done, steps)
        return torch.from_numpy(np.stack([self.p[i] * scale + shift for i in ids]))[:, None].float()


class OracleMoGe:
    """Stands in for MoGe-2: the exact metric depth (area-averaged to the image it is shown),
    a mask of every surface and the true normalised camera of that frame. `noise` is a
    per-pixel error and `scale_noise` one of the whole frame (relative, log-normal), as a real
    MoGe-2 misjudges each frame's scale by a few per cent."""

    num_tokens_range = (1200, 3600)

    def __init__(self, clip: SceneClip, noise: float = 0.0, seed: int = 0, scale_noise: float = 0.0) -> None:
        self.clip = clip
        self.noise = noise
        self.scale_noise = scale_noise
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def infer(self, image: torch.Tensor, num_tokens: Optional[int] = None, fov_x=None):
        self.calls += 1
        height, width = image.shape[-2:]
        known = torch.stack([torch.from_numpy(cv2.resize(r.rgb, (width, height), interpolation=cv2.INTER_AREA))
                             .permute(2, 0, 1).float() / 255 for r in self.clip.renderings])
        rendering = self.clip.renderings[_identify(image.float().cpu(), known)[0]]
        depth = cv2.resize(rendering.depth.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
        if self.noise or self.scale_noise:
            error = self.noise * self.rng.standard_normal(depth.shape) + self.scale_noise * self.rng.standard_normal()
            depth = depth * np.exp(error).astype(np.float32)
        k = rendering.intrinsics
        normalised = np.array([[k.fx / k.width, 0, k.cx / k.width], [0, k.fy / k.height, k.cy / k.height], [0, 0, 1]])
        return depth, np.isfinite(depth), normalised
