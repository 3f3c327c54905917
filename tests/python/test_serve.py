"""`bedside serve` with real peers: DCMTK `storescu` sends phantom studies in by C-STORE, the
service answers each with a Comprehensive SR that it sends to a local Orthanc (the destination
PACS, started here with a temporary configuration); the SR is fetched back from Orthanc's REST
API, read with pydicom and validated with dicom3tools' `dciodvfy`. dicomweb-client then stores
the same studies by STOW-RS into a second service, which must give the same results.

A tiny evidential bundle is trained for one epoch on synthetic arrays (a few seconds): the
predictions are meaningless, the plumbing is what is tested."""

import io
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pydicom
import pytest

from conftest import free_port, require_tool

US_MF = "1.2.840.10008.5.1.4.1.1.3.1"


def get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, json.loads(r.read() or b"null")


def wait_http(url, proc, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process exited early ({proc.returncode}): {err[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{url} did not come up")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, bedside):
    d = tmp_path_factory.mktemp("serve_bundle")
    rng = np.random.default_rng(4)
    rows = ["study_id,array,split,label"]
    for i in range(8):
        np.save(d / f"v{i}.npy", rng.integers(0, 255, size=(10, 20, 24), dtype=np.uint8))
        rows.append(f"S{i},v{i}.npy,{'val' if i % 4 == 0 else 'train'},{i % 2}")
    (d / "manifest.csv").write_text("\n".join(rows) + "\n")
    (d / "experiment.toml").write_text(
        'name = "tiny-evidential"\nseed = 3\n'
        '[data]\nmanifest = "manifest.csv"\nclip_length = 4\nperiod = 2\nsize = 16\nworkers = 1\n'
        '[data.columns]\nclass = "label"\n'
        '[model]\nwidth = 0.0625\nlayers = [1, 1, 1, 1]\n'
        '[task]\nkind = "evidential"\nclasses = 2\n'
        '[training]\nepochs = 1\nbatch_size = 4\n'
    )
    subprocess.run([str(bedside), "-q", "train", "-c", str(d / "experiment.toml"), "-r", str(d / "run")],
                   check=True)
    subprocess.run([str(bedside), "-q", "export", "-r", str(d / "run"), "-o", str(d / "bundle")], check=True)
    return d / "bundle"


@pytest.fixture(scope="module")
def studies(tmp_path_factory, bedside):
    out = tmp_path_factory.mktemp("serve_phantom") / "cohort"
    subprocess.run(
        [str(bedside), "-q", "synth", "phantom", str(out), "--patients", "4", "--sites", "2", "--seed", "11",
         "--rows", "96", "--columns", "128", "--frames", "12:16", "--no-masks"],
        check=True,
    )
    files = sorted(p for p in (out / "dicom").rglob("*") if p.is_file())
    files = [f for f in files if pydicom.dcmread(f, stop_before_pixels=True).SOPClassUID == US_MF]
    assert len(files) >= 4
    return files


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    exe = require_tool("Orthanc")
    d = tmp_path_factory.mktemp("orthanc")
    http, dicom, serve_port = free_port(), free_port(), free_port()
    config = {
        "Name": "bedside-test-pacs",
        "StorageDirectory": str(d / "db"),
        "IndexDirectory": str(d / "db"),
        "HttpPort": http,
        "DicomPort": dicom,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": True,
        "DicomModalities": {"bedside": ["BEDSIDE", "127.0.0.1", serve_port]},
        "DicomAlwaysAllowStore": False,
        "Plugins": [],
    }
    (d / "orthanc.json").write_text(json.dumps(config))
    proc = subprocess.Popen([exe, str(d / "orthanc.json")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    root = f"http://127.0.0.1:{http}"
    wait_http(root + "/system", proc)
    yield {"root": root, "dicom": dicom, "serve_port": serve_port}
    proc.terminate()
    proc.wait(timeout=20)


def fetch_from_orthanc(root, sop_instance_uid, folder):
    """Finds exactly one instance with this SOP Instance UID in Orthanc and saves its file."""
    req = urllib.request.Request(
        root + "/tools/find", method="POST",
        data=json.dumps({"Level": "Instance", "Query": {"SOPInstanceUID": sop_instance_uid}}).encode())
    with urllib.request.urlopen(req, timeout=10) as resp:
        found = json.loads(resp.read())
    assert len(found) == 1, f"{sop_instance_uid} not in Orthanc"
    path = folder / f"{sop_instance_uid}.dcm"
    with urllib.request.urlopen(f"{root}/instances/{found[0]}/file", timeout=10) as resp:
        path.write_bytes(resp.read())
    return path


def start_service(bedside, bundle, tmp, dicom_port, destination=None, explain=False):
    http = free_port()
    text = (
        f'ae_title = "BEDSIDE"\nallowed_calling_aes = ["STORESCU"]\ndata_dir = "{tmp / "data"}"\n'
        f'[listen]\ndicom = "127.0.0.1:{dicom_port}"\nhttp = "127.0.0.1:{http}"\n'
        '[worker]\npoll_ms = 50\n'
        '[[route]]\nbundle = "tiny-evidential"\nmodality = ["US"]\n'
        f'sop_class = ["{US_MF}"]\n'
        '[route.qc]\nmin_fps = 5.0\nmax_fps = 200.0\nmin_size = 32\nrequire_calibration = true\n'
    )
    if explain:
        text += '[route.explain]\nmethod = "gradcam"\nlayer = "layer4"\n'
    if destination:
        text += f'[destination]\nhost = "127.0.0.1"\nport = {destination}\nae_title = "ORTHANC"\n'
    (tmp / "serve.toml").write_text(text)
    proc = subprocess.Popen(
        [str(bedside), "-v", "serve", "--bundle", str(bundle), "--config", str(tmp / "serve.toml")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    root = f"http://127.0.0.1:{http}"
    wait_http(root + "/healthz", proc)
    return proc, root


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def results(root, uids, need_sent=False, seconds=120):
    out = {}
    deadline = time.time() + seconds
    while len(out) < len(uids):
        assert time.time() < deadline, f"results missing for {set(uids) - set(out)}"
        for uid in uids:
            if uid in out:
                continue
            try:
                status, body = get_json(f"{root}/api/v1/instances/{uid}/result")
            except urllib.error.HTTPError:
                continue
            if status == 200 and (not need_sent or get_json(f"{root}/api/v1/instances/{uid}")[1]["sent"]):
                out[uid] = body
        time.sleep(0.2)
    return out


def dciodvfy_errors(path):
    run = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]



def store(storescu, aet, port, files):
    """C-STORE with DCMTK, one storescu per transfer syntax: storescu has no JPEG codec, so JPEG
    files must go over a context that proposes JPEG Baseline (-xy), the others over the default
    uncompressed ones. Returns the first failed run, else the last."""
    jpeg = [f for f in files if pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID
            == "1.2.840.10008.1.2.4.50"]
    plain = [f for f in files if f not in jpeg]
    last = None
    for group, extra in ((jpeg, ["-xy"]), (plain, [])):
        if not group:
            continue
        last = subprocess.run([storescu, *extra, "-aet", aet, "-aec", "BEDSIDE", "127.0.0.1", str(port),
                               *map(str, group)], capture_output=True, text=True)
        if last.returncode != 0:
            return last
    return last

def test_cstore_to_sr_in_orthanc_and_stow_gives_the_same(bedside, bundle, studies, orthanc, tmp_path):
    storescu = require_tool("storescu")
    require_tool("dciodvfy")
    a = tmp_path / "a"
    a.mkdir()
    proc, root = start_service(bedside, bundle, a, orthanc["serve_port"], destination=orthanc["dicom"],
                               explain=True)
    try:
        # A C-ECHO, then the studies by C-STORE from DCMTK.
        echo = subprocess.run([require_tool("echoscu"), "-aet", "STORESCU", "-aec", "BEDSIDE", "127.0.0.1",
                               str(orthanc["serve_port"])], capture_output=True, text=True)
        assert echo.returncode == 0, echo.stderr
        sent = store(storescu, "STORESCU", orthanc["serve_port"], studies)
        assert sent.returncode == 0, sent.stderr
        # A calling AE title not on the list is refused.
        stranger = store(storescu, "STRANGER", orthanc["serve_port"], studies[:1])
        assert stranger.returncode != 0
        uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in studies]
        by_cstore = results(root, uids, need_sent=True)
        explained = 0
        for uid, r in by_cstore.items():
            assert r["status"] in ("result", "indeterminate"), r
            assert r["qc"] == [], r
            outputs = {o["name"]: o for o in r["prediction"]["outputs"]}
            assert abs(outputs["prob_0"]["mean"] + outputs["prob_1"]["mean"] - 1) < 1e-6
            assert 0 < outputs["uncertainty"]["mean"] <= 1
            # The SR is in Orthanc, retrievable, valid and about this instance.
            report = r["report_sop_instance_uid"]
            path = fetch_from_orthanc(orthanc["root"], report, tmp_path)
            assert dciodvfy_errors(path) == [], path
            sr = pydicom.dcmread(path)
            assert sr.Modality == "SR" and sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"
            ref = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
            assert ref.ReferencedSOPInstanceUID == uid
            names = [item.ConceptNameCodeSequence[0].CodeMeaning for item in sr.ContentSequence]
            assert "Algorithm Name" in names and "Input quality control" in names
            nums = [item for item in sr.ContentSequence if item.ValueType == "NUM"]
            prob1 = [n for n in nums if n.ConceptNameCodeSequence[0].CodeMeaning == "Probability of class 1"][0]
            assert abs(float(prob1.MeasuredValueSequence[0].FloatingPointValue) - outputs["prob_1"]["mean"]) < 1e-12
            assert prob1.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodingSchemeDesignator == "UCUM"
            # With [route.explain], each result also brings a Grad-CAM secondary capture to Orthanc.
            sc_uid = r["explanation_sop_instance_uid"]
            if r["status"] != "result":
                assert sc_uid is None, r
                continue
            explained += 1
            path = fetch_from_orthanc(orthanc["root"], sc_uid, tmp_path)
            assert dciodvfy_errors(path) == [], path
            sc = pydicom.dcmread(path)
            src = pydicom.dcmread(next(f for f in studies
                                       if pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID == uid),
                                  stop_before_pixels=True)
            assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7.4"
            assert (sc.StudyInstanceUID, sc.PatientID) == (src.StudyInstanceUID, src.PatientID)
            assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == uid
            pixels = sc.pixel_array
            assert pixels.shape == (int(sc.NumberOfFrames), sc.Rows, sc.Columns, 3)
            assert (pixels[..., 0] != pixels[..., 2]).any(), "no colour drawn"
            with urllib.request.urlopen(f"{root}/api/v1/instances/{uid}/explanation", timeout=10) as resp:
                # Orthanc rewrites the file meta group on storage; the data set is the same.
                kept = pydicom.dcmread(io.BytesIO(resp.read()))
            assert (kept.SOPInstanceUID, kept.PixelData) == (sc.SOPInstanceUID, sc.PixelData)
        with urllib.request.urlopen(root + "/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
        assert f'bedside_serve_received_total{{source="dimse"}} {len(studies)}' in metrics
        assert 'bedside_serve_stage_seconds_count{stage="inference"}' in metrics
        # Re-sending is idempotent: still one result per instance.
        again = store(storescu, "STORESCU", orthanc["serve_port"], studies[:1])
        assert again.returncode == 0
        status, health = get_json(root + "/healthz")
        assert health["queue"].get("done", 0) + health["queue"].get("rejected", 0) == len(studies)
        assert explained > 0
        # Reports and explanation captures are kept in the store alike.
        assert health["queue"]["report"] == len(studies) + explained
        assert f'bedside_serve_explanations_total{{outcome="made"}} {explained}' in metrics
    finally:
        err = stop(proc)
    # No PHI in the logs: the phantom's patient names never appear.
    for f in studies:
        name = str(pydicom.dcmread(f, stop_before_pixels=True).PatientName)
        assert name and name not in err

    # The same studies by STOW-RS (dicomweb-client) into a fresh service: the same results.
    from dicomweb_client.api import DICOMwebClient
    b = tmp_path / "b"
    b.mkdir()
    proc, root = start_service(bedside, bundle, b, free_port())
    try:
        client = DICOMwebClient(url=root + "/dicomweb")
        client.store_instances([pydicom.dcmread(f) for f in studies])
        by_stow = results(root, uids)
        for uid in uids:
            x, y = by_cstore[uid], by_stow[uid]
            assert x["status"] == y["status"]
            assert x["report_sop_instance_uid"] == y["report_sop_instance_uid"]
            for ox, oy in zip(x["prediction"]["outputs"], y["prediction"]["outputs"]):
                assert ox["name"] == oy["name"]
                assert ox["mean"] == pytest.approx(oy["mean"], abs=1e-9)
                assert ox["std"] == pytest.approx(oy["std"], abs=1e-9)
        # The report is retrievable over DICOMweb as well.
        report = by_stow[uids[0]]["report_sop_instance_uid"]
        found = client.search_for_instances(search_filters={"SOPInstanceUID": report})
        assert len(found) == 1
    finally:
        stop(proc)


def test_kill_9_during_a_burst_loses_nothing_and_duplicates_nothing(bedside, bundle, studies, tmp_path):
    """kill -9 while a burst arrives; after a restart every acknowledged instance has exactly one
    result (acknowledged = storescu reported success for it)."""
    storescu = require_tool("storescu")
    burst = tmp_path / "burst"
    burst.mkdir()
    copies = int(os.environ.get("BEDSIDE_SERVE_BURST", "40"))
    for i in range(copies):
        ds = pydicom.dcmread(studies[i % len(studies)])
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(burst / f"{i:04d}.dcm")
    files = sorted(burst.iterdir())
    port = free_port()
    svc = tmp_path / "svc"
    svc.mkdir()
    proc, root = start_service(bedside, bundle, svc, port)
    sender = subprocess.Popen([storescu, "-v", "-aet", "STORESCU", "-aec", "BEDSIDE", "127.0.0.1", str(port),
                               *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Kill once about a third has arrived.
    deadline = time.time() + 60
    while time.time() < deadline:
        _, health = get_json(root + "/healthz")
        if sum(health["queue"].values()) >= copies // 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log, _ = sender.communicate(timeout=60)
    # storescu -v logs "Received Store Response (Success)" after each acknowledged instance,
    # in file order.
    acknowledged = log.count("Received Store Response (Success)")
    assert 0 < acknowledged < copies, log[-2000:]
    acked_uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files[:acknowledged]]
    proc, root = start_service(bedside, bundle, svc, port)
    try:
        got = results(root, acked_uids)
        assert all(r["status"] in ("result", "indeterminate") for r in got.values())
        _, health = get_json(root + "/healthz")
        # Exactly one report per processed instance: report UIDs are unique per source and the
        # queue holds each UID once.
        processed = health["queue"].get("done", 0) + health["queue"].get("rejected", 0)
        assert health["queue"]["report"] == processed
        assert processed >= acknowledged
    finally:
        stop(proc)


def test_the_gate_recorded_in_the_bundle_says_i_dont_know(bedside, bundle, studies, tmp_path):
    """`bedside export --refer-fraction` records thresholds chosen on the validation split;
    `--max-uncertainty` records a given one, which the service applies when serve.toml is silent."""
    run = bundle.parent / "run"
    chosen = tmp_path / "chosen"
    subprocess.run([str(bedside), "-q", "export", "-r", str(run), "-o", str(chosen), "--refer-fraction", "0.5"],
                   check=True)
    gate = json.loads((chosen / "bundle.json").read_text())["gate"]
    assert 0 < gate["max_uncertainty"] <= 1 and gate["max_clip_spread"] >= 0
    assert "validation split" in gate["chosen_by"]
    assert not (chosen / ".gate-validation.csv").exists()

    strict = tmp_path / "strict"
    subprocess.run([str(bedside), "-q", "export", "-r", str(run), "-o", str(strict), "--max-uncertainty", "0.0001"],
                   check=True)
    port = free_port()
    svc = tmp_path / "svc"
    svc.mkdir()
    proc, root = start_service(bedside, strict, svc, port)
    try:
        sent = store(require_tool("storescu"), "STORESCU", port, studies[:2])
        assert sent.returncode == 0, sent.stderr
        uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in studies[:2]]
        got = results(root, uids)
        for r in got.values():
            assert r["status"] == "indeterminate", r
            assert "(bundle threshold)" in r["gate"]["detail"], r
    finally:
        stop(proc)
