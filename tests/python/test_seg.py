"""`bedside seg`: the phantom's per-frame left-ventricle masks written as DICOM Segmentation,
checked by independent readers: pydicom parses it and unpacks the 1-bit frames back to the
masks, dciodvfy (dicom3tools) finds no errors, and every frame references its source frame.
highdicom, when installed, reads the segments back as well."""

import csv
import subprocess

import numpy as np
import pydicom
import pytest

from conftest import require_tool

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"


def studies(cohort):
    with open(cohort / "studies.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["mask_file"]]


def lv_masks(cohort, row):
    with np.load(cohort / row["mask_file"]) as z:
        return z["lv"]


@pytest.fixture(scope="module")
def segs(cohort, bedside, tmp_path_factory):
    """Two studies of the shared phantom cohort (one monochrome, one RGB if present) as SEG."""
    rows = studies(cohort)
    picked = []
    for want_rgb in (False, True):
        for r in rows:
            ds = pydicom.dcmread(cohort / r["file"], stop_before_pixels=True)
            if (ds.SamplesPerPixel == 3) == want_rgb:
                picked.append(r)
                break
    out = tmp_path_factory.mktemp("seg")
    made = []
    for r in picked:
        path = out / f"{r['study_key']}-seg.dcm"
        subprocess.run(
            [str(bedside), "-q", "seg", str(cohort / r["file"]), str(cohort / r["mask_file"]), "-o", str(path)],
            check=True,
        )
        made.append((r, path))
    assert made
    return made


def test_masks_round_trip_through_pydicom(cohort, segs):
    for r, path in segs:
        seg = pydicom.dcmread(path)
        src = pydicom.dcmread(cohort / r["file"], stop_before_pixels=True)
        truth = lv_masks(cohort, r)
        assert seg.SOPClassUID == SEG_STORAGE and seg.Modality == "SEG"
        assert seg.BitsAllocated == 1 and seg.SegmentationType == "BINARY"
        assert seg.StudyInstanceUID == src.StudyInstanceUID
        assert seg.SeriesInstanceUID != src.SeriesInstanceUID
        assert seg.PatientID == src.PatientID
        frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
        assert frames.shape == truth.shape
        assert np.array_equal(frames.astype(bool), truth.astype(bool))
        assert truth.sum() > 0
        # Independent unpacking of the bit stream (LSB first, no padding between frames).
        bits = np.unpackbits(np.frombuffer(seg.PixelData, np.uint8), bitorder="little")
        assert np.array_equal(bits[: truth.size].reshape(truth.shape).astype(bool), truth.astype(bool))


def test_every_frame_references_its_source_frame(cohort, segs):
    for r, path in segs:
        seg = pydicom.dcmread(path)
        src = pydicom.dcmread(cohort / r["file"], stop_before_pixels=True)
        segment = seg.SegmentSequence[0]
        assert segment.SegmentNumber == 1
        assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "87878005"
        assert segment.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
        assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
        for k, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
            ref = item.DerivationImageSequence[0].SourceImageSequence[0]
            assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID
            assert ref.ReferencedSOPClassUID == src.SOPClassUID
            assert int(ref.ReferencedFrameNumber) == k + 1
            assert item.SegmentIdentificationSequence[0].ReferencedSegmentNumber == 1
            assert list(item.FrameContentSequence[0].DimensionIndexValues) == [1, k + 1]
        refs = seg.ReferencedSeriesSequence[0]
        assert refs.SeriesInstanceUID == src.SeriesInstanceUID
        assert refs.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID


def test_dciodvfy_reports_no_errors(segs):
    dciodvfy = require_tool("dciodvfy")
    for _, path in segs:
        out = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True)
        text = out.stdout + out.stderr
        errors = [l for l in text.splitlines() if l.startswith("Error")]
        assert not errors, f"{path.name}: {errors}\n{text}"
        assert "Segmentation" in text


def test_skip_empty_frames_keeps_the_right_references(cohort, bedside, tmp_path):
    r = studies(cohort)[0]
    truth = lv_masks(cohort, r).copy()
    truth[::2] = 0  # every other frame empty
    src = tmp_path / "masks.npy"
    np.save(src, truth.astype(np.uint8))
    path = tmp_path / "seg.dcm"
    subprocess.run(
        [str(bedside), "-q", "seg", str(cohort / r["file"]), str(src), "-o", str(path), "--skip-empty",
         "--algorithm", "manual", "--creator", "DOE^JANE", "--label", "LV cavity"],
        check=True,
    )
    seg = pydicom.dcmread(path)
    kept = [k for k in range(truth.shape[0]) if truth[k].any()]
    assert int(seg.NumberOfFrames) == len(kept)
    got = seg.pixel_array.reshape(len(kept), seg.Rows, seg.Columns)
    for j, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
        assert number == kept[j] + 1
        assert np.array_equal(got[j].astype(bool), truth[kept[j]].astype(bool))
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"
    assert seg.SegmentSequence[0].SegmentLabel == "LV cavity"
    assert str(seg.ContentCreatorName) == "DOE^JANE"


def test_wrong_mask_shape_is_refused(cohort, bedside, tmp_path):
    r = studies(cohort)[0]
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 3, 4), np.uint8))
    out = subprocess.run(
        [str(bedside), "-q", "seg", str(cohort / r["file"]), str(bad), "-o", str(tmp_path / "x.dcm")],
        capture_output=True, text=True,
    )
    assert out.returncode == 3, out.stderr
    assert "pixels" in out.stderr and not (tmp_path / "x.dcm").exists()


def test_highdicom_reads_the_segments(cohort, segs):
    hd = pytest.importorskip("highdicom")
    for r, path in segs:
        seg = hd.seg.segread(path)
        truth = lv_masks(cohort, r).astype(bool)
        assert seg.number_of_segments == 1
        src = pydicom.dcmread(cohort / r["file"], stop_before_pixels=True)
        frames = list(range(1, truth.shape[0] + 1))
        arr = seg.get_pixels_by_source_frame(
            source_sop_instance_uid=src.SOPInstanceUID, source_frame_numbers=frames,
            segment_numbers=[1], combine_segments=True,
        )
        assert np.array_equal(arr.astype(bool), truth)
