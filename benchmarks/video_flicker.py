"""Flicker and scale drift of a clip's metric depth: the video path (one scale for the clip) against the
photo pipeline run on every frame (a fit of its own each time), on a rendered clip with a moving
camera and exact depth (`benchmarks.clip_scenes`).

    python -m benchmarks.video_flicker --video-weights DIR --photo-weights DIR   # the released networks
    python -m benchmarks.video_flicker --oracle                                   # stand-ins that know the depth
    python -m benchmarks.video_flicker --tiny                                     # tiny random networks: a smoke run

Every surface is static (the camera moves), so all pixels count. Per frame, the scale is the
median of metric / true depth; the drift is the spread of that over the clip (max / min - 1).
The flicker is, per pair of consecutive frames, the median over pixels of the change of
|log(metric / true)|: how much a pixel's error moves from one frame to the next (0 for a depth
whose scale and shape hold still). The video path is the product's (`plan_clip`, `run_clip`);
the photo path is `photo_depth` on each frame, with its own MoGe-2 fit.

--oracle replaces the networks with stand-ins that know the exact depth: the video one answers
each window in an affine frame of its own, the photo one each frame, and their MoGe-2 errs by
3 % per pixel and 3 % in each frame's scale. It shows what the measure sees when only the scale's source differs. --tiny
runs tiny random networks: their depth is noise, and so are its figures.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import cv2
import numpy as np

from benchmarks.clip_scenes import OracleMoGe, OracleNetwork, SceneClip, moving_camera_clip, write_clip_video
from ppd_core.clip import ClipRun, plan_clip, run_clip
from ppd_core.files.depth_file import read_depth_file
from ppd_core.options import JobOptions

FRAMES, WIDTH, HEIGHT = 42, 192, 144  # three windows


def figures(metric: list[np.ndarray], clip: SceneClip) -> tuple[float, float]:
    """(scale drift, median flicker) of per-frame metric depth against the clip's true depth."""
    scales, errors = [], []
    for depth, rendering in zip(metric, clip.renderings):
        truth = rendering.depth
        usable = np.isfinite(depth) & np.isfinite(truth) & (depth > 0)
        scales.append(np.median(depth[usable] / truth[usable]))
        errors.append(np.where(usable, np.log(np.where(usable, depth, 1) / np.where(usable, truth, 1)), np.nan))
    flicker = [np.nanmedian(np.abs(b - a)) for a, b in zip(errors, errors[1:])]
    return float(max(scales) / min(scales) - 1), float(np.median(flicker))


def video_path(clip: SceneClip, model, folder: Path, options: JobOptions) -> list[np.ndarray]:
    """Each frame's metric depth from the product's clip path."""
    video = write_clip_video(folder / "clip.mkv", clip.frames)
    plan = plan_clip(video, ["npz"], options)
    run_clip(ClipRun(plan, options, model))
    return [read_depth_file(plan.depth_path(index), "metric") for index in plan.frames]


def oracle_photo_path(clip: SceneClip, seed: int = 1) -> list[np.ndarray]:
    """Per frame: the exact log-depth in an affine frame of its own, fitted to a noisy MoGe-2 each time."""
    import torch

    from ppd_core.geometry.align import fit_log_depth, metric_from_fit

    network, moge = OracleNetwork(clip, (HEIGHT, WIDTH), seed=seed), OracleMoGe(clip, noise=0.03, seed=seed, scale_noise=0.03)
    rng = np.random.default_rng(seed)
    out = []
    for k, rendering in enumerate(clip.renderings):
        p = cv2.resize(network.p[k], (WIDTH, HEIGHT)) * (1 + 0.3 * rng.uniform(-1, 1)) + 0.06 * rng.uniform(-1, 1)
        image = torch.from_numpy(rendering.rgb).permute(2, 0, 1)[None].float() / 255
        depth, mask, _ = moge.infer(image)
        fit = fit_log_depth(p, depth, mask=mask, seed=k)
        out.append(metric_from_fit(p, fit, max_depth=float(depth[mask].max())))
    return out


def photo_path(clip: SceneClip, weights: str) -> list[np.ndarray]:
    """Per frame: the photo pipeline's metric depth (its own MoGe-2 fit), at the frame's size."""
    from ppd_core.files.photo import Photo
    from ppd_core.photo_depth import ModelCache, photo_depth

    models, options, out = ModelCache(), JobOptions(weights=weights), []
    for k, rendering in enumerate(clip.renderings):
        found = photo_depth(Photo(rgb=rendering.rgb, path=Path(f"frame{k}.png")), options, models)
        out.append(cv2.resize(found.metric, (WIDTH, HEIGHT), interpolation=cv2.INTER_NEAREST))
    return out


def tiny_weights(folder: Path) -> tuple[Path, Path]:
    """Tiny random video and photo weights in the released layouts (the tests' writers)."""
    from tests.checkpoints import write_small_moge, write_small_weights
    from tests.video_weights import tiny_video_model, write_video_weights

    video, photo = folder / "video", folder / "photo"
    pi3 = write_video_weights(video, tiny_video_model(seed=1))[1]
    pi3.rename(video / "pi3.safetensors")
    write_small_moge(video)
    write_small_weights(photo)
    write_small_moge(photo)
    return video, photo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--video-weights", help="folder with ppvd.pth, pi3.safetensors, moge2.pt")
    parser.add_argument("--photo-weights", help="folder with the photo model's weights (and moge2.pt)")
    parser.add_argument("--oracle", action="store_true", help="stand-ins that know the depth (no weights)")
    parser.add_argument("--tiny", action="store_true", help="tiny random networks (a smoke run: noise)")
    parser.add_argument("--scene", default="boxes")
    args = parser.parse_args()
    clip = moving_camera_clip(args.scene, FRAMES, WIDTH, HEIGHT)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if args.oracle:
            from ppd_core.model.precision_check import PrecisionChoice
            from ppd_core.model.video_inference import VideoModel

            network = OracleNetwork(clip, (128, 128))
            model = VideoModel(network, OracleMoGe(clip, noise=0.03, scale_noise=0.03), network.device, PrecisionChoice("fp32", "-"))
            video, photo, what = video_path(clip, model, folder, JobOptions()), oracle_photo_path(clip), "oracle"
        else:
            from ppd_core.model.video_inference import VideoModel

            video_weights, photo_weights = (tiny_weights(folder) if args.tiny
                                            else (args.video_weights, args.photo_weights))
            model = VideoModel.load(str(video_weights))
            video = video_path(clip, model, folder, JobOptions())
            photo = photo_path(clip, str(photo_weights))
            what = "tiny random networks (noise)" if args.tiny else "the released networks"
    print(f"{args.scene}, {FRAMES} frames of {WIDTH}x{HEIGHT}, a camera moving 2.4 cm a frame; {what}")
    for name, metric in (("video (one scale)", video), ("photo per frame", photo)):
        drift, flicker = figures(metric, clip)
        print(f"  {name:18s} scale drift {100 * drift:6.2f} %   flicker {100 * flicker:6.2f} % per frame")


if __name__ == "__main__":
    main()
