"""Burned-in text outside ultrasound (CR, CT, PT): `bedside curate` on the Pseudo-PHI-DICOM-Data
images checked with independent tools. Tesseract (the CLI, not Bedside's binding) reads the output
pixels as decoded by pydicom and finds none of the patient's names, IDs or dates; every pixel
outside the boxes the audit reports is bit-identical to pydicom's decode of the input; Presidio's
ground-truth boxes are masked; outputs pass dciodvfy with no new errors."""

import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from PIL import Image

from conftest import ROOT, require_tool


def shared_dir():
    env = os.environ.get("BEDSIDE_SHARED_DIR")
    return pathlib.Path(env) if env else ROOT.parent / "shared"


BURNED = shared_dir() / "testdata" / "dicom" / "burned-in"
FILES = ["0_ORIGINAL_compressed.dcm", "2_ORIGINAL.dcm", "RGB_ORIGINAL.dcm"]
WITH_TEXT = ["0_ORIGINAL_compressed.dcm", "2_ORIGINAL.dcm"]


def require_data():
    if not BURNED.is_dir():
        if os.environ.get("BEDSIDE_REQUIRE_PEERS") == "1":
            pytest.fail(f"test data missing: {BURNED}")
        pytest.skip("burned-in test data not available")


def sha(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def curate(bedside, tmp, profile=None, extra=(), files=FILES, code=0):
    require_data()
    src = tmp / "in"
    src.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(BURNED / f, src / f)
    out = tmp / "out"
    cmd = [str(bedside), "-q", "curate", str(src), "-o", str(out), "--secret-dir", str(tmp / "secret"),
           "--no-arrays", *extra]
    if profile:
        (tmp / "profile.toml").write_text(profile)
        cmd += ["--profile", str(tmp / "profile.toml")]
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == code, run.stderr
    audit = [json.loads(l) for l in (out / "audit.jsonl").read_text().splitlines() if l]
    by_input = {a["input_sha256"]: a for a in audit}
    return {f: (src / f, out, by_input[sha(src / f)]) for f in files}


@pytest.fixture(scope="module")
def curated(tmp_path_factory, bedside):
    return curate(bedside, tmp_path_factory.mktemp("burned"))


def grey(ds):
    """The image as it displays, 8-bit, for Tesseract: full range, MONOCHROME1 inverted."""
    a = ds.pixel_array.astype(np.float64)
    if a.ndim == 3:
        a = a.mean(axis=-1)
    lo, hi = a.min(), a.max()
    g = ((a - lo) / max(hi - lo, 1) * 255).astype(np.uint8)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        g = 255 - g
    return g


def tesseract_words(ds, tmp):
    """Words Tesseract reads in the image: padded (text touches the edge) and upscaled 2x when
    small, sparse-text mode, as Presidio and the field notes recommend."""
    g = np.pad(grey(ds), 20)
    if g.shape[0] < 1000:
        g = np.kron(g, np.ones((2, 2), np.uint8))
    png = tmp / "page.png"
    Image.fromarray(g).save(png)
    run = subprocess.run(["tesseract", str(png), "-", "--psm", "11", "tsv"], capture_output=True, text=True,
                         env={**os.environ, "OMP_THREAD_LIMIT": "1"})
    assert run.returncode == 0, run.stderr
    words = []
    for line in run.stdout.splitlines()[1:]:
        f = line.split("\t")
        if len(f) > 11 and f[11].strip():
            words.append(f[11].strip())
    return words


def norm(w):
    return re.sub(r"[^0-9A-Z]", "", w.upper())


def near(a, b):
    """Levenshtein distance at most one (OCR misreads a letter: KAUPMAN for KAUFMAN)."""
    if abs(len(a) - len(b)) > 1:
        return False
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a):
        cur = [i + 1]
        for j, cb in enumerate(b):
            cur.append(min(prev[j] + (ca != cb), prev[j + 1] + 1, cur[j] + 1))
        prev = cur
    return prev[-1] <= 1


def phi_tokens(ds, ground_truth=()):
    """The patient's identifiers as they can appear on an image: name parts, IDs, dates in the
    usual orders (digits only, separators vary), plus Presidio's ground-truth words."""
    words, digits = set(), set()
    for part in re.split(r"[\^ ,]", str(ds.get("PatientName", ""))):
        if len(norm(part)) >= 3:
            words.add(norm(part))
    if ds.get("PatientID"):
        digits.add(norm(ds.PatientID))
    for kw in ("PatientBirthDate", "StudyDate", "AcquisitionDate", "ContentDate"):
        v = str(ds.get(kw, "") or "")
        if len(v) == 8:
            y, m, d = v[:4], v[4:6], v[6:]
            digits |= {y + m + d, m + d + y, d + m + y}
    for w in ground_truth:
        n = norm(w)
        if n.isdigit() and len(n) >= 6:
            digits.add(n)
        elif len(n) >= 3:
            words.add(n)
    return words, digits


def leaks(words, tokens):
    names, digits = tokens
    found = []
    for w in words:
        n = norm(w)
        if len(n) < 3:
            continue
        d = re.sub(r"\D", "", n)
        if any(n == t or (len(t) >= 5 and near(n, t)) for t in names):
            found.append(w)
        elif len(d) >= 6 and any(d in t or t in d for t in digits):
            found.append(w)
    return found


def ground_truth_words():
    gt = json.loads((BURNED / "dicom_pii_verify_integration.json").read_text())
    return gt["ground_truth"]


def masked(shape, boxes):
    m = np.zeros(shape, bool)
    for x0, y0, x1, y1 in boxes:
        m[y0:y1 + 1, x0:x1 + 1] = True
    return m


@pytest.mark.parametrize("name", WITH_TEXT)
def test_tesseract_finds_no_phi_in_the_output(curated, name, tmp_path):
    require_tool("tesseract")
    src, out, audit = curated[name]
    assert audit["status"] == "curated"
    ds_in = pydicom.dcmread(src)
    ds_out = pydicom.dcmread(out / audit["output"])
    gt = [g["label"] for g in ground_truth_words()] if name.startswith("0_") else []
    tokens = phi_tokens(ds_in, gt)
    before = leaks(tesseract_words(ds_in, tmp_path), tokens)
    # Not vacuous: the same reading of the input finds the name and dates.
    assert len(before) >= 3, before
    after = leaks(tesseract_words(ds_out, tmp_path), tokens)
    assert not after, (name, after)


@pytest.mark.parametrize("name", ["0_ORIGINAL_compressed.dcm", "2_ORIGINAL.dcm", "RGB_ORIGINAL.dcm"])
def test_pixels_outside_masked_boxes_are_bit_identical(curated, name):
    src, out, audit = curated[name]
    ds_in, ds_out = pydicom.dcmread(src), pydicom.dcmread(out / audit["output"])
    a, b = ds_in.pixel_array, ds_out.pixel_array
    assert a.shape == b.shape and a.dtype == b.dtype
    px = audit["pixels"]
    boxes = px.get("boxes", [])
    m = masked(a.shape[:2], boxes)
    assert np.array_equal(a[~m], b[~m]), name
    if not px["changed"]:
        # Nothing masked: the pixel data and its transfer syntax are the input's.
        assert not boxes
        assert ds_out.file_meta.TransferSyntaxUID == ds_in.file_meta.TransferSyntaxUID
        assert ds_out.PixelData == ds_in.PixelData
        return
    # Masked: written losslessly (uncompressed), the rest of the image untouched; the masked
    # area is a small part of the image (lines of text, not the anatomy).
    assert not ds_out.file_meta.TransferSyntaxUID.is_compressed
    assert 0 < m.mean() < 0.05, m.mean()
    # Filled with what displays as black: the largest stored value in MONOCHROME1, the smallest
    # in MONOCHROME2.
    fill = a.max() if ds_in.PhotometricInterpretation == "MONOCHROME1" else a.min()
    assert (b[m] == fill).all()


def test_presidio_ground_truth_boxes_are_masked(curated):
    src, out, audit = curated["0_ORIGINAL_compressed.dcm"]
    m = masked(pydicom.dcmread(src).pixel_array.shape, audit["pixels"]["boxes"])
    # Presidio's redactor pads the image by 25 pixels before reading it; its boxes are in the
    # padded frame.
    for g in ground_truth_words():
        x, y = g["left"] - 25, g["top"] - 25
        box = m[max(y, 0):y + g["height"], max(x, 0):x + g["width"]]
        assert box.mean() >= 0.9, (g["label"], box.mean())


def test_non_phi_text_is_kept_under_the_phi_policy(curated, tmp_path):
    require_tool("tesseract")
    src, out, audit = curated["0_ORIGINAL_compressed.dcm"]
    words = {norm(w) for w in tesseract_words(pydicom.dcmread(out / audit["output"]), tmp_path)}
    assert {"SEMIUPRIGHT", "PORTABLE"} <= words, words


def test_header_without_pixels_is_curated(bedside, tmp_path):
    runs = curate(bedside, tmp_path, files=["0_ORIGINAL_no_pixels.dcm"])
    src, out, audit = runs["0_ORIGINAL_no_pixels.dcm"]
    assert audit["status"] == "curated" and "pixels" not in audit
    ds = pydicom.dcmread(out / audit["output"])
    assert "PixelData" not in ds and ds.PatientIdentityRemoved == "YES"


def test_two_inputs_with_one_sop_instance_uid_are_both_accounted_for(bedside, tmp_path):
    """The pixel-less twin shares its SOP Instance UID with the image: one is curated, the other
    quarantined with the reason, and the output is not overwritten."""
    files = ["0_ORIGINAL_compressed.dcm", "0_ORIGINAL_no_pixels.dcm"]
    assert len({pydicom.dcmread(BURNED / f, stop_before_pixels=True).SOPInstanceUID for f in files}) == 1
    runs = curate(bedside, tmp_path, files=files, code=4)
    statuses = sorted(a["status"] for _, _, a in runs.values())
    assert statuses == ["curated", "quarantined"], statuses
    winner = next(a for _, _, a in runs.values() if a["status"] == "curated")
    loser = next(a for _, _, a in runs.values() if a["status"] == "quarantined")
    assert "duplicate SOP Instance UID" in loser["reason"]
    out = next(iter(runs.values()))[1]
    assert sha(out / winner["output"]) == winner["output_sha256"]


def test_no_new_dciodvfy_errors(curated):
    dciodvfy = require_tool("dciodvfy")

    def errors(path):
        run = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
        return {l for l in (run.stdout + run.stderr).splitlines() if l.startswith("Error")}

    for name, (src, out, audit) in curated.items():
        new = errors(out / audit["output"]) - errors(src)
        assert not new, (name, sorted(new))


def test_per_modality_policy_from_the_profile(bedside, tmp_path):
    """`off` for CR leaves its pixels alone (and the output does not claim Clean Pixel Data);
    `all` for CT masks every line of text, not only the identifying ones."""
    require_tool("tesseract")
    profile = '[burned_in_text]\ndefault = "phi"\n[burned_in_text.modality]\nCR = "off"\nCT = "all"\n'
    runs = curate(bedside, tmp_path, profile)
    src, out, audit = runs["0_ORIGINAL_compressed.dcm"]
    assert "pixels" not in audit
    ds_out = pydicom.dcmread(out / audit["output"])
    assert np.array_equal(ds_out.pixel_array, pydicom.dcmread(src).pixel_array)
    assert "113101" not in [c.CodeValue for c in ds_out.DeidentificationMethodCodeSequence]
    src, out, audit = runs["2_ORIGINAL.dcm"]
    ds_out = pydicom.dcmread(out / audit["output"])
    assert "113101" in [c.CodeValue for c in ds_out.DeidentificationMethodCodeSequence]
    words = [w for w in tesseract_words(ds_out, tmp_path) if len(norm(w)) >= 3]
    assert not words, words


def test_ocr_off_quarantines_declared_burned_in_text(bedside, tmp_path):
    """A file that declares BurnedInAnnotation = YES is not passed through unread."""
    require_data()
    src = tmp_path / "in"
    src.mkdir()
    ds = pydicom.dcmread(BURNED / "2_ORIGINAL.dcm")
    ds.BurnedInAnnotation = "YES"
    ds.save_as(src / "declared.dcm")
    out = tmp_path / "out"
    run = subprocess.run([str(bedside), "-q", "curate", str(src), "-o", str(out), "--secret-dir",
                          str(tmp_path / "s"), "--ocr", "off", "--no-arrays"], capture_output=True, text=True)
    assert run.returncode == 4, run.stderr
    q = (out / "quarantine.csv").read_text()
    assert "BurnedInAnnotation is YES" in q
