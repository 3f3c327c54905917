"""DICOM SEG of sources in a frame of reference (CT, MR): pydicom's public CT and MR test images
(and two more CT slices made from the first, 5 mm apart) are served by `bedside annotate`,
masks are drawn through the API, and the SEG export is read back with independent tools:
dciodvfy finds no errors; pydicom finds the source's Frame of Reference, orientation, pixel
spacing and, per frame, the source slice's position; highdicom reads the pixels back by source
instance."""

import base64
import copy
import io
import json
import zipfile

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from conftest import AnnotateClient, annotate_server
from test_annotate_exports import dciodvfy

READER = "dr.bob"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    d = tmp_path_factory.mktemp("for_sources")
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    slices = []
    for k in range(3):
        s = copy.deepcopy(ct)
        if k:
            s.SOPInstanceUID = generate_uid()
            s.file_meta.MediaStorageSOPInstanceUID = s.SOPInstanceUID
            s.InstanceNumber = int(ct.InstanceNumber) + k
            s.ImagePositionPatient = [float(v) for v in ct.ImagePositionPatient[:2]] + [
                float(ct.ImagePositionPatient[2]) - 5.0 * k]
        s.save_as(d / f"ct{k}.dcm", enforce_file_format=True)
        slices.append(s)
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    mr.save_as(d / "mr.dcm", enforce_file_format=True)
    return d, slices, mr


@pytest.fixture(scope="module")
def exported(tmp_path_factory, bedside, sources):
    folder, slices, mr = sources
    data = tmp_path_factory.mktemp("for_data")
    users = {"admin": ("admin-password", True), READER: (f"{READER}-password", False)}
    with annotate_server(bedside, folder, data, users) as root:
        admin = AnnotateClient(root, "admin", "admin-password")
        reader = AnnotateClient(root, READER, f"{READER}-password")
        pid = admin.json("POST", "/api/projects", {"name": "geometry", "schema": {
            "masks": [{"name": "liver"}]}})["id"]
        rng = np.random.default_rng(3)
        drawn = {}
        for ds in [slices[0], slices[2], mr]:
            study = ds.StudyInstanceUID
            if admin.call("POST", f"/api/projects/{pid}/studies",
                          {"study_instance_uid": study})[0] not in (200, 201, 204):
                raise AssertionError("study not added")
            admin.json("PUT", f"/api/projects/{pid}/members/{READER}", {"role": "annotator"})
            admin.json("PUT", f"/api/projects/{pid}/studies/{study}/assignees/{READER}")
            mask = (rng.random((ds.Rows, ds.Columns)) < 0.3).astype(np.uint8)
            reader.json("POST", f"/api/projects/{pid}/studies/{study}/annotations", {
                "series_instance_uid": ds.SeriesInstanceUID,
                "sop_instance_uid": ds.SOPInstanceUID, "frame": 1, "kind": "mask",
                "name": "liver", "payload": {"rows": int(ds.Rows), "columns": int(ds.Columns),
                                             "data": base64.b64encode(mask.tobytes()).decode()}})
            drawn[ds.SOPInstanceUID] = (ds, mask)
        status, headers, body = admin.call("GET", f"/api/projects/{pid}/export?format=seg")
        assert status == 200, body[:300]
        assert headers.get("Warning") is None, headers.get("Warning")
    out = {}
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        manifest = json.loads(z.read("manifest.json"))
        for f in manifest["files"]:
            path = data / f"{f['source_sop_instance_uid']}.seg.dcm"
            path.write_bytes(z.read(f["file"]))
            out[f["source_sop_instance_uid"]] = path
    assert set(out) == set(drawn)
    return out, drawn


def test_segs_pass_dciodvfy(exported):
    segs, _ = exported
    for sop, path in segs.items():
        errors, warnings = dciodvfy(path)
        print(f"dciodvfy SEG of {sop} warnings:", *warnings, sep="\n  ")
        assert not errors, "\n".join(errors)


def test_segs_carry_the_source_geometry(exported):
    segs, drawn = exported
    for sop, path in segs.items():
        src, mask = drawn[sop]
        seg = pydicom.dcmread(path)
        assert seg.FrameOfReferenceUID == src.FrameOfReferenceUID
        shared = seg.SharedFunctionalGroupsSequence[0]
        assert np.allclose([float(v) for v in
                            shared.PlaneOrientationSequence[0].ImageOrientationPatient],
                           [float(v) for v in src.ImageOrientationPatient])
        assert np.allclose([float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing],
                           [float(v) for v in src.PixelSpacing])
        frame = seg.PerFrameFunctionalGroupsSequence[0]
        assert np.allclose([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient],
                           [float(v) for v in src.ImagePositionPatient], atol=1e-4)
        ref = frame.DerivationImageSequence[0].SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == sop
        assert np.array_equal(seg.pixel_array.reshape(src.Rows, src.Columns), mask)


def test_segs_read_with_highdicom(exported):
    hd = pytest.importorskip("highdicom")
    segs, drawn = exported
    for sop, path in segs.items():
        _, mask = drawn[sop]
        s = hd.seg.segread(path)
        pixels = s.get_pixels_by_source_instance(source_sop_instance_uids=[sop],
                                                 segment_numbers=[1])
        assert np.array_equal(pixels[0, :, :, 0], mask)
