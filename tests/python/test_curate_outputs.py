"""Outputs of `bedside curate` beyond the DICOM files, checked with independent tools: the Parquet
metadata table read by pyarrow equals the CSV one (also after merging shards), resized training
copies match a NumPy reference resize and their crop box holds the phantom's true scan sector,
and a label sheet keyed by the original identifiers, pseudonymised by `bedside curate labels`,
joins the curated table without a crosswalk, with dates that agree with the curated headers
(read by pydicom)."""

import csv
import datetime
import hashlib
import json
import subprocess

import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest

SIZE = 112


@pytest.fixture(scope="module")
def run(tmp_path_factory, bedside, cohort):
    base = tmp_path_factory.mktemp("curate_outputs")
    out = base / "out"
    secret = base / "secret"
    done = subprocess.run(
        [str(bedside), "-q", "curate", str(cohort / "dicom"), "-o", str(out),
         "--secret-dir", str(secret), "--resize", str(SIZE)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    return {"base": base, "out": out, "secret": secret, "cohort": cohort}


def csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_parquet_equals_csv(parquet_path, csv_path):
    table = pq.read_table(parquet_path)
    rows = csv_rows(csv_path)
    with open(csv_path, newline="") as f:
        header = next(csv.reader(f))
    assert table.column_names == header
    assert table.num_rows == len(rows) > 0
    types = {f.name: str(f.type) for f in table.schema}
    assert types["rows"] == "int32" and types["frames"] == "int64"
    assert types["frame_time_ms"] == "double" and types["study_date"] == "date32[day]"
    assert types["patient_id"] == "string"
    columns = table.to_pydict()
    for name in header:
        for value, row in zip(columns[name], rows):
            text = row[name]
            if value is None:
                assert text == "", (name, text)
            elif isinstance(value, datetime.date):
                assert value.strftime("%Y%m%d") == text, name
            elif isinstance(value, float):
                assert value == float(text), (name, value, text)
            elif isinstance(value, int):
                assert value == int(text), (name, value, text)
            else:
                assert value == text, name
    return rows


def test_parquet_table_equals_the_csv_table(run):
    rows = assert_parquet_equals_csv(run["out"] / "metadata.parquet", run["out"] / "metadata.csv")
    assert any(r["study_date"] for r in rows)
    assert any(r["frame_time_ms"] for r in rows)


def test_merge_joins_parquet_shards(tmp_path, bedside, run):
    out = tmp_path / "sharded"
    for i in range(2):
        done = subprocess.run(
            [str(bedside), "-q", "curate", str(run["cohort"] / "dicom"), "-o", str(out),
             "--secret-dir", str(run["secret"]), "--no-arrays", "--shard", f"{i}/2"],
            capture_output=True, text=True,
        )
        assert done.returncode == 0, done.stderr
        assert (out / f"metadata.shard-{i}-of-2.parquet").exists()
    done = subprocess.run([str(bedside), "-q", "curate", "merge", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    merged = assert_parquet_equals_csv(out / "metadata.parquet", out / "metadata.csv")
    whole = csv_rows(run["out"] / "metadata.csv")
    key = lambda r: (r["output"], r["pixel_sha256"], r["study_date"])
    assert sorted(map(key, merged)) == sorted(map(key, whole))


def resized_series(run):
    """(native sidecar, resized sidecar, original file) per series of the phantom."""
    out, cohort = run["out"], run["cohort"]
    by_sop = {r["sop_instance_uid"]: r for r in csv_rows(out / "metadata.csv")}
    originals = {sha(p): p for p in (cohort / "dicom").rglob("*.dcm")}
    found = []
    for side_path in sorted((out / "arrays").glob(f"*.{SIZE}x{SIZE}.json")):
        small = json.loads(side_path.read_text())
        native = json.loads((out / "arrays" / small["source_array"].replace(".npy", ".json")).read_text())
        assert native["resized"] == small["array"]
        row = by_sop[native["instances"][0]]
        found.append((native, small, originals[row["input_sha256"]]))
    return found


def area_weights(n_in, n_out):
    """Exact area-overlap (shrink) or half-pixel bilinear (enlarge) weights, n_out x n_in."""
    w = np.zeros((n_out, n_in))
    step = n_in / n_out
    for j in range(n_out):
        if n_out <= n_in:
            a, b = j * step, min((j + 1) * step, n_in)
            for x in range(int(np.floor(a)), min(int(np.ceil(b)), n_in)):
                w[j, x] = max(0.0, min(x + 1, b) - max(x, a))
        else:
            c = min(max((j + 0.5) * step - 0.5, 0.0), n_in - 1)
            x0 = int(np.floor(c))
            t = c - x0
            w[j, x0] += 1 - t
            if x0 + 1 < n_in:
                w[j, x0 + 1] += t
        w[j] /= w[j].sum()
    return w


def test_resized_copies_match_a_numpy_reference(run):
    series = resized_series(run)
    assert series
    for native, small, _ in series:
        arrays = run["out"] / "arrays"
        full = np.load(arrays / native["array"])
        got = np.load(arrays / small["array"])
        assert got.dtype == full.dtype == np.uint8
        assert got.shape == (full.shape[0], SIZE, SIZE) + full.shape[3:]
        x0, y0, x1, y1 = small["crop_box"]
        crop = full[:, y0:y1 + 1, x0:x1 + 1].astype(np.float64)
        h, w = crop.shape[1:3]
        cw, ch = small["content_size"]
        assert max(cw, ch) == SIZE
        # Aspect kept to within half a pixel of the short side.
        assert abs(min(cw, ch) - SIZE * min(w, h) / max(w, h)) <= 0.5
        wy, wx = area_weights(h, ch), area_weights(w, cw)
        # Separable: columns first, then rows (each a matrix product).
        tmp = np.einsum("fyx...,jx->fyj...", crop, wx, optimize=True)
        ref = np.einsum("iy,fyj...->fij...", wy, tmp, optimize=True)
        ref = np.clip(np.floor(ref + 0.5), 0, 255)
        left, top = small["padding_left_top"]
        assert (left, top) == ((SIZE - cw) // 2, (SIZE - ch) // 2)
        inner = got[:, top:top + ch, left:left + cw].astype(np.float64)
        assert np.abs(inner - ref).max() <= 1
        outside = np.ones(got.shape[1:3], bool)
        outside[top:top + ch, left:left + cw] = False
        assert not got[:, outside].any(), "padding is zero"
        sx, sy = small["scale"]
        assert sx == pytest.approx(cw / w) and sy == pytest.approx(ch / h)
        if native["us_physical_delta"]:
            dx, dy, unit = native["us_physical_delta"]
            assert small["us_physical_delta"] == pytest.approx([dx / sx, dy / sy, unit])
        assert small["frame_time_ms"] == native["frame_time_ms"]


def test_crop_box_holds_the_true_sector(run):
    cohort = run["cohort"]
    studies = {r["file"]: r for r in csv_rows(cohort / "studies.csv")}
    series = resized_series(run)
    for native, small, original in series:
        study = studies[str(original.relative_to(cohort))]
        sector = np.load(cohort / study["mask_file"])["sector"]
        ys, xs = np.nonzero(sector)
        x0, y0, x1, y1 = small["crop_box"]
        assert x0 <= xs.min() and xs.max() <= x1 and y0 <= ys.min() and ys.max() <= y1, (
            study["study_key"], small["crop_box"], (xs.min(), ys.min(), xs.max(), ys.max()))
        # The crop is about the sector, not the whole screen. It is the union of the declared
        # region and the changing area, so it may be looser than the sector itself (a declared
        # region reaching the top of the screen, a moving trace touching the fan).
        box_area = (x1 - x0 + 1) * (y1 - y0 + 1)
        sector_box = (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)
        assert box_area < 0.85 * sector.size
        assert box_area <= 1.5 * sector_box, (study["study_key"], box_area, sector_box)


def iso(da):
    return f"{da[:4]}-{da[4:6]}-{da[6:8]}"


def test_label_sheet_joins_the_curated_table(run, bedside, tmp_path):
    cohort, out = run["cohort"], run["out"]
    # A research group's sheet: original identifiers and ISO dates beside the labels.
    sheet = tmp_path / "labels.csv"
    studies = csv_rows(cohort / "studies.csv")
    with open(sheet, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["PatientID", "AccessionNumber", "StudyInstanceUID", "echo_date", "ef", "file"])
        for s in studies:
            ds = pydicom.dcmread(cohort / s["file"], stop_before_pixels=True)
            w.writerow([ds.PatientID, ds.AccessionNumber, ds.StudyInstanceUID,
                        iso(ds.StudyDate), s["ef"], s["file"]])
    pseudo = tmp_path / "labels.pseudo.csv"
    done = subprocess.run(
        [str(bedside), "-q", "curate", "labels", str(sheet), "-o", str(pseudo),
         "--secret-dir", str(run["secret"]), "--patient-column", "PatientID",
         "--id-columns", "AccessionNumber", "--uid-columns", "StudyInstanceUID",
         "--date-columns", "echo_date"],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    labels = csv_rows(pseudo)
    assert len(labels) == len(studies)
    original_text = sheet.read_text()
    for row in labels:
        for column in ("PatientID", "AccessionNumber", "StudyInstanceUID", "echo_date"):
            assert row[column] and row[column] not in original_text, column

    by_key = {}
    for row in labels:
        by_key.setdefault((row["PatientID"], row["StudyInstanceUID"]), []).append(row)
    originals = {sha(cohort / s["file"]): s for s in studies}
    curated = csv_rows(out / "metadata.csv")
    assert len(curated) == len(studies)
    for meta in curated:
        matches = by_key.get((meta["patient_id"], meta["study_instance_uid"]), [])
        assert len(matches) == 1, meta["output"]
        label = matches[0]
        # The label reached the right study: same file as the curated row's input.
        assert label["file"] == originals[meta["input_sha256"]]["file"]
        header = pydicom.dcmread(out / meta["output"], stop_before_pixels=True)
        assert label["AccessionNumber"] == header.AccessionNumber
        assert label["echo_date"] == iso(header.StudyDate) == iso(meta["study_date"])
