"""`bedside annotate serve` as a DICOMweb server, checked from outside with independent clients:
the binary imports a small phantom cohort and serves it on a free loopback port; pydicom reads
the metadata (`Dataset.from_json`) and decodes the source files for pixel comparisons, and
dicomweb-client (the library behind many DICOMweb tools) queries, retrieves and stores."""

import io
import json
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid

from conftest import AnnotateClient, annotate_server

OHIF_FRAME_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory, bedside):
    """Three patients, tiny cines, a mix of native and JPEG, monochrome and RGB."""
    out = tmp_path_factory.mktemp("annotate_phantom") / "cohort"
    subprocess.run(
        [str(bedside), "-q", "synth", "phantom", str(out), "--patients", "3", "--sites", "2",
         "--seed", "3", "--rows", "64", "--columns", "96", "--frames", "4:6", "--no-masks"],
        check=True,
    )
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory, bedside, small_cohort):
    data = tmp_path_factory.mktemp("annotate_data")
    # Every endpoint needs a session: a superuser sees every study and may store.
    users = {"tester": ("tester-password", True)}
    with annotate_server(bedside, small_cohort / "dicom", data, users) as root:
        AUTH.update(AnnotateClient(root, "tester", "tester-password").headers)
        yield root + "/dicomweb"


@pytest.fixture(scope="module")
def files(small_cohort):
    return {
        ds.SOPInstanceUID: ds
        for ds in (pydicom.dcmread(p) for p in sorted((small_cohort / "dicom").rglob("*.dcm")))
    }


# The session cookie and CSRF token of the signed-in test user, sent with every request.
AUTH = {}


def http(url, accept=None, method="GET", body=None, content_type=None):
    req = urllib.request.Request(url, method=method, data=body, headers=dict(AUTH))
    if accept:
        req.add_header("Accept", accept)
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def multipart_parts(headers, body):
    """Splits a multipart/related body with the standard library's email parser (independent of
    the server's own multipart code)."""
    import email.parser
    import email.policy

    raw = b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + body
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    assert msg.is_multipart()
    return [((part.get_content_type(), part.get_param("transfer-syntax")), part.get_payload(decode=True))
            for part in msg.iter_parts()]


def test_files_are_found(files):
    assert len(files) >= 3
    syntaxes = {ds.file_meta.TransferSyntaxUID for ds in files.values()}
    assert syntaxes >= {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50"}, syntaxes


def test_qido_study_list_as_ohif_asks(server, files):
    status, headers, body = http(
        server + "/studies?limit=101&offset=0&fuzzymatching=false"
        "&includefield=00081030,00080060,00080090,00100030",
        accept="application/dicom+json",
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/dicom+json")
    studies = [pydicom.Dataset.from_json(s) for s in json.loads(body)]
    assert {s.StudyInstanceUID for s in studies} == {ds.StudyInstanceUID for ds in files.values()}
    by_study = {}
    for ds in files.values():
        by_study.setdefault(ds.StudyInstanceUID, []).append(ds)
    for s in studies:
        source = by_study[s.StudyInstanceUID]
        assert s.PatientID == source[0].PatientID
        assert str(s.PatientName) == str(source[0].PatientName)
        assert s.StudyDate == source[0].StudyDate
        assert int(s.NumberOfStudyRelatedInstances) == len(source)
        assert "US" in s.ModalitiesInStudy
    # Matching on PatientID, as OHIF's patient filter does.
    pid = next(iter(files.values())).PatientID
    status, _, body = http(server + f"/studies?00100020={pid}")
    got = {pydicom.Dataset.from_json(s).StudyInstanceUID for s in json.loads(body)}
    assert got == {ds.StudyInstanceUID for ds in files.values() if ds.PatientID == pid}


def test_metadata_round_trips_through_pydicom(server, files):
    for ds in files.values():
        url = f"{server}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/metadata"
        status, headers, body = http(url, accept="application/dicom+json")
        assert status == 200
        [meta] = json.loads(body)
        assert "BulkDataURI" in meta["7FE00010"]
        served = pydicom.Dataset.from_json(meta, bulk_data_uri_handler=lambda *_: b"")
        for elem in ds:
            if elem.tag == 0x7FE00010 or elem.VR in ("OB", "OW", "UN", "OF", "OD", "OL", "OV"):
                continue
            assert elem.tag in served, f"{elem.tag} ({elem.keyword}) missing"
            if elem.VR == "SQ":
                assert len(served[elem.tag].value) == len(elem.value), elem.keyword
            elif elem.VR == "PN":
                assert str(served[elem.tag].value) == str(elem.value), elem.keyword
            else:
                assert served[elem.tag].value == elem.value, (elem.keyword, served[elem.tag].value, elem.value)


def frame_url(server, ds, frames):
    return (f"{server}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}/frames/{frames}")


def test_frames_as_stored_equal_the_source(server, files):
    for ds in files.values():
        n = int(ds.NumberOfFrames)
        ts = ds.file_meta.TransferSyntaxUID
        if ts.is_compressed:
            expected = list(generate_frames(ds.PixelData, number_of_frames=n))
        else:
            pixels = ds.pixel_array  # pydicom's own decoding of the native data
            expected = [pixels[i].tobytes() for i in range(n)]
        for i in range(n):
            status, headers, body = http(frame_url(server, ds, i + 1), accept=OHIF_FRAME_ACCEPT)
            assert status == 200
            [(part_type, payload)] = multipart_parts(headers, body)
            assert part_type == ("application/octet-stream", ts if ts.is_compressed else "1.2.840.10008.1.2.1")
            assert payload == expected[i], (ds.SOPInstanceUID, i)
        # A frame list gives one part per frame, in the order asked.
        status, headers, body = http(frame_url(server, ds, f"{n},1"), accept=OHIF_FRAME_ACCEPT)
        assert [p for _, p in multipart_parts(headers, body)] == [expected[n - 1], expected[0]]


def test_jpeg_frames_decoded_on_request_match_pydicom(server, files):
    jpeg = [ds for ds in files.values() if ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"]
    assert jpeg
    for ds in jpeg:
        status, headers, body = http(
            frame_url(server, ds, 1),
            accept='multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1',
        )
        assert status == 200
        [(part_type, payload)] = multipart_parts(headers, body)
        assert part_type == ("application/octet-stream", "1.2.840.10008.1.2.1")
        reference = ds.pixel_array[0]  # Pillow's libjpeg, converted to RGB for YBR
        ours = np.frombuffer(payload, dtype=np.uint8).reshape(reference.shape)
        # Two JPEG decoders may round the inverse DCT and colour conversion differently.
        assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 3


def test_rendered_is_an_image_of_the_frame(server, files):
    from PIL import Image

    for ds in files.values():
        base = frame_url(server, ds, 2)
        status, headers, body = http(base + "/rendered", accept="image/png")
        assert status == 200 and headers["Content-Type"] == "image/png"
        img = np.asarray(Image.open(io.BytesIO(body)))
        assert img.shape[:2] == (ds.Rows, ds.Columns)
        if not ds.file_meta.TransferSyntaxUID.is_compressed and ds.SamplesPerPixel == 1:
            # 8-bit data without a window is shown as stored.
            assert np.array_equal(img, ds.pixel_array[1])
        status, headers, body = http(base + "/rendered?window=40,80", accept="image/jpeg")
        assert status == 200 and body[:2] == b"\xff\xd8"


def test_malformed_requests_get_4xx(server, files):
    ds = next(iter(files.values()))
    for url, accept in [
        (server + "/studies?NoSuchAttribute=1", None),
        (server + "/studies?limit=abc", None),
        (server + "/studies/not-a-uid/series", None),
        (frame_url(server, ds, "0"), None),
        (frame_url(server, ds, "1,a"), None),
        (frame_url(server, ds, "1"), 'multipart/related; type="image/jp2"; transfer-syntax=1.2.840.10008.1.2.4.90'),
        (server + "/no/such/resource", None),
    ]:
        status, headers, _ = http(url, accept=accept)
        assert 400 <= status < 500, url
        assert headers["Warning"].startswith("299")
    status, _, _ = http(server + "/studies", method="POST", body=b"junk",
                        content_type='multipart/related; type="application/dicom"; boundary=x')
    assert status == 400


def test_dicomweb_client_search_retrieve_and_store(server, files, tmp_path):
    dicomweb_client = pytest.importorskip("dicomweb_client")
    import requests

    session = requests.Session()
    session.headers.update(AUTH)
    client = dicomweb_client.DICOMwebClient(url=server, session=session)
    studies = client.search_for_studies(fields=["StudyDescription"])
    assert {pydicom.Dataset.from_json(s).StudyInstanceUID for s in studies} == {
        ds.StudyInstanceUID for ds in files.values()}

    ds = next(d for d in files.values() if not d.file_meta.TransferSyntaxUID.is_compressed)
    series = client.search_for_series(ds.StudyInstanceUID)
    assert ds.SeriesInstanceUID in {pydicom.Dataset.from_json(s).SeriesInstanceUID for s in series}
    meta = client.retrieve_series_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    served = pydicom.Dataset.from_json(meta[0], bulk_data_uri_handler=lambda *_: b"")
    assert served.SOPInstanceUID == ds.SOPInstanceUID
    instance = client.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert np.array_equal(instance.pixel_array, ds.pixel_array)
    frames = client.retrieve_instance_frames(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, frame_numbers=[1, 2],
        media_types=(("application/octet-stream", "*"),),
    )
    assert frames == [ds.pixel_array[0].tobytes(), ds.pixel_array[1].tobytes()]

    # STOW-RS: a copy under new UIDs, then read back and compare pixels.
    copy = pydicom.dcmread(next(iter(files.values())).filename)
    copy.StudyInstanceUID = generate_uid()
    copy.SeriesInstanceUID = generate_uid()
    copy.SOPInstanceUID = generate_uid()
    copy.file_meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
    response = client.store_instances([copy])
    assert response.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == copy.SOPInstanceUID
    assert "FailedSOPSequence" not in response
    back = client.retrieve_instance(copy.StudyInstanceUID, copy.SeriesInstanceUID, copy.SOPInstanceUID)
    assert back.SOPInstanceUID == copy.SOPInstanceUID
    assert np.array_equal(back.pixel_array, copy.pixel_array)
    found = client.search_for_instances(copy.StudyInstanceUID)
    assert [pydicom.Dataset.from_json(i).SOPInstanceUID for i in found] == [copy.SOPInstanceUID]

    # The same UID with different content is refused with a FailedSOPSequence and 409.
    copy.PatientComments = "changed"
    buf = io.BytesIO()
    copy.save_as(buf, enforce_file_format=True)
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + buf.getvalue()
            + f"\r\n--{boundary}--\r\n".encode())
    status, _, payload = http(server + "/studies", method="POST", body=body,
                              content_type=f"multipart/related; type=application/dicom; boundary={boundary}")
    assert status == 409
    failed = pydicom.Dataset.from_json(json.loads(payload)).FailedSOPSequence
    assert failed[0].ReferencedSOPInstanceUID == copy.SOPInstanceUID
