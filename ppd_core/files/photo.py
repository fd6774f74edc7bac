"""Load a photo as upright RGB uint8 with the EXIF focal data the camera model needs.

Pillow reads the files; EXIF orientation is applied so a rotated phone photo comes out
upright, and every mode (CMYK, 16-bit, palette, grey, alpha) becomes plain 8-bit RGB.
HEIC/HEIF is read when the optional pillow-heif package is installed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from mesh.image_size import ImageTooLarge, check_image_size
from ppd_core.errors import BadInputError
from ppd_core.options import PHOTO_SUFFIXES

READABLE = ", ".join(PHOTO_SUFFIXES)
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"avif")

try:
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_AVAILABLE = True
except ImportError:
    HEIF_AVAILABLE = False


@dataclass
class Photo:
    """A decoded photo: upright RGB pixels plus the EXIF data used for the camera model.

    rgb:        (H, W, 3) uint8 RGB, EXIF orientation applied
    path:       the file it came from
    focal_35mm: EXIF FocalLengthIn35mmFilm in mm, or None
    focal_mm:   EXIF FocalLength (true lens focal length) in mm, or None
    make, model: EXIF camera make and model strings, or None
    """

    rgb: np.ndarray
    path: Path
    focal_35mm: Optional[float] = None
    focal_mm: Optional[float] = None
    make: Optional[str] = None
    model: Optional[str] = None

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def _is_heif(path: Path) -> bool:
    """True when the file starts like an ISO-BMFF HEIF/HEIC/AVIF container."""
    with path.open("rb") as f:
        head = f.read(12)
    return len(head) == 12 and head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def _positive_float(value: object) -> Optional[float]:
    """An EXIF rational or number as a positive float, or None when absent or unusable."""
    try:
        number = float(value)  # IFDRational and int both convert
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if number > 0 and np.isfinite(number) else None


def _clean_text(value: object) -> Optional[str]:
    """An EXIF ASCII field without padding NULs and spaces, or None."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1", errors="replace")
    text = str(value).replace("\x00", "").strip()
    return text or None


def _exif_fields(image: Image.Image) -> dict:
    """Focal lengths and camera make/model from the image's EXIF (missing -> None)."""
    exif = image.getexif()
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    return {
        "focal_35mm": _positive_float(sub.get(ExifTags.Base.FocalLengthIn35mmFilm)),
        "focal_mm": _positive_float(sub.get(ExifTags.Base.FocalLength)),
        "make": _clean_text(exif.get(ExifTags.Base.Make)),
        "model": _clean_text(exif.get(ExifTags.Base.Model)),
    }


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """Any Pillow mode -> (H, W, 3) uint8 RGB; 16-bit and float greys are rescaled, not clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = np.asarray(image, dtype=np.float64)
        grey8 = np.clip(np.rint(grey / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(grey8[:, :, None], 3, axis=2)
    if image.mode == "F":
        grey = np.nan_to_num(np.asarray(image, dtype=np.float64))
        scale = 255.0 if grey.max(initial=0.0) <= 1.0 else 1.0
        grey8 = np.clip(np.rint(grey * scale), 0, 255).astype(np.uint8)
        return np.repeat(grey8[:, :, None], 3, axis=2)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def load_image(path: Union[str, Path]) -> Photo:
    """Read a photo file as an upright RGB `Photo`; raise `BadInputError` naming the file
    when it is missing, not an image, corrupt, or larger than `mesh.image_size.MAX_IMAGE_PIXELS`."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such file")
    if not path.is_file():
        raise BadInputError(f"{path}: not a file")
    try:
        if not HEIF_AVAILABLE and _is_heif(path):
            raise BadInputError(f"{path}: HEIC/HEIF photos need the optional pillow-heif package "
                                "(pip install pillow-heif)")
        check_image_size(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            warnings.simplefilter("ignore", UserWarning)  # Pillow's "Corrupt EXIF data": the pixels are fine
            with Image.open(path) as image:
                width, height = image.size
                if width < 1 or height < 1:
                    raise BadInputError(f"{path}: image has no pixels ({width}x{height})")
                exif = _exif_fields(image)
                image.load()
                upright = ImageOps.exif_transpose(image)
                rgb = _to_rgb8(upright)
    except BadInputError:
        raise
    except ImageTooLarge as error:
        raise BadInputError(str(error)) from None
    except UnidentifiedImageError:
        raise BadInputError(f"{path}: not a readable image file ({READABLE})") from None
    except PermissionError:
        raise BadInputError(f"{path}: cannot read it (permission denied)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise BadInputError(f"{path}: corrupt or truncated image ({exc})") from None
    return Photo(rgb=rgb, path=path, **exif)
