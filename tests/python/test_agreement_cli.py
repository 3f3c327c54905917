"""`bedside agreement` end to end on long tables: the JSON it writes is compared with
scikit-learn (Cohen's kappa, accuracy) and NumPy (Bland–Altman bias, Dice) on the same data."""

import csv
import json
import subprocess

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    rng = np.random.default_rng(7)
    d = tmp_path_factory.mktemp("agreement")
    n = 60
    truth = rng.integers(0, 3, n)
    readers = {name: np.where(rng.random(n) < acc, truth, rng.integers(0, 3, n)) for name, acc in
               {"ana": 0.8, "ben": 0.7, "cy": 0.9}.items()}
    grades = ["normal", "mild", "severe"]
    rows = [(f"s{i:03d}", r, grades[v[i]]) for r, v in readers.items() for i in range(n)]
    rows[5] = (rows[5][0], rows[5][1], "")  # one missing rating
    write_csv(d / "labels.csv", ["item", "reader", "label"], rows)
    ai = np.where(rng.random(n) < 0.85, truth, rng.integers(0, 3, n))
    write_csv(d / "ai.csv", ["item", "prediction"], [(f"s{i:03d}", grades[ai[i]]) for i in range(n)])
    write_csv(d / "truth.csv", ["item", "reference"], [(f"s{i:03d}", grades[truth[i]]) for i in range(n)])
    ef = rng.normal(55, 10, n)
    meas = {"ana": ef + rng.normal(0, 3, n), "ben": ef + rng.normal(2, 4, n)}
    write_csv(d / "ef.csv", ["item", "reader", "value"],
              [(f"s{i:03d}", r, f"{v[i]:.6f}") for r, v in meas.items() for i in range(n)])
    yy, xx = np.mgrid[0:20, 0:24]
    masks = {}
    mask_rows = []
    for item in range(3):
        for r, shift in {"ana": 0.0, "ben": 1.5}.items():
            m = np.stack([((yy - 10) ** 2 + (xx - 12 - shift) ** 2) < (3 + f + item) ** 2 for f in range(4)])
            masks[(item, r)] = m
            np.save(d / f"m{item}_{r}.npy", m.astype(np.uint8))
            mask_rows.append((f"s{item:03d}", r, f"m{item}_{r}.npy"))
    write_csv(d / "masks.csv", ["item", "reader", "file"], mask_rows)
    return {"dir": d, "readers": readers, "grades": grades, "ai": ai, "truth": truth, "meas": meas, "masks": masks}


def run(bedside, args, out):
    res = subprocess.run([str(bedside), "agreement", *args, "-o", str(out), "--bootstrap", "200"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return json.loads((out / "agreement.json").read_text()), res.stdout


def test_labels_and_ai_match_sklearn(bedside, tables, tmp_path):
    d = tables["dir"]
    report, stdout = run(bedside, ["--labels", str(d / "labels.csv"), "--order", "normal,mild,severe",
                                   "--weights", "linear", "--predictions", str(d / "ai.csv"),
                                   "--reference", str(d / "truth.csv"), "--positive", "severe"], tmp_path)
    assert "Cohen's κ" in stdout and "Fleiss' κ" in stdout and "AI − reader" in stdout
    labels = report["labels"]
    assert labels["categories"] == tables["grades"]
    r = tables["readers"]
    for pair in labels["pairwise"]:
        a, b = r[pair["a"]].copy(), r[pair["b"]].copy()
        keep = np.ones(len(a), bool)
        if pair["a"] == "ana" or pair["b"] == "ana":
            keep[5] = False  # ana's missing rating of s005
        want = cohen_kappa_score(a[keep], b[keep], labels=[0, 1, 2], weights="linear")
        assert abs(pair["kappa"]["kappa"] - want) < 1e-12
        assert pair["kappa"]["lower"] < want < pair["kappa"]["upper"]
    assert labels["fleiss"]["min_raters"] == 2 and labels["fleiss"]["max_raters"] == 3
    acc = next(c for c in report["ai_vs_readers"] if c["metric"]["metric"] == "accuracy")
    assert abs(acc["ai_overall"]["value"] - accuracy_score(tables["truth"], tables["ai"])) < 1e-12
    for row in acc["readers"]:
        v = r[row["reader"]]
        keep = np.ones(len(v), bool)
        if row["reader"] == "ana":
            keep[5] = False
        assert row["n"] == keep.sum()
        want = accuracy_score(tables["truth"][keep], v[keep])
        assert abs(row["reader_metric"]["value"] - want) < 1e-12
    metrics = {c["metric"]["metric"] for c in report["ai_vs_readers"]}
    assert metrics == {"accuracy", "kappa", "sensitivity", "specificity"}
    assert (tmp_path / "agreement.html").read_text().count("<table>") >= 2


def test_measurements_and_masks(bedside, tables, tmp_path):
    d = tables["dir"]
    report, _ = run(bedside, ["--measurements", str(d / "ef.csv"), "--masks", str(d / "masks.csv")], tmp_path)
    m = report["measurements"]
    assert [r["form"] for r in m["icc"]["rows"]] == ["ICC(1,1)", "ICC(2,1)", "ICC(3,1)", "ICC(1,k)", "ICC(2,k)", "ICC(3,k)"]
    for row in m["icc"]["rows"]:
        assert row["lower"] < row["icc"] < row["upper"]
    ba = m["pairwise"][0]["bland_altman"]
    diff = tables["meas"]["ana"] - tables["meas"]["ben"]
    assert abs(ba["bias"] - diff.mean()) < 1e-5 and abs(ba["sd"] - diff.std(ddof=1)) < 1e-5
    pair = report["masks"][0]
    pooled_i = pooled_s = 0
    per_item = []
    for item in range(3):
        a, b = tables["masks"][(item, "ana")], tables["masks"][(item, "ben")]
        inter = (a & b).reshape(4, -1).sum(1)
        sizes = a.reshape(4, -1).sum(1) + b.reshape(4, -1).sum(1)
        per_item.append((2 * inter / sizes).mean())
        pooled_i += inter.sum()
        pooled_s += sizes.sum()
    assert abs(pair["mean_dice"] - np.mean(per_item)) < 1e-12
    assert abs(pair["pooled_dice"] - 2 * pooled_i / pooled_s) < 1e-12


def test_no_input_is_a_usage_error(bedside, tmp_path):
    res = subprocess.run([str(bedside), "agreement", "-o", str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 3 and "--labels" in res.stderr
