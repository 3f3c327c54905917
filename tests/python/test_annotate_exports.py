"""`bedside annotate` exports checked from outside: the binary serves a phantom study, a reader
draws a 9 cm length, a series label and a mask through the API, and the SR (TID 1500), SEG and
mask exports are read back with independent tools. dciodvfy (dicom3tools) must find no errors;
pydicom reads the value (90 mm, UCUM `mm`), the Referenced Frame Number, the observer's name,
the SEG pixels and the NumPy/PNG masks; highdicom, when installed, parses the measurement report
and the segmentation on its own. The CLI export of the same data folder must give the same
objects as the API."""

import base64
import io
import json
import math
import subprocess
import zipfile

import numpy as np
import pydicom
import pytest

from conftest import AnnotateClient, annotate_server, require_tool

SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
READER = "dr.alice"
LENGTH_FRAME = 4
MASK_FRAME = 2


@pytest.fixture(scope="module")
def study(tmp_path_factory, bedside):
    out = tmp_path_factory.mktemp("exports_phantom") / "cohort"
    subprocess.run(
        [str(bedside), "-q", "synth", "phantom", str(out), "--patients", "1", "--seed", "11",
         "--rows", "240", "--columns", "320", "--frames", "5:5", "--no-masks"],
        check=True,
    )
    [path] = sorted((out / "dicom").rglob("*.dcm"))
    return out, path, pydicom.dcmread(path)


@pytest.fixture(scope="module")
def session(tmp_path_factory, bedside, study):
    cohort, _, ds = study
    data = tmp_path_factory.mktemp("exports_data")
    users = {"admin": ("admin-password", True), READER: (f"{READER}-password", False)}
    with annotate_server(bedside, cohort / "dicom", data, users) as root:
        admin = AnnotateClient(root, "admin", "admin-password")
        reader = AnnotateClient(root, READER, f"{READER}-password")
        schema = {
            "labels": [{"name": "view", "choice": "single", "scope": "series",
                        "options": ["A4C", "PLAX"]}],
            "measurements": [{"name": "LVIDd", "kind": "length"}],
            "masks": [{"name": "LV cavity"}],
        }
        status, _, body = admin.call("POST", "/api/projects",
                                     {"name": "exports", "blinded": False, "schema": schema})
        assert status in (200, 201, 204), body
        pid = json.loads(body)["id"]
        assert admin.call("POST", f"/api/projects/{pid}/studies",
                          {"study_instance_uid": ds.StudyInstanceUID})[0] in (200, 201, 204)
        assert admin.call("PUT", f"/api/projects/{pid}/members/{READER}",
                          {"role": "annotator"})[0] in (200, 204)
        assert admin.call("PUT", f"/api/projects/{pid}/studies/{ds.StudyInstanceUID}"
                                 f"/assignees/{READER}")[0] in (200, 204)
        yield {"data": data, "pid": pid, "admin": admin, "reader": reader}


def nine_cm_segment(ds):
    """Two points inside the 2D region whose distance is exactly 9 cm by the region's own
    calibration (PhysicalDeltaX/Y in cm per pixel), along the region's diagonal."""
    region = ds.SequenceOfUltrasoundRegions[0]
    assert region.PhysicalUnitsXDirection == 3 and region.PhysicalUnitsYDirection == 3  # cm
    x0, y0 = float(region.RegionLocationMinX0), float(region.RegionLocationMinY0)
    x1, y1 = float(region.RegionLocationMaxX1), float(region.RegionLocationMaxY1)
    dx, dy = abs(float(region.PhysicalDeltaX)), abs(float(region.PhysicalDeltaY))
    diagonal_cm = math.hypot((x1 - x0) * dx, (y1 - y0) * dy)
    assert diagonal_cm > 9.0, f"region diagonal is only {diagonal_cm} cm"
    t = 9.0 / diagonal_cm
    return [[x0, y0], [x0 + t * (x1 - x0), y0 + t * (y1 - y0)]]


@pytest.fixture(scope="module")
def drawn(session, study):
    _, _, ds = study
    reader, pid = session["reader"], session["pid"]
    base = f"/api/projects/{pid}/studies/{ds.StudyInstanceUID}/annotations"
    where = {"series_instance_uid": ds.SeriesInstanceUID, "sop_instance_uid": ds.SOPInstanceUID}
    points = nine_cm_segment(ds)
    status, _, body = reader.call("POST", base, {**where, "frame": LENGTH_FRAME, "kind": "length",
                                                 "name": "LVIDd", "payload": {"points": points}})
    assert status == 201, body
    length = json.loads(body)
    status, _, body = reader.call("POST", base, {"series_instance_uid": ds.SeriesInstanceUID,
                                                 "kind": "label", "name": "view",
                                                 "payload": {"values": ["A4C"]}})
    assert status == 201, body
    rng = np.random.default_rng(7)
    mask = np.zeros((ds.Rows, ds.Columns), np.uint8)
    mask[60:120, 100:180] = 1
    mask[rng.random(mask.shape) < 0.02] = 1  # scattered pixels: bit order matters
    status, _, body = reader.call("POST", base, {
        **where, "frame": MASK_FRAME, "kind": "mask", "name": "LV cavity",
        "payload": {"rows": int(ds.Rows), "columns": int(ds.Columns),
                    "data": base64.b64encode(mask.tobytes()).decode()}})
    assert status == 201, body
    return {"length": length, "mask": mask, "points": points}


def export(session, fmt, accept=None):
    status, headers, body = session["admin"].call(
        "GET", f"/api/projects/{session['pid']}/export?format={fmt}", accept=accept)
    assert status == 200, body[:500]
    return headers, body


def dicom_members(body):
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        manifest = json.loads(z.read("manifest.json"))
        return manifest, {n: z.read(n) for n in z.namelist() if n.endswith(".dcm")}


def dciodvfy(path):
    """Runs dciodvfy; returns (errors, warnings) lines."""
    tool = require_tool("dciodvfy")
    out = subprocess.run([tool, str(path)], capture_output=True, text=True)
    lines = (out.stdout + out.stderr).splitlines()
    return ([l for l in lines if l.startswith("Error")],
            [l for l in lines if l.startswith("Warning")])


def walk(items):
    for item in items:
        yield item
        yield from walk(item.get("ContentSequence", []))


def concept(item):
    seq = item.get("ConceptNameCodeSequence")
    return (seq[0].CodeValue, seq[0].CodingSchemeDesignator) if seq else None


@pytest.fixture(scope="module")
def sr(session, drawn, tmp_path_factory):
    headers, body = export(session, "sr")
    assert headers["Content-Type"] == "application/zip"
    manifest, members = dicom_members(body)
    assert len(members) == 1, manifest
    [(name, data)] = members.items()
    assert name.endswith(f"/{READER}.dcm")
    path = tmp_path_factory.mktemp("sr") / "sr.dcm"
    path.write_bytes(data)
    return path, body


def test_sr_passes_dciodvfy(sr):
    errors, warnings = dciodvfy(sr[0])
    print("dciodvfy SR warnings:", *warnings, sep="\n  ")
    assert not any("Person Name" in w for w in warnings), warnings
    assert not errors, "\n".join(errors)


def test_sr_length_unit_frame_and_observer(sr, study, drawn):
    _, _, src = study
    ds = pydicom.dcmread(sr[0])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"
    assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.PatientID == src.PatientID
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    items = list(walk(ds.ContentSequence))
    [observer] = [i for i in items if concept(i) == ("121008", "DCM")]
    # The account name as the family name component (a name without a caret would be the
    # retired free-text form).
    assert observer.ValueType == "PNAME" and observer.PersonName.family_name == READER
    assert str(observer.PersonName) == READER + "^"
    [num] = [i for i in items if concept(i) == ("410668003", "SCT")]
    value = num.MeasuredValueSequence[0]
    unit = value.MeasurementUnitsCodeSequence[0]
    assert (unit.CodeValue, unit.CodingSchemeDesignator) == ("mm", "UCUM")
    assert float(value.NumericValue) == pytest.approx(90.0, abs=1e-6)
    assert float(value.FloatingPointValue) == pytest.approx(90.0, abs=1e-9)
    [scoord] = num.ContentSequence
    assert scoord.RelationshipType == "INFERRED FROM" and scoord.GraphicType == "POLYLINE"
    assert np.allclose(np.reshape(scoord.GraphicData, (-1, 2)), drawn["points"], atol=1e-4)
    [image] = scoord.ContentSequence
    assert image.RelationshipType == "SELECTED FROM"
    ref = image.ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert ref.ReferencedSOPClassUID == src.SOPClassUID
    assert int(ref.ReferencedFrameNumber) == LENGTH_FRAME
    # The series label as a coded evaluation with the series UID.
    [label] = [i for i in items if i.ValueType == "CODE"
               and i.ConceptCodeSequence[0].CodeMeaning == "A4C"]
    assert label.ContentSequence[0].UID == src.SeriesInstanceUID
    # The evidence lists the source.
    ev = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert ev.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID


def test_sr_reads_as_a_highdicom_measurement_report(sr, study):
    hd = pytest.importorskip("highdicom")
    _, _, src = study
    doc = hd.sr.srread(sr[0])
    report = hd.sr.MeasurementReport.from_sequence([doc])
    [observer] = report.get_observer_contexts()
    assert observer.observer_identifying_attributes[0].value.family_name == READER
    groups = report.get_image_measurement_groups()
    [group] = [g for g in groups if g.tracking_identifier.startswith("LVIDd #")]
    assert group.finding_type.meaning == "LVIDd"
    [m] = group.get_measurements(name=hd.sr.CodedConcept("410668003", "SCT", "Length"))
    assert m.value == pytest.approx(90.0, abs=1e-6)
    assert m.unit.value == "mm" and m.unit.scheme_designator == "UCUM"


@pytest.fixture(scope="module")
def seg(session, drawn, tmp_path_factory):
    _, body = export(session, "seg")
    manifest, members = dicom_members(body)
    assert len(members) == 1, manifest
    path = tmp_path_factory.mktemp("seg") / "seg.dcm"
    path.write_bytes(next(iter(members.values())))
    return path


def test_seg_passes_dciodvfy(seg):
    errors, warnings = dciodvfy(seg)
    print("dciodvfy SEG warnings:", *warnings, sep="\n  ")
    assert not any("Person Name" in w for w in warnings), warnings
    assert not errors, "\n".join(errors)


def test_seg_pixels_frame_and_creator(seg, study, drawn):
    _, _, src = study
    ds = pydicom.dcmread(seg)
    assert ds.SOPClassUID == SEG_STORAGE and ds.SegmentationType == "BINARY"
    assert ds.ContentCreatorName.family_name == READER
    assert ds.SegmentSequence[0].SegmentLabel == "LV cavity"
    assert int(ds.NumberOfFrames) == 1
    assert np.array_equal(ds.pixel_array.reshape(ds.Rows, ds.Columns), drawn["mask"])
    frame = ds.PerFrameFunctionalGroupsSequence[0]
    source = frame.DerivationImageSequence[0].SourceImageSequence[0]
    assert source.ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert int(source.ReferencedFrameNumber) == MASK_FRAME


def test_seg_reads_with_highdicom(seg, study, drawn):
    hd = pytest.importorskip("highdicom")
    _, _, src = study
    s = hd.seg.segread(seg)
    pixels = s.get_pixels_by_source_frame(
        source_sop_instance_uid=src.SOPInstanceUID, source_frame_numbers=[MASK_FRAME],
        segment_numbers=[1])
    assert np.array_equal(pixels[0, :, :, 0], drawn["mask"])


def test_masks_as_npy_and_png(session, study, drawn):
    from PIL import Image

    _, _, src = study
    _, body = export(session, "masks")
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        names = z.namelist()
        [npy] = [n for n in names if n.endswith("mask.npy")]
        arr = np.load(io.BytesIO(z.read(npy)))
        assert arr.dtype == np.uint8
        assert arr.shape == (int(src.NumberOfFrames), src.Rows, src.Columns)
        assert np.array_equal(arr[MASK_FRAME - 1], drawn["mask"])
        assert not np.delete(arr, MASK_FRAME - 1, axis=0).any()
        [png] = [n for n in names if n.endswith(".png")]
        assert png.endswith(f"frame-{MASK_FRAME:04d}.png")
        img = np.array(Image.open(io.BytesIO(z.read(png))))
        assert img.shape == drawn["mask"].shape
        assert np.array_equal(img > 0, drawn["mask"] > 0)
        manifest = json.loads(z.read("manifest.json"))
        entry = next(f for f in manifest["files"] if f["file"] == npy)
        assert entry["author"] == READER and entry["frames"] == [MASK_FRAME]


def test_multipart_related_for_stow(session, drawn):
    import email.parser
    import email.policy

    headers, body = export(session, "sr", accept='multipart/related; type="application/dicom"')
    raw = b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + body
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    parts = list(msg.iter_parts())
    assert len(parts) == 1 and parts[0].get_content_type() == "application/dicom"
    ds = pydicom.dcmread(io.BytesIO(parts[0].get_payload(decode=True)))
    assert ds.Modality == "SR"


def test_cli_export_matches_the_api(session, bedside, sr, tmp_path):
    out = tmp_path / "sr.zip"
    run = subprocess.run(
        [str(bedside), "-q", "annotate", "export", "--data", str(session["data"]),
         "--project", "exports", "--format", "sr", "--out", str(out)],
        capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    _, from_cli = dicom_members(out.read_bytes())
    _, from_api = dicom_members(sr[1])
    assert from_cli == from_api  # same content, same UIDs
    run = subprocess.run(
        [str(bedside), "-q", "annotate", "export", "--data", str(session["data"]),
         "--project", "nope", "--format", "sr", "--out", str(tmp_path / "x.zip")],
        capture_output=True, text=True)
    assert run.returncode != 0 and "nope" in run.stderr
