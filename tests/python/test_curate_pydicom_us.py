"""Vendor ultrasound from the pydicom wheel and the `pydicom-data` package through `bedside curate`:
the 30- and 120-frame SonoSite/JPEG echoes with the name burned in, the Philips (palette, one and
two regions, RLE, big endian) and Aloka (16-bit palette) files, the WG04 US1 image in three
syntaxes. Checked with independent tools: pydicom (or dcmtk's dcmdjpeg where pydicom has no
decoder) decodes input and output; inside the declared regions the pixels are those of the input
(bit-identical for lossless inputs), outside them nothing is left that Tesseract reads as a word;
every frame is the input's frame at the same index; dciodvfy reports no new errors."""

import hashlib
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from PIL import Image

from conftest import require_tool

FILES = [
    "examples_ybr_color.dcm",          # 30-frame SonoSite echo, JPEG baseline, name burned in
    "color3d_jpeg_baseline.dcm",       # 120-frame 640x480 echo, JPEG baseline (pydicom-data)
    "OBXXXX1A.dcm",                    # Philips, palette, two regions
    "OBXXXX1A_2frame.dcm",
    "OBXXXX1A_rle_2frame.dcm",
    "OBXXXX1A_expb_2frame.dcm",        # big endian
    "examples_palette.dcm",
    "gdcm-US-ALOKA-16.dcm",            # 16-bit palette, three regions
    "gdcm-US-ALOKA-16_big.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",  # monochrome, JPEG lossless
    "US1_UNCR.dcm",                    # WG04 US1, no regions: text found by OCR alone
    "US1_J2KR.dcm",
]
LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.91"}


def vendor_file(name):
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        pytest.fail(f"{name} not found offline: install pydicom-data (tools/python/requirements.txt)")
    return path


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def curated(tmp_path_factory, bedside):
    """Several files share a SOP Instance UID (the same image in other syntaxes), which one run
    rightly refuses to write twice; they go in separate batches."""
    base = tmp_path_factory.mktemp("pydicom_us")
    batches = []
    for name in FILES:
        uid = pydicom.dcmread(vendor_file(name), stop_before_pixels=True).SOPInstanceUID
        batch = next((b for b in batches if uid not in b), None)
        if batch is None:
            batch = {}
            batches.append(batch)
        batch[uid] = name
    result = {}
    for k, batch in enumerate(batches):
        src = base / f"in{k}"
        src.mkdir()
        for name in batch.values():
            shutil.copy(vendor_file(name), src / name)
        out = base / f"out{k}"
        run = subprocess.run(
            [os.fspath(bedside), "-q", "curate", str(src), "-o", str(out), "--secret-dir", str(base / "secret"),
             "--no-arrays"],
            capture_output=True, text=True,
        )
        assert run.returncode == 0, run.stderr
        audit = [json.loads(l) for l in (out / "audit.jsonl").read_text().splitlines() if l]
        by_input = {a["input_sha256"]: a for a in audit}
        for name in batch.values():
            a = by_input[sha(src / name)]
            assert a["status"] == "curated", (name, a.get("reason"))
            result[name] = (src / name, out / a["output"], a)
    return result


_DECODED = {}


def pixels(path, tmp):
    """Frames x rows x columns (x samples) as decoded by pydicom, or by dcmtk's dcmdjpeg first
    where pydicom has no decoder for the syntax (decoded once per file)."""
    key = os.fspath(path)
    if key not in _DECODED:
        _DECODED[key] = decode(path, tmp)
    return _DECODED[key]


def decode(path, tmp):
    ds = pydicom.dcmread(path)
    try:
        a = ds.pixel_array
    except (RuntimeError, NotImplementedError):
        dcmdjpeg = require_tool("dcmdjpeg")
        plain = tmp / (os.path.basename(path) + ".plain.dcm")
        subprocess.run([dcmdjpeg, str(path), str(plain)], check=True)
        ds = pydicom.dcmread(plain)
        a = ds.pixel_array
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames == 1:
        a = a[None]
    return ds, a


def regions_mask(ds, shape):
    m = np.zeros(shape, bool)
    for r in ds.get("SequenceOfUltrasoundRegions", []):
        m[r.RegionLocationMinY0:r.RegionLocationMaxY1 + 1, r.RegionLocationMinX0:r.RegionLocationMaxX1 + 1] = True
    return m


def boxes_mask(audit, shape):
    m = np.zeros(shape, bool)
    for x0, y0, x1, y1 in audit["pixels"].get("boxes", []):
        m[y0:y1 + 1, x0:x1 + 1] = True
    return m


def luminance(ds, a):
    """What the frame shows, 8-bit (palette through its tables)."""
    if ds.PhotometricInterpretation == "PALETTE COLOR":
        a = pydicom.pixels.apply_color_lut(a, ds)
    a = a.astype(np.float64)
    if a.ndim == 4:
        a = a.mean(axis=-1)
    top = a.max() if a.max() > 255 else 255
    return (a / max(top, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("name", FILES)
def test_scan_area_kept_and_frames_in_order(curated, name, tmp_path):
    src, dst, audit = curated[name]
    ds_in, a = pixels(src, tmp_path)
    ds_out, b = pixels(dst, tmp_path)
    assert a.shape == b.shape, (a.shape, b.shape)
    plane = a.shape[1:3]
    keep = regions_mask(ds_in, plane) & ~boxes_mask(audit, plane)
    if not keep.any():
        # No declared regions: the output differs from the input only inside the OCR boxes.
        keep = ~boxes_mask(audit, plane)
    assert keep.mean() > 0.3, keep.mean()
    if ds_in.file_meta.TransferSyntaxUID in LOSSY:
        # Lossy JPEG decoders differ by a grey level or two (IDCT rounding, chroma upsampling).
        diff = np.abs(a[:, keep].astype(int) - b[:, keep].astype(int))
        assert diff.mean() < 0.5, (name, diff.max(), diff.mean())
    else:
        assert np.array_equal(a[:, keep], b[:, keep]), name
    # Every output frame is the input frame at the same index (a tie is a repeated frame).
    if a.shape[0] > 1:
        # On a fixed sample of the kept pixels (a 120-frame cine is 14,400 comparisons).
        sample = np.flatnonzero(keep)[:: max(1, int(keep.sum()) // 20000)]
        ka = a.reshape(a.shape[0], -1, *a.shape[3:])[:, sample].astype(np.int32)
        kb = b.reshape(b.shape[0], -1, *b.shape[3:])[:, sample].astype(np.int32)
        for k in range(a.shape[0]):
            d = np.abs(ka - kb[k][None]).reshape(a.shape[0], -1).mean(axis=1)
            assert d[k] <= min(d) + 1e-9 and d[k] < 1.0, (name, k, d[k], min(d))


def words_outside(ds, frame, outside, tmp):
    """Words of three or more letters or digits that Tesseract reads outside the kept area."""
    g = luminance(ds, frame[None])[0]
    g = np.where(outside, g, 0).astype(np.uint8)
    g = np.kron(np.pad(g, 20), np.ones((2, 2), np.uint8))
    png = tmp / "page.png"
    Image.fromarray(g).save(png)
    run = subprocess.run(["tesseract", str(png), "-", "--psm", "11", "tsv"], capture_output=True, text=True,
                         env={**os.environ, "OMP_THREAD_LIMIT": "1"})
    found = []
    for line in run.stdout.splitlines()[1:]:
        f = line.split("\t")
        if len(f) > 11 and len(re.sub(r"[^0-9A-Za-z]", "", f[11])) >= 3 and float(f[10]) >= 50:
            found.append(f[11])
    return found


@pytest.mark.parametrize("name", [n for n in FILES if not n.startswith("US1_")])
def test_no_text_left_outside_the_declared_regions(curated, name, tmp_path):
    require_tool("tesseract")
    src, dst, audit = curated[name]
    ds_in, a = pixels(src, tmp_path)
    ds_out, b = pixels(dst, tmp_path)
    outside = ~regions_mask(ds_in, a.shape[1:3])
    before = words_outside(ds_in, a[0], outside, tmp_path)
    after = words_outside(ds_out, b[0], outside, tmp_path)
    assert not after, (name, after, before)
    # Not vacuous: the interfaces of these vendors print text outside their regions.
    if name in ("examples_ybr_color.dcm", "color3d_jpeg_baseline.dcm", "OBXXXX1A.dcm", "gdcm-US-ALOKA-16.dcm"):
        assert before, name


def test_the_sonosite_name_is_gone(curated, tmp_path):
    """The patient name printed on the SonoSite echo is read in the input and not in the output."""
    require_tool("tesseract")
    src, dst, _ = curated["color3d_jpeg_baseline.dcm"]
    ds_in, a = pixels(src, tmp_path)
    ds_out, b = pixels(dst, tmp_path)
    everywhere = np.ones(a.shape[1:3], bool)
    before = words_outside(ds_in, a[0], everywhere, tmp_path)
    after = words_outside(ds_out, b[0], everywhere, tmp_path)
    # What the input shows outside the scan area (name, date, clinic) is not in the output.
    gone = {re.sub(r"[^0-9A-Z]", "", w.upper()) for w in before} - {re.sub(r"[^0-9A-Z]", "", w.upper()) for w in after}
    assert len(gone) >= 2, (before, after)


def test_no_new_dciodvfy_errors(curated):
    dciodvfy = require_tool("dciodvfy")

    def errors(path):
        out = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
        return {l for l in (out.stdout + out.stderr).splitlines() if l.startswith("Error")}

    for name, (src, dst, _) in curated.items():
        new = errors(dst) - errors(src)
        assert not new, (name, sorted(new))
