"""Two `bedside annotate serve` processes sharing one PostgreSQL database and one data folder,
as behind a load balancer, set up with the commands a user would run (`import`, `user add`,
`serve`, `export`, all with --database or BEDSIDE_DATABASE_URL). Checked from outside: what one
server stores or records, the other serves byte for byte (DICOMweb through pydicom); killing
one server loses nothing the other then serves; a database that cannot be reached is reported
without its password. PostgreSQL is a throwaway local server (scripts/postgres.sh) whose URL
comes in BEDSIDE_TEST_POSTGRES."""

import io
import json
import os
import signal
import subprocess
import urllib.request

import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import AnnotateClient, annotate_server, require_tool

ROOT_PW = "root-password-1"
ANN_PW = "ann-password-1"


def postgres_base():
    url = os.environ.get("BEDSIDE_TEST_POSTGRES")
    if not url:
        if os.environ.get("BEDSIDE_REQUIRE_PEERS") == "1":
            pytest.fail("BEDSIDE_TEST_POSTGRES is not set (scripts/postgres.sh start DIR prints it)")
        pytest.skip("BEDSIDE_TEST_POSTGRES is not set")
    return url


def fresh_database(name):
    base = postgres_base()
    psql = require_tool("psql")
    subprocess.run([psql, base, "-q", "-c", f"CREATE DATABASE {name}"], check=True,
                   capture_output=True)
    return base.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="module")
def servers(tmp_path_factory, bedside):
    tmp = tmp_path_factory.mktemp("annotate_pg")
    url = fresh_database(f"bedside_py_{os.getpid()}")
    cohort = tmp / "cohort"
    subprocess.run(
        [str(bedside), "-q", "synth", "phantom", str(cohort), "--patients", "2", "--seed", "8",
         "--rows", "64", "--columns", "96", "--frames", "4:4", "--no-masks"],
        check=True)
    data = tmp / "data"
    users = {"root": (ROOT_PW, True), "ann": (ANN_PW, False)}
    with annotate_server(bedside, cohort / "dicom", data, users, database=url) as a:
        with annotate_server(bedside, cohort / "dicom", data, users, database=url,
                             prepare=False) as b:
            files = [pydicom.dcmread(p) for p in sorted((cohort / "dicom").rglob("*.dcm"))]
            yield a, b, files, data, url


def studies_of(client):
    status, _, body = client.call("GET", "/dicomweb/studies", accept="application/dicom+json")
    assert status == 200, body[:300]
    return {s["0020000D"]["Value"][0] for s in json.loads(body)}


def test_the_database_is_postgresql_not_the_folder(servers):
    _, _, _, data, _ = servers
    assert not (data / "annotate.sqlite").exists()
    assert any((data / "objects").rglob("*")), "the files stay in the data folder"


def test_what_one_server_records_the_other_serves(servers, bedside, tmp_path):
    a, b, files, data, url = servers
    ra = AnnotateClient(a, "root", ROOT_PW)
    rb = AnnotateClient(b, "root", ROOT_PW)
    assert studies_of(rb) == {ds.StudyInstanceUID for ds in files}
    project = ra.json("POST", "/api/projects", {"name": "shared", "schema": {
        "labels": [{"name": "quality", "choice": "single", "scope": "study",
                    "options": ["good", "poor"]}],
        "measurements": [{"name": "LVIDd", "kind": "length"}]}})
    pid = project["id"]
    study = files[0].StudyInstanceUID
    rb.json("POST", f"/api/projects/{pid}/studies", {"study_instance_uid": study})
    ra.json("PUT", f"/api/projects/{pid}/members/ann", {"role": "annotator"})
    rb.json("PUT", f"/api/projects/{pid}/studies/{study}/assignees/ann")
    # The annotator signs in on B, draws on A; each server shows the other's writes.
    ann_a, ann_b = AnnotateClient(a, "ann", ANN_PW), AnnotateClient(b, "ann", ANN_PW)
    ds = files[0]
    created = ann_a.json("POST", f"/api/projects/{pid}/studies/{study}/annotations", {
        "series_instance_uid": ds.SeriesInstanceUID, "sop_instance_uid": ds.SOPInstanceUID,
        "frame": 2, "kind": "length", "name": "LVIDd",
        "payload": {"points": [[10, 10], [10, 40]]}})["annotation"]
    label = ann_b.json("POST", f"/api/projects/{pid}/studies/{study}/annotations", {
        "kind": "label", "name": "quality", "payload": {"values": ["good"]}})["annotation"]
    on_b = ann_b.json("GET", f"/api/projects/{pid}/studies/{study}/annotations")
    on_a = ann_a.json("GET", f"/api/projects/{pid}/studies/{study}/annotations")
    assert on_a == on_b
    ids = [x["id"] for x in on_b["annotations"]]
    assert ids == [created["id"], label["id"]]
    # A stale version sent to the other server is refused with the current state.
    updated = ann_b.json("PUT", f"/api/projects/{pid}/studies/{study}/annotations/{label['id']}",
                         {"version": 1, "payload": {"values": ["poor"]}})["annotation"]
    assert updated["version"] == 2
    status, _, body = ann_a.call(
        "PUT", f"/api/projects/{pid}/studies/{study}/annotations/{label['id']}",
        {"version": 1, "payload": {"values": ["good"]}})
    assert status == 409, body[:300]
    assert json.loads(body)["current"]["payload"] == {"values": ["poor"]}

    # STOW-RS to B under new UIDs; A serves the same bytes and pixels.
    copy = pydicom.dcmread(files[1].filename)
    copy.StudyInstanceUID, copy.SeriesInstanceUID = generate_uid(), generate_uid()
    copy.SOPInstanceUID = generate_uid()
    copy.file_meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
    buf = io.BytesIO()
    copy.save_as(buf, enforce_file_format=True)
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + buf.getvalue()
            + f"\r\n--{boundary}--\r\n".encode())
    req = urllib.request.Request(
        b + "/dicomweb/studies", method="POST", data=body,
        headers={**rb.headers, "Content-Type":
                 f"multipart/related; type=application/dicom; boundary={boundary}",
                 "Accept": "application/dicom+json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200
    assert copy.StudyInstanceUID in studies_of(ra)
    status, _, served = ra.call(
        "GET", f"/dicomweb/studies/{copy.StudyInstanceUID}/series/{copy.SeriesInstanceUID}"
               f"/instances/{copy.SOPInstanceUID}", accept="application/dicom")
    assert status == 200
    back = pydicom.dcmread(io.BytesIO(served.split(b"\r\n\r\n", 1)[1]) if served[:2] == b"--"
                           else io.BytesIO(served))
    assert back.SOPInstanceUID == copy.SOPInstanceUID
    assert (back.pixel_array == copy.pixel_array).all()

    # The export command reads the same database.
    out = tmp_path / "shared.json"
    run = subprocess.run(
        [str(bedside), "annotate", "export", "--data", str(data), "--database", url,
         "--project", "shared", "--format", "json", "--out", str(out)],
        capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    exported = json.loads(out.read_text())
    text = json.dumps(exported)
    assert created["id"] in text and label["id"] in text
    run = subprocess.run(
        [str(bedside), "annotate", "user", "list", "--data", str(data)],
        capture_output=True, text=True, env={**os.environ, "BEDSIDE_DATABASE_URL": url})
    assert run.returncode == 0, run.stderr
    assert "shared:annotator" in run.stdout


def test_killing_one_server_loses_nothing_the_other_serves(servers):
    a, b, files, _, _ = servers
    ra = AnnotateClient(a, "root", ROOT_PW)
    pid = ra.json("POST", "/api/projects", {"name": "kill", "schema": {
        "labels": [{"name": "quality", "choice": "single", "scope": "study",
                    "options": ["good", "poor"]}]}})["id"]
    study = files[-1].StudyInstanceUID
    ra.json("POST", f"/api/projects/{pid}/studies", {"study_instance_uid": study})
    acked = []
    for i in range(40):
        acked.append(ra.json("POST", f"/api/projects/{pid}/studies/{study}/annotations", {
            "id": f"k{i}", "kind": "label", "name": "quality",
            "payload": {"values": ["good" if i % 2 else "poor"]}})["annotation"]["id"])
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(timeout=10)
    rb = AnnotateClient(b, "root", ROOT_PW)
    got = rb.json("GET", f"/api/projects/{pid}/studies/{study}/annotations")
    assert [x["id"] for x in got["annotations"]] == acked
    assert got["seq"] == 40


def test_tls_to_the_database_is_verified(servers, bedside, tmp_path):
    _, _, _, data, url = servers
    ca = os.environ.get("BEDSIDE_TEST_POSTGRES_CA")
    assert ca, "BEDSIDE_TEST_POSTGRES_CA is printed by scripts/postgres.sh beside the URL"
    run = subprocess.run(
        [str(bedside), "annotate", "user", "list", "--data", str(data),
         "--database", url + "?sslmode=require", "--database-ca", ca],
        capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "root" in run.stdout
    # A server whose certificate does not come from the trusted authorities is refused.
    run = subprocess.run(
        [str(bedside), "annotate", "user", "list", "--data", str(tmp_path / "d"),
         "--database", url + "?sslmode=require"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "BEDSIDE_DATABASE_CA": "/etc/ssl/certs/ca-certificates.crt"})
    assert run.returncode != 0 and "certificate" in run.stderr, run.stderr


def test_an_unreachable_database_is_reported_without_its_password(bedside, tmp_path):
    secret = "s3cret-pw-xyz"
    run = subprocess.run(
        [str(bedside), "annotate", "user", "list", "--data", str(tmp_path / "d"),
         "--database", f"postgres://someone:{secret}@127.0.0.1:1/nowhere"],
        capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "127.0.0.1:1/nowhere" in run.stderr, run.stderr
    assert secret not in run.stderr + run.stdout
    run = subprocess.run(
        [str(bedside), "annotate", "user", "list", "--data", str(tmp_path / "d"),
         "--database", "postgres://[not a url"],
        capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "PostgreSQL" in run.stderr, run.stderr
