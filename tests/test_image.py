"""Photo loading: every mode to upright RGB uint8, EXIF focal data, clear errors for bad files."""

import numpy as np
import pytest
from PIL import ExifTags, Image

from ppd_core.errors import BadInputError
from ppd_core.files.photo import HEIF_AVAILABLE, load_image


def _pattern(width=40, height=20) -> np.ndarray:
    """An asymmetric RGB test card: every rotation or flip of it is different."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:, : width // 2] = (200, 30, 30)
    rgb[:, width // 2 :] = (30, 30, 200)
    rgb[: height // 4, : width // 4] = (30, 200, 30)
    return rgb


def _exif(orientation=None, focal_35mm=None, focal_mm=None, make=None, model=None) -> Image.Exif:
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if make is not None:
        exif[ExifTags.Base.Make] = make
    if model is not None:
        exif[ExifTags.Base.Model] = model
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    if focal_35mm is not None:
        sub[ExifTags.Base.FocalLengthIn35mmFilm] = focal_35mm
    if focal_mm is not None:
        sub[ExifTags.Base.FocalLength] = focal_mm
    return exif


@pytest.mark.parametrize(
    "orientation, transform",
    [
        (1, None),
        (2, Image.Transpose.FLIP_LEFT_RIGHT),
        (3, Image.Transpose.ROTATE_180),
        (6, Image.Transpose.ROTATE_270),
        (8, Image.Transpose.ROTATE_90),
    ],
)
def test_exif_orientation_makes_the_photo_upright(tmp_path, orientation, transform):
    stored = Image.fromarray(_pattern())
    path = tmp_path / "rotated.png"
    stored.save(path, exif=_exif(orientation=orientation))
    expected = stored if transform is None else stored.transpose(transform)
    photo = load_image(path)
    np.testing.assert_array_equal(photo.rgb, np.asarray(expected))
    assert photo.rgb.dtype == np.uint8 and photo.path == path


def test_rotated_phone_jpeg_comes_out_portrait(tmp_path):
    path = tmp_path / "phone.jpg"
    Image.fromarray(_pattern(64, 32)).save(path, quality=95, exif=_exif(orientation=6))
    photo = load_image(path)
    assert photo.rgb.shape == (64, 32, 3)
    # Rotated 90 degrees clockwise: the green corner (top-left) is now top-right.
    assert photo.rgb[2, 29, 1] > 150 and photo.rgb[2, 29, 0] < 100


def test_exif_focal_lengths_and_camera_are_read(tmp_path):
    path = tmp_path / "camera.jpg"
    exif = _exif(focal_35mm=28, focal_mm=4.25, make="Canon\x00", model=" Canon EOS 80D ")
    Image.fromarray(_pattern()).save(path, exif=exif)
    photo = load_image(path)
    assert photo.focal_35mm == 28.0
    assert photo.focal_mm == pytest.approx(4.25)
    assert photo.make == "Canon" and photo.model == "Canon EOS 80D"


def test_missing_exif_gives_none(tmp_path):
    path = tmp_path / "plain.png"
    Image.fromarray(_pattern()).save(path)
    photo = load_image(path)
    assert (photo.focal_35mm, photo.focal_mm, photo.make, photo.model) == (None, None, None, None)
    assert (photo.width, photo.height) == (40, 20)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(_pattern()).convert("CMYK").save(path, quality=95)
    rgb = load_image(path).rgb
    assert rgb.shape == (20, 40, 3)
    assert np.abs(rgb[10, 30].astype(int) - (30, 30, 200)).max() < 25


def test_sixteen_bit_grey_png_is_rescaled_not_clipped(tmp_path):
    path = tmp_path / "grey16.png"
    values = np.array([[0, 257 * 100, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(path)
    rgb = load_image(path).rgb
    np.testing.assert_array_equal(rgb[0, :, 0], [0, 100, 255])
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1"])
def test_grey_alpha_and_palette_pngs(tmp_path, mode):
    path = tmp_path / f"{mode}.png"
    image = Image.fromarray(_pattern()).convert(mode)
    if mode == "P":
        image.info["transparency"] = 0
    image.save(path)
    rgb = load_image(path).rgb
    assert rgb.shape == (20, 40, 3) and rgb.dtype == np.uint8
    expected = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(rgb, expected)


@pytest.mark.parametrize("suffix, options", [(".tif", {}), (".webp", {"lossless": True}), (".bmp", {})])
def test_tiff_webp_bmp(tmp_path, suffix, options):
    path = tmp_path / f"photo{suffix}"
    Image.fromarray(_pattern()).save(path, **options)
    np.testing.assert_array_equal(load_image(path).rgb, _pattern())


def test_missing_file(tmp_path):
    with pytest.raises(BadInputError, match="nothere.jpg: no such file"):
        load_image(tmp_path / "nothere.jpg")


def test_folder_is_not_a_photo(tmp_path):
    with pytest.raises(BadInputError, match="not a file"):
        load_image(tmp_path)


def test_text_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels")
    with pytest.raises(BadInputError, match=r"notes\.jpg: not a readable image file"):
        load_image(path)


def test_truncated_jpeg(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(BadInputError, match=r"cut\.jpg: corrupt or truncated"):
        load_image(path)


@pytest.mark.skipif(HEIF_AVAILABLE, reason="pillow-heif is installed, so HEIC is readable")
def test_heic_without_pillow_heif_says_what_to_install(tmp_path):
    path = tmp_path / "phone.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    with pytest.raises(BadInputError, match="pillow-heif"):
        load_image(path)


def test_corrupt_exif_loads_the_pixels_without_warnings(tmp_path):
    import warnings

    rgb = np.random.default_rng(2).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "bad_exif.jpg", quality=100,
                              exif=b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff not a real IFD")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        photo = load_image(tmp_path / "bad_exif.jpg")
    assert photo.rgb.shape == (12, 16, 3) and photo.focal_35mm is None
