"""The browser interface of `bedside annotate serve`, end to end in headless Chromium.

The binary imports phantom cines and serves them on a free loopback port; Playwright drives
Debian's chromium through the real screens as two users at once (web/annotate/e2e), and the
results are checked here against the API and against the files themselves (pydicom: the frame
rate and the ultrasound region calibration that a measurement must be converted with).

A second test points the prebuilt OHIF viewer (npm `@ohif/app`) at the same server's DICOMweb.
"""

import hashlib
import json
import math
import os
import pathlib
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request

import pydicom
import pytest

from conftest import AnnotateClient, annotate_server

ROOT = pathlib.Path(__file__).resolve().parents[2]
WEB = ROOT / "web" / "annotate"
DIST = ROOT / "crates" / "bedside-annotate" / "web-dist"
OHIF_VERSION = "3.13.2"
SCHEMA = {
    "labels": [
        {"name": "view", "choice": "single", "scope": "series", "options": ["A4C", "A2C", "PLAX"]},
        {"name": "quality", "choice": "single", "scope": "study", "options": ["good", "poor"]},
    ],
    "measurements": [
        {"name": "LVIDd", "kind": "length"},
        {"name": "LV area", "kind": "polygon"},
        {"name": "LA", "kind": "ellipse"},
        {"name": "RA", "kind": "area"},
    ],
    "masks": [{"name": "LV cavity"}],
}


def require(name, path=None):
    found = path if path and os.path.exists(path) else shutil.which(name)
    if not found:
        if os.environ.get("BEDSIDE_REQUIRE_PEERS") == "1":
            pytest.fail(f"{name} is required (BEDSIDE_REQUIRE_PEERS=1) but not installed")
        pytest.skip(f"{name} not installed")
    return found


def source_hash():
    """Same as scripts/build-web.sh --hash: sha256sum lines of the sources sorted by path."""
    files = ["package.json", "package-lock.json", "index.html", "vite.config.ts", "tsconfig.json"]
    files += [p.relative_to(WEB).as_posix() for p in (WEB / "src").rglob("*") if p.is_file()]
    lines = "".join(
        f"{hashlib.sha256((WEB / f).read_bytes()).hexdigest()}  {f}\n" for f in sorted(files)
    )
    return hashlib.sha256(lines.encode()).hexdigest()


def test_committed_bundle_is_built_from_the_current_sources():
    recorded = (DIST / "SOURCE-HASH").read_text().strip()
    assert recorded == source_hash(), "web/annotate changed: run scripts/build-web.sh and commit web-dist"
    assert (DIST / "index.html").exists()
    size = sum(p.stat().st_size for p in DIST.rglob("*") if p.is_file())
    assert size < 8 << 20, f"the committed bundle grew to {size} bytes"


@pytest.fixture(scope="module")
def site(tmp_path_factory, bedside):
    """The server with two phantom studies in one project: alice (superuser, admin) and bob
    (annotator, both studies assigned)."""
    tmp = tmp_path_factory.mktemp("annotate_web")
    cohort = tmp / "cohort"
    subprocess.run(
        [str(bedside), "-q", "synth", "phantom", str(cohort), "--patients", "2", "--sites", "1",
         "--seed", "11", "--rows", "240", "--columns", "320", "--frames", "24:32", "--no-masks"],
        check=True,
    )
    data = tmp / "data"
    users = {"alice": ("alice-password-1", True), "bob": ("bob-password-1", False)}
    with annotate_server(bedside, cohort / "dicom", data, users) as root:
        files = {}
        for p in sorted((cohort / "dicom").rglob("*.dcm")):
            ds = pydicom.dcmread(p)
            files.setdefault(ds.StudyInstanceUID, []).append(ds)
        alice = AnnotateClient(root, "alice", users["alice"][0])
        project = alice.json("POST", "/api/projects", {"name": "Echo views", "schema": SCHEMA})
        pid = project["id"]
        alice.json("PUT", f"/api/projects/{pid}/members/bob", {"role": "annotator"})
        for study in files:
            alice.json("POST", f"/api/projects/{pid}/studies", {"study_instance_uid": study})
            alice.json("PUT", f"/api/projects/{pid}/studies/{study}/assignees/bob")
        yield {"root": root, "pid": pid, "files": files, "users": users, "alice": alice, "tmp": tmp}


def test_static_files_and_fallback(site):
    root = site["root"]

    def get(path, headers=None):
        req = urllib.request.Request(root + path, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    status, headers, body = get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert body == (DIST / "index.html").read_bytes()
    # Client-side routes get the application; API and DICOMweb paths keep their own 404/401.
    assert get("/some/route")[2] == body
    assert get("/api/no-such-thing")[0] == 404
    assert get("/dicomweb/studies")[0] == 401
    assert get("/assets/no-such-file.js")[0] == 404
    for p in DIST.rglob("*"):
        if p.suffix in (".js", ".wasm", ".css"):
            rel = p.relative_to(DIST).as_posix()
            status, headers, served = get("/" + rel)
            assert status == 200 and served == p.read_bytes(), rel
            want = {".js": "text/javascript", ".wasm": "application/wasm", ".css": "text/css"}[p.suffix]
            assert headers["Content-Type"].startswith(want), rel
    # Compressed when the client accepts it, the same bytes once decompressed.
    import gzip

    big = max((p for p in DIST.rglob("*.js")), key=lambda p: p.stat().st_size)
    status, headers, served = get("/" + big.relative_to(DIST).as_posix(), {"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(served) == big.read_bytes()


def node_modules():
    """web/annotate's dependencies (playwright-core among them), installed from the lockfile."""
    npm = require("npm")
    if not (WEB / "node_modules" / "playwright-core").exists():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True,
                       stdout=subprocess.DEVNULL)


def region_for(ds, points):
    for r in getattr(ds, "SequenceOfUltrasoundRegions", []):
        if all(r.RegionLocationMinX0 <= x <= r.RegionLocationMaxX1 and
               r.RegionLocationMinY0 <= y <= r.RegionLocationMaxY1 for x, y in points):
            return r
    return None


def test_browser_end_to_end(site, tmp_path):
    node = require("node")
    chromium = require("chromium", "/usr/bin/chromium")
    node_modules()
    study, instances = next(iter(site["files"].items()))
    ds = max(instances, key=lambda d: int(d.NumberOfFrames))
    # The native rate from the file, independently of the interface's own reading.
    fps = float(ds.CineRate) if "CineRate" in ds else 1000.0 / float(ds.FrameTime)
    env = dict(os.environ, BASE=site["root"], CHROMIUM=chromium, STUDY=study, FPS=str(fps),
               ADMIN="alice", ADMIN_PASSWORD=site["users"]["alice"][0],
               ANNOTATOR="bob", ANNOTATOR_PASSWORD=site["users"]["bob"][0],
               STUDIES=str(len(site["files"])), OUT_DIR=str(tmp_path))
    start = time.time()
    run = subprocess.run([node, str(WEB / "e2e" / "annotate.e2e.mjs")], env=env, cwd=WEB,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print("e2e:", json.dumps(result), f"{time.time() - start:.1f}s")
    # The viewer opens the study's longest cine.
    by_sop = {d.SOPInstanceUID: d for d in instances}
    ds = by_sop[result["instance"]["sop"]]
    assert int(ds.NumberOfFrames) == max(int(d.NumberOfFrames) for d in instances)
    assert result["admin_worklist_rows"] == len(site["files"])
    assert not [e for e in result["page_errors"] if "favicon" not in e], result["page_errors"]

    # What the browser saved, read back through the API.
    pid = site["pid"]
    listing = site["alice"].json("GET", f"/api/projects/{pid}/studies/{study}/annotations")
    anns = {a["id"]: a for a in listing["annotations"] if not a["deleted"]}
    length = anns[result["length_id"]]
    assert (length["kind"], length["name"], length["author"]) == ("length", "LVIDd", "alice")
    assert length["sop_instance_uid"] == ds.SOPInstanceUID and length["frame"] == result["frame"]
    (x0, y0), (x1, y1) = length["payload"]["points"]
    # The points are where the mouse went (image pixels 40%,50% → 60%,65%), within a pixel.
    assert abs(x0 - 0.4 * ds.Columns) < 1.5 and abs(y0 - 0.5 * ds.Rows) < 1.5
    assert abs(x1 - 0.6 * ds.Columns) < 1.5 and abs(y1 - 0.65 * ds.Rows) < 1.5
    # Calibrated with the ultrasound region that holds both points (PhysicalDelta in cm).
    region = region_for(ds, [(x0, y0), (x1, y1)])
    assert region is not None
    dx, dy = float(region.PhysicalDeltaX) * 10, float(region.PhysicalDeltaY) * 10
    expected = (((x1 - x0) * dx) ** 2 + ((y1 - y0) * dy) ** 2) ** 0.5
    [q] = length["measurement"]["values"]
    assert q["unit"] == "mm" and abs(q["value"] - expected) < 1e-6 * expected
    assert f"{q['value']:.1f}" in result["length_text"] or f"{q['value']:.2f}" in result["length_text"]
    assert result["length_text_seen_by_annotator"] == result["length_text"]
    # The label: one annotation, changed once (version 2), on the series.
    [label] = [a for a in anns.values() if a["kind"] == "label"]
    assert label["payload"] == {"values": ["PLAX"]} and label["version"] == 2
    assert label["series_instance_uid"] == ds.SeriesInstanceUID and label["sop_instance_uid"] is None
    assert "A4C" in result["label_seen_by_annotator"]
    # The annotator's brush stroke: a mask on frame 3 with pixels set, area in mm².
    [mask] = [a for a in anns.values() if a["kind"] == "mask"]
    assert (mask["author"], mask["frame"], mask["name"]) == ("bob", 3, "LV cavity")
    assert mask["version"] == 1, "one stroke is saved once, when the button comes up"
    values = {v["quantity"]: v for v in mask["measurement"]["values"]}
    assert values["pixels"]["value"] > 20 and values["area"]["unit"] == "mm2"
    assert "alice" in result["presence"]

    # The polygon, ellipse and rectangle tools: saved where the mouse went, on frame 3, with
    # the server's area from the region's calibration, shown as such to both users.
    C, R = ds.Columns, ds.Rows
    shapes = result["shapes"]

    def shown(value):
        """As the interface prints a value: 0, 1 or 2 decimals by magnitude."""
        return f"{value:.{0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2}f}"

    def area_of(a):
        [v] = [v for v in a["measurement"]["values"] if v["quantity"] == "area"]
        assert v["unit"] == "mm2", v
        return v["value"]

    def calibration(points):
        region = region_for(ds, points)
        assert region is not None
        return float(region.PhysicalDeltaX) * 10, float(region.PhysicalDeltaY) * 10

    for kind, name in [("polygon", "LV area"), ("ellipse", "LA"), ("area", "RA")]:
        a = anns[shapes[kind]["id"]]
        assert (a["kind"], a["name"], a["author"]) == (kind, name, "alice")
        assert a["sop_instance_uid"] == ds.SOPInstanceUID and a["frame"] == result["frame"]
        value = area_of(a)
        assert f"area {shown(value)} mm²" in shapes[kind]["text"], (shapes[kind], value)
        assert shapes[kind]["seen_by_annotator"] == shapes[kind]["text"]

    ellipse = anns[shapes["ellipse"]["id"]]["payload"]
    (cx, cy), (rx, ry) = ellipse["center"], ellipse["radii"]
    assert abs(cx - 0.3 * C) < 1.5 and abs(cy - 0.6 * R) < 1.5, ellipse
    assert abs(rx - 0.05 * C) < 1.5 and abs(ry - 0.04 * R) < 1.5, ellipse
    dx, dy = calibration([(cx - rx, cy - ry), (cx + rx, cy + ry)])
    expected = math.pi * rx * dx * ry * dy
    assert abs(area_of(anns[shapes["ellipse"]["id"]]) - expected) < 1e-6 * expected

    rect = anns[shapes["area"]["id"]]["payload"]["points"]
    xs, ys = [p[0] for p in rect], [p[1] for p in rect]
    assert len(rect) == 4
    assert abs(min(xs) - 0.5 * C) < 1.5 and abs(max(xs) - 0.62 * C) < 1.5, rect
    assert abs(min(ys) - 0.52 * R) < 1.5 and abs(max(ys) - 0.6 * R) < 1.5, rect
    dx, dy = calibration(rect)
    expected = (max(xs) - min(xs)) * dx * (max(ys) - min(ys)) * dy
    assert abs(area_of(anns[shapes["area"]["id"]]) - expected) < 1e-6 * expected

    loop = anns[shapes["polygon"]["id"]]["payload"]["points"]
    assert len(loop) >= 4
    assert all(0.35 * C - 2 <= x <= 0.45 * C + 2 and 0.35 * R - 2 <= y <= 0.45 * R + 2
               for x, y in loop), loop
    pixels = 0.5 * abs(sum(x0 * y1 - x1 * y0
                           for (x0, y0), (x1, y1) in zip(loop, loop[1:] + loop[:1])))
    drawn_square = (0.1 * C) * (0.1 * R)
    assert abs(pixels - drawn_square) < 0.15 * drawn_square, (pixels, drawn_square)
    dx, dy = calibration(loop)
    expected = pixels * dx * dy
    assert abs(area_of(anns[shapes["polygon"]["id"]]) - expected) < 1e-6 * expected


# ------------------------------------------------------------------------------------------
# OHIF


def ohif_dist():
    """The prebuilt OHIF viewer from npm, unpacked once into a cache folder outside the tree."""
    npm = require("npm")
    cache = pathlib.Path(os.environ.get("BEDSIDE_CACHE", pathlib.Path.home() / ".cache" / "bedside"))
    dist = cache / f"ohif-app-{OHIF_VERSION}" / "dist"
    if (dist / "index.html").exists():
        return dist
    cache.mkdir(parents=True, exist_ok=True)
    run = subprocess.run([npm, "pack", f"@ohif/app@{OHIF_VERSION}", "--silent"], cwd=cache,
                         capture_output=True, text=True)
    if run.returncode != 0:
        if os.environ.get("BEDSIDE_REQUIRE_PEERS") == "1":
            pytest.fail("cannot fetch @ohif/app: " + run.stderr[-2000:])
        pytest.skip("cannot fetch @ohif/app (offline?)")
    tgz = cache / run.stdout.strip().splitlines()[-1]
    target = cache / f"ohif-app-{OHIF_VERSION}"
    with tarfile.open(tgz) as t:
        members = [m for m in t.getmembers() if m.name.startswith("package/dist/")]
        t.extractall(target / "_x", members=members, filter="data")
    (target / "_x" / "package" / "dist").rename(dist)
    shutil.rmtree(target / "_x")
    tgz.unlink()
    return dist


def test_ohif_lists_studies_and_plays_a_cine(site, tmp_path):
    node = require("node")
    chromium = require("chromium", "/usr/bin/chromium")
    node_modules()
    dist = ohif_dist()
    study, instances = next(iter(site["files"].items()))
    ds = max(instances, key=lambda d: int(d.NumberOfFrames))
    accessions = sorted({d.AccessionNumber for studies in site["files"].values() for d in studies})
    assert len(accessions) == len(site["files"])
    env = dict(os.environ, BASE=site["root"], CHROMIUM=chromium, OHIF_DIST=str(dist), STUDY=study,
               ACCESSIONS=json.dumps(accessions), FRAMES=str(int(ds.NumberOfFrames)),
               USER="alice", PASSWORD=site["users"]["alice"][0], OUT_DIR=str(tmp_path))
    start = time.time()
    run = subprocess.run([node, str(WEB / "e2e" / "ohif.e2e.mjs")], env=env, cwd=WEB,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    print("ohif:", json.dumps(result), f"{time.time() - start:.1f}s")
    assert result["study_rows"] == len(site["files"])
    # Frames of the cine went through our WADO-RS, more than one (it played), all answered 200.
    assert result["frame_requests"] >= 2 and result["frame_errors"] == 0
    assert result["frames_seen"] >= 3
    assert not result["other_errors"] and not result["page_errors"], result
