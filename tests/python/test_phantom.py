"""The phantom cohort checked by independent tools: pydicom reads and decodes every file,
dciodvfy (dicom3tools) finds no errors, and the ground-truth files describe exactly what was
planted in headers and pixels."""

import csv
import json
import math
import re
import subprocess
import zipfile

import numpy as np
import pydicom
import pytest

from conftest import require_tool

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def studies(cohort):
    with open(cohort / "studies.csv", newline="") as f:
        return list(csv.DictReader(f))


def phi(cohort):
    return json.loads((cohort / "phi.json").read_text())


def rgb_frames(ds):
    # pydicom 3 converts YBR_FULL_422 to RGB while decoding (as_rgb=True by default).
    return ds.pixel_array


def luminance(frames):
    if frames.ndim == 4:
        return frames.astype(np.float32).max(axis=-1)
    return frames.astype(np.float32)


def test_every_file_parses_and_decodes_in_pydicom(cohort):
    rows = studies(cohort)
    assert len(rows) >= 10
    kinds = set()
    for r in rows:
        ds = pydicom.dcmread(cohort / r["file"])
        assert ds.SOPClassUID == US_MULTIFRAME
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.TransferSyntaxUID == r["transfer_syntax"]
        assert ds.PhotometricInterpretation == r["photometric"]
        frames = int(ds.NumberOfFrames)
        assert frames == int(r["frames"]) and 32 <= frames <= 64
        fps = float(r["frame_rate"])
        assert 30 <= fps <= 60
        assert math.isclose(float(ds.FrameTime), 1000.0 / fps, rel_tol=1e-6)
        assert int(ds.CineRate) == round(fps)
        assert ds.FrameIncrementPointer == 0x00181063
        region = ds.SequenceOfUltrasoundRegions[0]
        assert region.PhysicalUnitsXDirection == 3
        assert math.isclose(region.PhysicalDeltaX, float(r["pixel_spacing_cm"]), rel_tol=1e-5)
        a = ds.pixel_array
        expected = (frames, 240, 320) + ((3,) if ds.SamplesPerPixel == 3 else ())
        assert a.shape == expected and a.dtype == np.uint8
        kinds.add((ds.PhotometricInterpretation, ds.file_meta.TransferSyntaxUID))
    # The cohort mixes colour models and transfer syntaxes.
    assert len(kinds) >= 3, kinds


@pytest.mark.parametrize("which", ["cohort", "cohort_full_size"])
def test_dciodvfy_reports_no_errors(which, request):
    cohort = request.getfixturevalue(which)
    dciodvfy = require_tool("dciodvfy")
    for r in studies(cohort):
        out = subprocess.run([dciodvfy, str(cohort / r["file"])], capture_output=True, text=True)
        text = out.stdout + out.stderr
        errors = [l for l in text.splitlines() if l.startswith("Error")]
        assert not errors, f"{r['file']}: {errors}"
        assert "USMultiFrameImage" in text


def test_full_size_files_decode_at_native_resolution(cohort_full_size):
    for r in studies(cohort_full_size):
        ds = pydicom.dcmread(cohort_full_size / r["file"])
        a = ds.pixel_array
        assert a.shape[1:3] == (480, 640)
        assert a.shape[0] == int(ds.NumberOfFrames) == int(r["frames"])


def resolve(ds, path):
    """Follows a phi.json tag path such as (0010,1002)[0].(0010,0020)."""
    node = ds
    for part in path.split("."):
        m = re.fullmatch(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)(?:\[(\d+)\])?", part)
        assert m, part
        tag = (int(m.group(1), 16) << 16) | int(m.group(2), 16)
        src = node.file_meta if tag >> 16 == 0x0002 else node
        elem = src[tag]
        node = elem.value[int(m.group(3))] if m.group(3) is not None else elem
    return node


def test_phi_json_matches_the_headers(cohort):
    truth = phi(cohort)
    files = {f["file"]: f for f in truth["files"]}
    assert set(files) == {r["file"] for r in studies(cohort)}
    for name, entry in files.items():
        ds = pydicom.dcmread(cohort / name)
        for h in entry["header"]:
            elem = resolve(ds, h["path"])
            assert str(elem.value) == h["value"], (name, h["path"])
            assert elem.VR == h["vr"], (name, h["path"])
            if h.get("private_creator"):
                group = int(h["path"][1:5], 16)
                block = int(h["path"][6:8], 16)
                assert ds[(group << 16) | block].value == h["private_creator"]


def walk(ds, prefix=""):
    for elem in ds:
        path = f"{prefix}({elem.tag.group:04X},{elem.tag.element:04X})"
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                yield from walk(item, f"{path}[{i}].")
        else:
            yield path, elem


IDENTIFYING_VRS = {"PN", "DA", "TM", "DT"}
NOT_PHI_UIDS = {0x00080016, 0x00020002, 0x00020010, 0x00020012}


def test_phi_json_lists_every_identifying_element(cohort):
    """Independent completeness check: any element that is a name, date, time or instance UID,
    is private, or whose value contains a planted identity, must be listed in phi.json."""
    truth = phi(cohort)
    for entry in truth["files"]:
        ds = pydicom.dcmread(cohort / entry["file"], stop_before_pixels=True)
        listed = {h["path"] for h in entry["header"]}
        identities = {
            h["value"] for h in entry["header"]
            if h["category"] in ("name", "id") and h["vr"] in ("LO", "SH")
        }
        for h in entry["header"]:
            if h["vr"] == "PN":
                identities.update(p for p in h["value"].split("^") if len(p) >= 5)
            if h["vr"] == "DA":
                identities.add(h["value"])
        for path, elem in list(walk(ds)) + list(walk(ds.file_meta)):
            text = str(elem.value)
            must = (
                elem.VR in IDENTIFYING_VRS
                or (elem.VR == "UI" and int(elem.tag) not in NOT_PHI_UIDS)
                or (elem.tag.is_private and not elem.tag.is_private_creator)
                or any(i in text for i in identities)
            )
            if must and text:
                assert path in listed, (entry["file"], path, elem.keyword)


def test_burned_in_boxes_hold_the_text_on_every_frame(cohort):
    truth = phi(cohort)
    in_sector = 0
    for entry in truth["files"]:
        ds = pydicom.dcmread(cohort / entry["file"])
        lum = luminance(rgb_frames(ds))
        kinds = {p["kind"] for p in entry["pixels"]}
        assert {"patient_name", "patient_id", "birth_date", "study_datetime", "institution"} <= kinds
        for p in entry["pixels"]:
            b = p["box"]
            assert b["width"] >= 8 * len(p["text"]) and b["height"] >= 8
            crop = lum[:, b["y"]:b["y"] + b["height"], b["x"]:b["x"] + b["width"]]
            bright = (crop >= 180).mean(axis=(1, 2))
            assert bright.min() > 0.08, (entry["file"], p["kind"], bright.min())
            # Static over time, as a burned-in overlay is: the strokes of the first frame stay lit.
            strokes = crop[0] >= 200
            assert (crop[:, strokes] >= 150).mean() > 0.97, (entry["file"], p["kind"])
            in_sector += p["in_sector"]
    assert in_sector >= 2


def test_header_band_has_no_undocumented_text(cohort):
    """Every bright pixel above the scan sector belongs to a recorded PHI box or its label."""
    truth = phi(cohort)
    for entry in truth["files"]:
        r = next(s for s in studies(cohort) if s["file"] == entry["file"])
        sector = np.load(cohort / r["mask_file"])["sector"]
        top = int(np.argmax(sector.any(axis=1)))
        ds = pydicom.dcmread(cohort / entry["file"])
        lum = luminance(rgb_frames(ds))[0]
        covered = np.zeros_like(lum, dtype=bool)
        scale = 1
        for p in entry["pixels"]:
            b = p["box"]
            label = 4 * 8 * scale  # "DOB " / "ID " labels stand left of the value
            covered[max(0, b["y"] - 3):b["y"] + b["height"] + 3,
                    max(0, b["x"] - label - 3):b["x"] + b["width"] + 3] = True
        stray = (lum[:top] >= 128) & ~covered[:top]
        assert stray.sum() == 0, (entry["file"], int(stray.sum()))


def test_masks_and_ellipses_give_the_ejection_fraction(cohort):
    for r in studies(cohort):
        t = json.loads((cohort / r["truth_file"]).read_text())
        with zipfile.ZipFile(cohort / r["mask_file"]) as z:
            assert set(z.namelist()) == {"lv.npy", "sector.npy"}
        masks = np.load(cohort / r["mask_file"])
        lv, sector = masks["lv"], masks["sector"]
        assert lv.shape == (int(r["frames"]), 240, 320)
        assert not (lv.astype(bool) & ~sector.astype(bool)[None]).any()
        for f in (0, len(lv) // 2, len(lv) - 1):
            e = t["lv_ellipses"][f]
            assert abs(lv[f].sum() - math.pi * e["a"] * e["b"]) / (math.pi * e["a"] * e["b"]) < 0.05
        vol = [e["a"] * e["b"] ** 2 for e in t["lv_ellipses"]]
        clip_ef = 100 * (1 - min(vol) / max(vol))
        assert math.isclose(clip_ef, float(r["clip_ef"]), abs_tol=1e-2)
        assert abs(clip_ef - float(r["ef"])) < 3.0, (r["study_key"], clip_ef, r["ef"])
        # ED frames have the largest cavity, ES the smallest.
        areas = lv.reshape(len(lv), -1).sum(axis=1)
        for f in map(int, r["ed_frames"].split(";")):
            assert areas[f] >= np.percentile(areas, 75)
        for f in map(int, r["es_frames"].split(";")):
            assert areas[f] <= np.percentile(areas, 25)


def test_patients_table_is_consistent(cohort):
    with open(cohort / "patients.csv", newline="") as f:
        patients = list(csv.DictReader(f))
    assert len(patients) == 10
    by_key = {p["patient_key"]: p for p in patients}
    for s in studies(cohort):
        p = by_key[s["patient_key"]]
        assert s["split"] == p["split"] and s["site"] == p["site"]
    for p in patients:
        assert (float(p["ef"]) < 40) == (p["reduced_ef"] == "1")
        assert float(p["time_days"]) >= 1 and p["event"] in ("0", "1")
        assert p["split"] in ("train", "val", "test")
