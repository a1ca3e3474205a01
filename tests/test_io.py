"""The image reader: every format written here, sizes, channels, high-depth scaling, DICOM, masks, lists."""

from __future__ import annotations

import builtins
import sys

import numpy as np
import pytest
from PIL import Image

from darlkit.data import (
    IMAGE_SUFFIXES,
    MissingDependencyError,
    list_image_files,
    read_image,
    read_image_frames,
    read_mask,
    to_unit_range,
)

SIZES = [(1, 1), (7, 9), (584, 565), (960, 999), (1000, 1000)]  # (H, W): 565x584, 999x960 as W x H
LOSSLESS = [("PNG", ".png"), ("TIFF", ".tif"), ("BMP", ".bmp"), ("PPM", ".pgm"), ("GIF", ".gif")]


def _grey(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# ----------------------------------------------------------------------------- formats and sizes
@pytest.mark.parametrize("fmt,suffix", LOSSLESS)
def test_lossless_formats_read_exactly(tmp_path, fmt, suffix):
    grey = _grey((7, 9))
    path = tmp_path / f"x{suffix}"
    Image.fromarray(grey, mode="L").save(path, format=fmt)
    x = read_image(path)
    assert x.dtype == np.float32 and x.shape == (7, 9)
    np.testing.assert_array_equal(np.round(x * 255).astype(np.uint8), grey)
    # 8-bit data map as v / 255 so that x * 2 - 1 is exactly to_unit_range
    assert np.array_equal(x * 2 - 1, to_unit_range(grey).numpy())


@pytest.mark.parametrize("shape", SIZES)
@pytest.mark.parametrize("fmt,suffix", [("PNG", ".png"), ("TIFF", ".tiff"), ("JPEG", ".jpg")])
def test_sizes(tmp_path, shape, fmt, suffix):
    grey = _grey(shape, seed=shape[0])
    path = tmp_path / f"img{suffix}"
    Image.fromarray(grey, mode="L").save(path, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    x = read_image(path)
    assert x.shape == shape and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    err = np.abs(x * 255 - grey.astype(np.float64))
    if fmt == "JPEG":
        assert err.mean() < 12  # lossy, but the same picture (random noise is JPEG's worst case)
    else:
        assert err.max() < 1e-3


def test_one_bit_and_grey_alpha(tmp_path):
    bits = _grey((5, 6)) > 127
    Image.fromarray(bits).save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_image(tmp_path / "b.png"), bits.astype(np.float32))
    la = np.stack([_grey((5, 6)), np.full((5, 6), 7, np.uint8)], -1)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_allclose(read_image(tmp_path / "la.png"), la[..., 0] / 255.0, atol=1e-7)


# ----------------------------------------------------------------------------- colour
def test_channel_choice(tmp_path):
    rgb = np.stack([_grey((6, 5), s) for s in (1, 2, 3)], -1)
    for fmt, suffix in (("PNG", ".png"), ("TIFF", ".tif"), ("BMP", ".bmp"), ("PPM", ".ppm")):
        path = tmp_path / f"c{suffix}"
        Image.fromarray(rgb, mode="RGB").save(path, format=fmt)
        for k, name in enumerate(("red", "green", "blue")):
            np.testing.assert_allclose(read_image(path, channel=name), rgb[..., k] / 255.0, atol=1e-7)
        luma = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0
        np.testing.assert_allclose(read_image(path), luma, atol=1e-6)
    rgba = np.concatenate([rgb, np.zeros((6, 5, 1), np.uint8)], -1)  # alpha 0 everywhere: dropped
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    np.testing.assert_allclose(read_image(tmp_path / "a.png", channel="green"), rgb[..., 1] / 255.0, atol=1e-7)
    grey = _grey((4, 4))
    Image.fromarray(grey).save(tmp_path / "g.png")
    for name in ("luma", "green", "red", "blue"):  # grey is the same in every channel
        np.testing.assert_allclose(read_image(tmp_path / "g.png", channel=name), grey / 255.0, atol=1e-7)
    with pytest.raises(ValueError, match="channel must be one of"):
        read_image(tmp_path / "g.png", channel="alpha")


def test_palette_image_is_expanded_to_rgb(tmp_path):
    im = Image.new("P", (3, 2))
    im.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    im.putpixel((1, 0), 1)
    im.save(tmp_path / "p.gif")
    g = read_image(tmp_path / "p.gif", channel="green")
    assert g[0, 1] == pytest.approx(200 / 255) and g.sum() == pytest.approx(200 / 255)
    assert read_image(tmp_path / "p.gif", channel="red")[0, 1] == pytest.approx(10 / 255)


# ----------------------------------------------------------------------------- high depth
def test_16bit_percentile_window_saturates_exactly_outside(tmp_path):
    v = np.arange(1000, dtype=np.uint16).reshape(20, 50) * 60  # 0 .. 59940
    for suffix in (".png", ".tif"):
        path = tmp_path / f"d{suffix}"
        Image.fromarray(v).save(path)
        x = read_image(path).astype(np.float64)
        lo, hi = np.percentile(v.astype(np.float64), [0.5, 99.5])  # 299.7, 59640.3
        assert lo == pytest.approx(299.7) and hi == pytest.approx(59640.3)
        expected = np.clip((v - lo) / (hi - lo), 0, 1)
        np.testing.assert_allclose(x, expected, atol=1e-6)
        assert (x == 0).sum() == 5 and (x == 1).sum() == 5  # the 0.5 % at each end saturate, no more
        # "range": min..max, nothing saturates
        np.testing.assert_allclose(read_image(path, scaling="range"), v / 59940.0, atol=1e-6)
        np.testing.assert_allclose(read_image(path, percentiles=(0, 100)), v / 59940.0, atol=1e-6)
    with pytest.raises(ValueError, match="scaling must be one of"):
        read_image(path, scaling="clip")


def test_12bit_data_in_16_bits_use_the_window_not_65535(tmp_path):
    v = np.linspace(100, 4000, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(v).save(tmp_path / "x.png")
    x = read_image(tmp_path / "x.png")
    assert x.max() == 1.0 and x.min() == 0.0 and 0.45 < np.median(x) < 0.55


def test_float_and_32bit_tiff_and_constant_image(tmp_path):
    f = np.linspace(-3.0, 5.0, 30, dtype=np.float32).reshape(5, 6)
    Image.fromarray(f, mode="F").save(tmp_path / "f.tif")
    np.testing.assert_allclose(read_image(tmp_path / "f.tif", scaling="range"), (f + 3) / 8, atol=1e-6)
    i32 = (np.arange(30, dtype=np.int32).reshape(5, 6) - 10) * 1000
    Image.fromarray(i32, mode="I").save(tmp_path / "i.tif")
    np.testing.assert_allclose(read_image(tmp_path / "i.tif", scaling="range"), (i32 + 10000) / 29000, atol=1e-6)
    Image.fromarray(np.full((4, 4), 700, np.uint16)).save(tmp_path / "c.png")
    np.testing.assert_array_equal(read_image(tmp_path / "c.png"), np.zeros((4, 4), np.float32))
    f[0, 0] = np.nan
    Image.fromarray(f, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(ValueError, match=r"nan\.tif.*NaN"):
        read_image(tmp_path / "nan.tif")


# ----------------------------------------------------------------------------- frames
def test_multipage_tiff_and_animated_gif_are_frames(tmp_path):
    frames = [_grey((5, 6), s) for s in range(3)]
    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(tmp_path / "m.tif", save_all=True, append_images=ims[1:])
    x = read_image_frames(tmp_path / "m.tif")
    assert x.shape == (3, 5, 6)
    np.testing.assert_array_equal(np.round(x * 255).astype(np.uint8), np.stack(frames))
    ims[0].save(tmp_path / "m.gif", save_all=True, append_images=ims[1:], duration=40)
    g = read_image_frames(tmp_path / "m.gif")
    assert g.shape == (3, 5, 6)
    np.testing.assert_allclose(g * 255, np.stack(frames), atol=1e-3)
    with pytest.raises(ValueError, match=r"m\.tif holds 3 frames.*read_image_frames"):
        read_image(tmp_path / "m.tif")
    deep = [Image.fromarray(np.full((4, 4), k * 1000, np.uint16)) for k in range(3)]
    deep[0].save(tmp_path / "d.tif", save_all=True, append_images=deep[1:])
    np.testing.assert_allclose(read_image_frames(tmp_path / "d.tif", scaling="range")[:, 0, 0], [0, 0.5, 1])  # one window for all frames


# ----------------------------------------------------------------------------- bad files
def test_bad_files_name_the_file(tmp_path):
    Image.fromarray(_grey((32, 32))).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.png"):
        read_image(tmp_path / "cut.png")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ValueError, match=r"text\.jpg.*expected PNG, TIFF, JPEG"):
        read_image(tmp_path / "text.jpg")
    Image.fromarray(_grey((4, 4))).save(tmp_path / "x.webp", format="WEBP")
    with pytest.raises(ValueError, match=r"x\.webp is a WEBP file"):
        read_image(tmp_path / "x.webp")
    with pytest.raises(FileNotFoundError, match=r"missing\.png"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="not a file"):
        read_image(tmp_path)
    with pytest.raises(TypeError, match="path"):
        read_image(3)
    # suffix does not decide: JPEG bytes behind a .png name are read as JPEG
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(tmp_path / "j.png", format="JPEG")
    assert abs(float(read_image(tmp_path / "j.png").mean()) - 128 / 255) < 2 / 255


# ----------------------------------------------------------------------------- DICOM
def _write_dicom(path, arr, *, bits=12, photometric="MONOCHROME2", signed=False, **attrs):
    pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.12.1"  # X-ray angiographic image
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "XA"
    if arr.ndim == 3:
        ds.NumberOfFrames = arr.shape[0]
    ds.Rows, ds.Columns = arr.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, int(signed)
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = arr.astype(np.int16 if signed else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_dicom_stored_range_window_monochrome1_and_frames(tmp_path):
    v = (np.arange(2 * 3 * 4).reshape(2, 3, 4) * 150).astype(np.uint16)  # 0 .. 3450, 12-bit
    x = read_image_frames(_write_dicom(tmp_path / "cine.dcm", v))
    assert x.shape == (2, 3, 4) and x.dtype == np.float32
    np.testing.assert_allclose(x, v / 4095.0, atol=1e-6)  # stored range [0, 4095], nothing saturates
    with pytest.raises(ValueError, match="read_image_frames"):
        read_image(tmp_path / "cine.dcm")
    inv = read_image_frames(_write_dicom(tmp_path / "m1.dcm", v, photometric="MONOCHROME1"))
    np.testing.assert_allclose(inv, 1 - v / 4095.0, atol=1e-6)
    # LINEAR window c=1000, w=1001: (v - 999.5) / 1000 + 0.5, saturated outside
    w = read_image_frames(_write_dicom(tmp_path / "w.dcm", v, WindowCenter=1000, WindowWidth=1001))
    np.testing.assert_allclose(w, np.clip((v - 999.5) / 1000 + 0.5, 0, 1), atol=1e-6)
    # rescale (modality LUT) shifts the stored range too: -1024 + v, range [-1024, 3071]
    r = read_image(_write_dicom(tmp_path / "r.dcm", v[0], RescaleSlope=1, RescaleIntercept=-1024))
    np.testing.assert_allclose(r, v[0] / 4095.0, atol=1e-6)
    ex = read_image(_write_dicom(tmp_path / "e.dcm", v[0], WindowCenter=[500, 9], WindowWidth=[1000, 9],
                                 VOILUTFunction="LINEAR_EXACT"))
    np.testing.assert_allclose(ex, np.clip(v[0] / 1000.0, 0, 1), atol=1e-6)  # the first window is used
    np.testing.assert_allclose(read_image(tmp_path / "r.dcm", scaling="range"), v[0] / v[0].max(), atol=1e-6)
    s = read_image(_write_dicom(tmp_path / "s.dcm", v[0].astype(np.int16) - 2000, signed=True))
    np.testing.assert_allclose(s, (v[0] - 2000 + 2048) / 4095.0, atol=1e-6)


def test_dicom_found_by_marker_and_bad_dicom(tmp_path):
    v = np.full((4, 5), 4095, np.uint16)
    p = _write_dicom(tmp_path / "noext", v)
    np.testing.assert_array_equal(read_image(p), np.ones((4, 5), np.float32))
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 10)
    with pytest.raises(ValueError, match=r"bad\.dcm"):
        read_image(tmp_path / "bad.dcm")


def test_dicom_without_pydicom_says_how_to_install(tmp_path, monkeypatch):
    p = _write_dicom(tmp_path / "x.dcm", np.zeros((2, 2), np.uint16))
    real_import = builtins.__import__

    def no_pydicom(name, *args, **kwargs):
        if name == "pydicom" or name.startswith("pydicom."):
            raise ImportError("No module named 'pydicom'")
        return real_import(name, *args, **kwargs)

    for mod in [m for m in sys.modules if m == "pydicom" or m.startswith("pydicom.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", no_pydicom)
    with pytest.raises(MissingDependencyError, match=r"pip install 'darlkit\[dicom\]'") as info:
        read_image(p)
    assert isinstance(info.value, ImportError) and isinstance(info.value, ValueError)


# ----------------------------------------------------------------------------- masks
def test_masks_all_encodings_read_the_same(tmp_path):
    truth = _grey((7, 9)) > 150
    Image.fromarray(truth.astype(np.uint8) * 255).save(tmp_path / "m255.png")
    Image.fromarray(truth.astype(np.uint8)).save(tmp_path / "m01.png")
    Image.fromarray(truth).save(tmp_path / "mbool.png")
    Image.fromarray(truth.astype(np.uint16) * 65535).save(tmp_path / "m16.tif")
    Image.fromarray(truth.astype(np.uint8) * 255).save(tmp_path / "manual1.gif")  # palette GIF (DRIVE style)
    assert Image.open(tmp_path / "manual1.gif").mode == "P"
    pal = Image.fromarray(truth.astype(np.uint8), mode="P")  # palette indices 0/1 whose colours are black/white
    pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    pal.save(tmp_path / "pal.gif")
    Image.fromarray(np.stack([truth.astype(np.uint8) * 255] * 3, -1)).save(tmp_path / "rgb.bmp")
    for name in ("m255.png", "m01.png", "mbool.png", "m16.tif", "manual1.gif", "pal.gif", "rgb.bmp"):
        m = read_mask(tmp_path / name)
        assert m.dtype == bool and m.shape == (7, 9)
        np.testing.assert_array_equal(m, truth, err_msg=name)
    Image.fromarray(np.full((3, 3), 255, np.uint8)).save(tmp_path / "full.png")
    assert read_mask(tmp_path / "full.png").all()


def test_bad_masks_name_the_file(tmp_path):
    Image.fromarray(np.array([[0, 128, 255]], np.uint8)).save(tmp_path / "three.png")
    with pytest.raises(ValueError, match=r"three\.png has 3 distinct values \(0, 128, 255\)"):
        read_mask(tmp_path / "three.png")
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(ValueError, match=r"empty\.png is all zero.*allow_empty"):
        read_mask(tmp_path / "empty.png")
    assert not read_mask(tmp_path / "empty.png", allow_empty=True).any()
    Image.fromarray(np.array([[1, 255]], np.uint8)).save(tmp_path / "nozero.png")
    with pytest.raises(ValueError, match=r"nozero\.png has values 1 and 255, none of them 0"):
        read_mask(tmp_path / "nozero.png")
    Image.fromarray(np.array([[[255, 0, 0], [0, 0, 0]]], np.uint8)).save(tmp_path / "red.png")
    with pytest.raises(ValueError, match=r"red\.png is a colour image"):
        read_mask(tmp_path / "red.png")
    ims = [Image.fromarray(np.full((2, 2), 255, np.uint8))] * 2
    ims[0].save(tmp_path / "two.tif", save_all=True, append_images=ims[1:])
    with pytest.raises(ValueError, match=r"two\.tif holds 2 frames"):
        read_mask(tmp_path / "two.tif")
    (tmp_path / "junk.png").write_bytes(b"junk")
    with pytest.raises(ValueError, match=r"junk\.png"):
        read_mask(tmp_path / "junk.png")


# ----------------------------------------------------------------------------- file lists
def test_list_image_files(tmp_path):
    for name in ("b.jpg", "a.PNG", "c.tif", "d.dcm"):
        (tmp_path / name).write_bytes(b"x")  # listing does not decode
    (tmp_path / ".hidden.txt").write_text("x")
    names = [p.name for p in list_image_files(tmp_path)]
    assert names == ["a.PNG", "b.jpg", "c.tif", "d.dcm"]  # mixed suffixes all taken, sorted
    assert [p.name for p in list_image_files(str(tmp_path / "*.jpg"))] == ["b.jpg"]
    both = list_image_files([tmp_path / "c.tif", str(tmp_path / "[ab].*"), tmp_path / "c.tif"])
    assert [p.name for p in both] == ["a.PNG", "b.jpg", "c.tif"]
    (tmp_path / "README.md").write_text("x")
    (tmp_path / "sub").mkdir()
    with pytest.raises(ValueError, match=r"README\.md.*sub|sub.*README\.md"):
        list_image_files(tmp_path)
    with pytest.raises(ValueError, match=r"README\.md"):
        list_image_files(tmp_path / "README.md")
    with pytest.raises(FileNotFoundError, match=r"no file matches the pattern .*\*\.gif"):
        list_image_files(str(tmp_path / "*.gif"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_image_files(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="empty"):
        list_image_files([])
    (tmp_path / "sub" / "e.png").write_bytes(b"x")
    assert [p.name for p in list_image_files(str(tmp_path / "**" / "*.png"))] == ["e.png"]  # case-sensitive glob
    assert ".dcm" in IMAGE_SUFFIXES and all(s == s.lower() and s.startswith(".") for s in IMAGE_SUFFIXES)
