"""A worker job whose "photo" is a clip (a video file, or a folder of frames with the option `video`).

Its `outputs` name the folder the clip's own folder goes into (every kind the same folder, as
the command's `-o`); `keep` asks to resume (`--skip-existing`). The video model stays loaded
between jobs while weights, device and precision stay the same. The result's stats are the
clip's record plus where its files are (`folder`, `record`, `stage`: the USD stage when the
job asked for "usd"), which the Blender add-on imports as one object that follows the timeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ppd_core.errors import BadInputError
from ppd_core.options import VIDEO_SUFFIXES, JobOptions
from ppd_core.progress import ProgressCallback

CLIP_STAGES = (("clip", 1.0),)
"""A clip job's one progress stage: its fraction is of the whole clip (`ppd_core.clip`)."""


def is_clip_job(photo: str, options: JobOptions) -> bool:
    """Whether a job's "photo" is a clip."""
    return Path(photo).suffix.lower() in VIDEO_SUFFIXES or (options.video and Path(photo).is_dir())


class VideoModelCache:
    """One loaded video model, kept while weights, device and precision stay the same."""

    def __init__(self) -> None:
        self.key: Optional[tuple] = None
        self.model = None
        self.loads = 0

    def get(self, options: JobOptions, on_progress: Optional[ProgressCallback] = None):
        from ppd_core.model.video_inference import VideoModel  # torch: only once a clip runs

        key = (options.weights, options.device, options.precision)
        if self.model is None or key != self.key:
            self.model = None
            self.model = VideoModel.load(options.weights, device=options.device, precision=options.precision,
                                         on_progress=on_progress)
            self.key, self.loads = key, self.loads + 1
        return self.model


def run_clip_job(job: dict, options: JobOptions, models: VideoModelCache, progress: ProgressCallback) -> dict:
    """Run one clip job; its stats. `progress` is asked with ("clip", fraction of the clip, words)."""
    from ppd_core.clip import ClipRun, plan_clip, run_clip

    folders = {str(Path(path)) for path in job["outputs"].values()}
    if len(folders) != 1:
        raise BadInputError("a clip's outputs all go into one folder: name the same folder for every kind")
    folder = Path(folders.pop())
    folder.mkdir(parents=True, exist_ok=True)
    plan = plan_clip(Path(job["photo"]), list(job["outputs"]), options, output=folder, replace=True,
                     skip_existing=bool(job.get("keep")))

    def report(stage: str, fraction: float, message: str) -> None:
        progress("clip", fraction, f"{stage}: {message}")

    model = models.get(options, lambda stage, fraction, message: progress("clip", 0.0, message))
    record = run_clip(ClipRun(plan, options, model, replace=True, on_progress=report))
    return {"clip": record, "folder": str(plan.folder), "record": str(plan.record_path),
            "stage": str(plan.stage_paths[0]) if plan.stage_paths else None, "frames": len(plan.frames),
            "model_loads": models.loads, "outputs": {kind: str(folder) for kind in job["outputs"]}}
