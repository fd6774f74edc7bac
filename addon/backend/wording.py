"""The backend's messages in Blender's words, each failure with its next step (no bpy here).

The worker and `ppd-weights` speak to a terminal ("run `ppd-weights download`, or pass
--weights DIR (or PPD_WEIGHTS)"); in Blender the same fix is a button or a preference. Every
message the add-on shows for a failure ends with "Next: …", what to press or set.
"""

from __future__ import annotations

import re

from ppd_core.weight_sources import DOWNLOAD_HINT, SOURCES

#: Terminal words -> Blender's words, applied in order to worker and weights messages.
TERMS = (
    (f"; {DOWNLOAD_HINT}", ""),
    (DOWNLOAD_HINT, ""),
    ("downloads are off (HF_HUB_OFFLINE)", "Blender's online access is off"),
    ("and downloading was not allowed", "and not downloaded yet"),
    ("weights folder ", "the Weights Folder "),
    ("pass the folder that holds the weight files", "set the Weights Folder to the folder that holds them"),
    ("run it again to resume", "Download Weights again to resume it"),
    ("(log in with `hf auth login` if the repository is gated)", "(the repository may need a Hugging Face login)"),
)
#: What only a terminal user can act on: a command in backquotes, an option, an environment variable.
TERMINAL = re.compile(r"`[^`]*`|(?<![\w-])--[a-z]|\b(?:PPD|HF)_[A-Z_]+\b")
#: Where a message's clauses and sentences end (a dropped one leaves the others whole).
CLAUSES = re.compile(r"(?<=[;?!.])\s+")
SETUP_NEXT_STEPS = (  # (words of a failed step's cause, what to do)
    (("name resolution", "service not known", "nodename", "getaddrinfo", "new connection", "refused", "timed out"),
     "check the internet connection (and a proxy, if you use one), then press Set up backend again"),
    (("certificate",), "the connection's certificate was refused (a company proxy?): set up the backend from a "
                       "terminal, or ask your administrator, then choose that Python in the add-on preferences"),
    (("no space left",), "free disk space (torch needs several GB), then press Set up backend again"),
    (("permission denied", "access is denied"), "the backend folder is not writable: fix its permissions, or set "
                                                "XDG_DATA_HOME / LOCALAPPDATA to another folder, then set up again"),
    (("could not find a version", "no matching distribution", "invalid requirement"),
     "correct Package in the add-on preferences (or clear it to install the wheel this extension carries), "
     "then press Set up backend again"),
)
RUN_NEXT_STEPS = {
    "bad_input": "",  # the message names the photo or setting to change
    "out_of_memory": "choose a lower Resolution, or the CPU as Device in the add-on preferences",
    "worker_crashed": "press Depth from Image again (a new worker starts); Open Worker Log in the add-on "
                      "preferences says why it stopped",
    "timeout": "press Depth from Image again; if it hangs again, Open Worker Log in the add-on preferences",
    "internal": "Open Worker Log in the add-on preferences for the details",
}


def with_next(message: str, step: str) -> str:
    """`message`, then " Next: `step`." (the message alone when there is no step)."""
    message = message.strip().rstrip(".;")
    return f"{message}. Next: {step}." if step else message


def blender_words(message: str) -> str:
    """A worker or weights message in Blender's terms: known phrases put in its words, then
    every clause that still tells a terminal user what to type left out (the next step, in
    Blender's words, comes from the caller)."""
    for terminal, blender in TERMS:
        message = message.replace(terminal, blender)
    kept = [clause for clause in CLAUSES.split(" ".join(message.split())) if not TERMINAL.search(clause)]
    return " ".join(kept).strip().rstrip(";,:")


def weights_next_step(online: bool, folder_set: bool, message: str = "") -> str:
    """What to do about missing weights with these settings (`message`: what is missing)."""
    if "ppd_moge.pth" in message:  # not on the hub: only by hand
        return ("download ppd_moge.pth from its authors (Where to get it, in the add-on preferences), put it in a "
                "folder with moge2.pt and set that folder as the Weights Folder")
    if folder_set:
        return ("use Download Weights in the add-on preferences (it downloads into the Weights Folder), or copy the "
                "missing files there")
    if not online:
        return ("allow online access in Preferences > System > Network and use Download Weights, or set the "
                "Weights Folder to a folder that holds the files")
    return "use Download Weights in the add-on preferences, or set the Weights Folder to a folder that holds the files"


def weights_problem(message: str, online: bool, folder_set: bool) -> str:
    """A weights problem (a Check's, the weights check's, a run's) in Blender's words, with its next step."""
    return with_next(blender_words(message), weights_next_step(online, folder_set, message))


def download_failure(message: str) -> str:
    """A failed Download Weights, with the way around it."""
    if message.startswith("cancelled"):
        return "Download cancelled. Next: press Download Weights to resume it."
    hand = ", ".join(source.name for source in SOURCES if source.repo() is not None)
    return with_next(f"Download stopped: {blender_words(message)}",
                     f"press Download Weights again (it resumes), or download {hand} by hand from their model cards "
                     "(the buttons above) into one folder and set it as the Weights Folder")


def setup_next_step(cause: str) -> str:
    """What to do after a set-up step failed with `cause` (its telling output line)."""
    lowered = cause.lower()
    for words, step in SETUP_NEXT_STEPS:
        if any(word in lowered for word in words):
            return step
    return "Open Setup Log for the whole output, fix what it names, then press Set up backend again"


def start_error_text(kind: str, message: str) -> str:
    """A worker that did not start (Check, or a run): in Blender the fix is a button, not pip."""
    if kind in ("package_missing", "protocol_mismatch", "torch_missing"):
        head = message.split(";")[0]
        return with_next(head, "use Set up backend in the add-on preferences (or Detect to pick another Python)")
    if kind == "interpreter_not_found":
        return with_next(message.split(";")[0], "use Set up backend, or Detect, in the add-on preferences, or "
                                                "set Python to the python executable of an environment with torch")
    return with_next(blender_words(message), "Open Worker Log in the add-on preferences for the details")


def run_error_text(kind: str, message: str, online: bool, folder_set: bool) -> str:
    """The panel's message for a job's error event, with the next step for its kind."""
    message = message or "the worker reported an error"
    if kind == "weights_missing":
        return weights_problem(message, online, folder_set)
    return with_next(blender_words(message), RUN_NEXT_STEPS.get(kind, RUN_NEXT_STEPS["internal"]))


STAGE_LABELS = {"load": "Photo", "model": "Model", "download": "Weights download", "encode": "Encoder",
                "diffusion": "Depth", "geometry": "Geometry", "lift": "Points", "mesh": "Mesh", "export": "Writing",
                "done": "Done"}


def progress_text(event: dict) -> str:
    """The panel's progress line for a worker progress event: "Stage: message"."""
    stage = str(event.get("stage") or "")
    label = STAGE_LABELS.get(stage, stage.capitalize() or "Working")
    message = " ".join(str(event.get("message") or "").split())
    return f"{label}: {message}" if message else label


def sources_text(event: dict) -> list:
    """Where a result's scale and camera came from, how much of the network's depth was
    clipped, and whether its depth was reused."""
    depth = (event.get("stats") or {}).get("depth") or {}
    if not depth:
        return []
    lines = [f"Scale: {depth.get('scale')}; camera: {depth.get('camera')}."]
    if depth.get("clipped_px"):
        share = float(depth.get("clipped_share") or 0.0)
        lines.append(f"{share:.1%} of the network's depth lay outside its trained range and was clipped"
                     f" ({depth['clipped_px']:,} px).")
    if depth.get("network_reused"):
        lines.append("Depth reused: only lifting and meshing ran.")
    return lines
