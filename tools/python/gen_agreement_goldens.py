"""Golden values for bedside-eval's agreement statistics, from independent implementations.

Writes crates/bedside-eval/tests/data/agreement_goldens.json (inputs and expected outputs).
The Rust test (crates/bedside-eval/tests/golden_agreement.rs) reads only that file, so these
packages are needed only to regenerate it, for example in a throw-away environment:

    python3 -m venv /tmp/agree && /tmp/agree/bin/pip install numpy==2.2.6 scipy==1.17.1 \
        scikit-learn==1.9.1 statsmodels==0.15.0 pingouin==0.7.0 pandas
    /tmp/agree/bin/python tools/python/gen_agreement_goldens.py

References: scikit-learn cohen_kappa_score, f1_score, jaccard_score, accuracy_score,
recall_score, mean_absolute_error; statsmodels cohens_kappa (standard errors, interval) and
fleiss_kappa; pingouin intraclass_corr (ICC, F, p-value, 95% interval). Bland–Altman intervals
and Fleiss' null standard error have no packaged reference: they are computed here from the
published formulas with SciPy's t quantile, as a cross-check of the Rust code.
"""

import json
import pathlib

import numpy as np
import pandas as pd
import pingouin
import scipy
import sklearn
import statsmodels
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    jaccard_score,
    mean_absolute_error,
    recall_score,
)
from statsmodels.stats.inter_rater import cohens_kappa, fleiss_kappa

# pingouin rounds its intervals to two decimals by default; the goldens need every digit.
pingouin.options["round.column.CI95"] = None

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates" / "bedside-eval" / "tests" / "data" / "agreement_goldens.json"
rng = np.random.default_rng(20261128)


def correlated_labels(n, k, noise):
    """Two readers on k ordinal categories who mostly agree, off by one or two otherwise."""
    truth = rng.integers(0, k, n)
    a = np.clip(truth + rng.choice([-1, 0, 0, 1], n) * (rng.random(n) < noise), 0, k - 1)
    b = np.clip(truth + rng.choice([-2, -1, 0, 1], n) * (rng.random(n) < noise), 0, k - 1)
    return a.astype(int), b.astype(int)


def cohen_cases():
    cases = []
    for name, (n, k, noise) in {
        "binary_60": (60, 2, 0.3),
        "three_80": (80, 3, 0.5),
        "five_ordinal_150": (150, 5, 0.6),
        "four_small_20": (20, 4, 0.8),
    }.items():
        a, b = correlated_labels(n, k, noise)
        labels = np.arange(k)
        table = confusion_matrix(a, b, labels=labels).astype(float)
        for weights in ["none", "linear", "quadratic"]:
            sk = cohen_kappa_score(a, b, labels=labels, weights=None if weights == "none" else weights)
            sm = cohens_kappa(table, wt=None if weights == "none" else weights)
            cases.append(
                {
                    "name": f"{name}_{weights}",
                    "a": a.tolist(),
                    "b": b.tolist(),
                    "categories": int(k),
                    "weights": weights,
                    "sklearn_kappa": float(sk),
                    "statsmodels_kappa": float(sm.kappa),
                    "se": float(sm.std_kappa),
                    "se_null": float(sm.std_kappa0),
                    "lower": float(sm.kappa_low),
                    "upper": float(sm.kappa_upp),
                }
            )
    return cases


def fleiss_null_se(table):
    """Fleiss, Nee & Landis (1979) standard error of kappa under kappa = 0 (constant raters)."""
    table = np.asarray(table, float)
    n_sub = table.shape[0]
    m = table.sum(1)[0]
    p = table.sum(0) / table.sum()
    pq = (p * (1 - p)).sum()
    return float(np.sqrt(2) / (pq * np.sqrt(n_sub * m * (m - 1))) * np.sqrt(pq**2 - (p * (1 - p) * (1 - 2 * p)).sum()))


def fleiss_cases():
    wiki = [
        [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
    ]
    tables = {"wikipedia_fleiss1971": wiki}
    for name, (subjects, raters, k) in {"r4_k3_40": (40, 4, 3), "r7_k5_25": (25, 7, 5), "r2_k2_50": (50, 2, 2)}.items():
        truth = rng.integers(0, k, subjects)
        ratings = np.where(rng.random((subjects, raters)) < 0.7, truth[:, None], rng.integers(0, k, (subjects, raters)))
        tables[name] = [[int((row == c).sum()) for c in range(k)] for row in ratings]
    return [
        {"name": name, "counts": t, "kappa": float(fleiss_kappa(np.array(t), method="fleiss")), "se_null": fleiss_null_se(t)}
        for name, t in tables.items()
    ]


def icc_cases():
    cases = []
    wine = pingouin.read_dataset("icc")
    wide = wine.pivot_table(index="Wine", columns="Judge", values="Scores")
    datasets = {"pingouin_wine": wide.to_numpy()}
    for name, (n, k, rater_sd, noise_sd) in {"n30_k3": (30, 3, 2.0, 3.0), "n12_k5": (12, 5, 0.5, 1.0), "n50_k2": (50, 2, 4.0, 6.0)}.items():
        target = rng.normal(50, 10, n)
        bias = rng.normal(0, rater_sd, k)
        datasets[name] = target[:, None] + bias[None, :] + rng.normal(0, noise_sd, (n, k))
    for name, mat in datasets.items():
        n, k = mat.shape
        long = pd.DataFrame([(i, j, mat[i, j]) for i in range(n) for j in range(k)], columns=["t", "r", "y"])
        res = pingouin.intraclass_corr(data=long, targets="t", raters="r", ratings="y").set_index("Type")
        rows = {}
        for typ in ["ICC(1,1)", "ICC(A,1)", "ICC(C,1)", "ICC(1,k)", "ICC(A,k)", "ICC(C,k)"]:
            r = res.loc[typ]
            rows[typ] = {
                "icc": float(r["ICC"]),
                "f": float(r["F"]),
                "df1": float(r["df1"]),
                "df2": float(r["df2"]),
                "p_value": float(r["pval"]),
                "lower": float(r["CI95"][0]),
                "upper": float(r["CI95"][1]),
            }
        cases.append({"name": name, "ratings": mat.tolist(), "rows": rows})
    return cases


def bland_altman_cases():
    cases = []
    data = pingouin.read_dataset("blandaltman")
    pairs = {"pingouin_blandaltman": (data["A"].to_numpy(), data["B"].to_numpy())}
    x = rng.normal(60, 8, 40)
    pairs["ef_40"] = (x + rng.normal(1.5, 4, 40), x)
    pairs["small_5"] = (np.array([1.5, 2.0, 2.0, 5.0, 3.3]), np.array([1.0, 2.0, 3.0, 4.0, 3.0]))
    for name, (a, b) in pairs.items():
        for conf in [0.95, 0.9]:
            d = a - b
            n = len(d)
            bias, sd = d.mean(), d.std(ddof=1)
            z = stats.norm.ppf(1 - (1 - conf) / 2)
            t = stats.t.ppf(1 - (1 - conf) / 2, n - 1)
            se_limit = sd * np.sqrt(1 / n + z**2 / (2 * (n - 1)))
            lo, hi = bias - z * sd, bias + z * sd
            cases.append(
                {
                    "name": f"{name}_{conf}",
                    "a": a.tolist(),
                    "b": b.tolist(),
                    "confidence": conf,
                    "bias": float(bias),
                    "sd": float(sd),
                    "t": float(t),
                    "bias_ci": [float(bias - t * sd / np.sqrt(n)), float(bias + t * sd / np.sqrt(n))],
                    "lower_limit": float(lo),
                    "lower_limit_ci": [float(lo - t * se_limit), float(lo + t * se_limit)],
                    "upper_limit": float(hi),
                    "upper_limit_ci": [float(hi - t * se_limit), float(hi + t * se_limit)],
                }
            )
    return cases


def mask_cases():
    cases = []
    frames, rows, cols = 6, 12, 10
    yy, xx = np.mgrid[0:rows, 0:cols]
    a = np.zeros((frames, rows, cols), np.uint8)
    b = np.zeros_like(a)
    for f in range(frames - 1):  # the last frame is empty in both
        r = 2.0 + f * 0.6
        a[f] = ((yy - 6) ** 2 + (xx - 5) ** 2) < r * r
        b[f] = ((yy - 6.5) ** 2 + (xx - 4.6) ** 2) < (r + 0.4) ** 2
    b[2] = 0  # one frame where only A drew something
    per_frame = []
    for f in range(frames):
        fa, fb = a[f].ravel(), b[f].ravel()
        if fa.sum() + fb.sum() == 0:
            per_frame.append({"dice": 1.0, "iou": 1.0})
        else:
            per_frame.append(
                {
                    "dice": float(f1_score(fa, fb, zero_division=0.0)),
                    "iou": float(jaccard_score(fa, fb, zero_division=0.0)),
                }
            )
    cases.append(
        {
            "name": "ellipses_6x12x10",
            "shape": [frames, rows, cols],
            "a": a.ravel().tolist(),
            "b": b.ravel().tolist(),
            "per_frame": per_frame,
            "pooled_dice": float(f1_score(a.ravel(), b.ravel())),
            "pooled_iou": float(jaccard_score(a.ravel(), b.ravel())),
        }
    )
    return cases


def reader_cases():
    n = 80
    reference = rng.integers(0, 2, n)
    ai = np.where(rng.random(n) < 0.85, reference, 1 - reference)
    readers = {}
    for name, acc in {"r1": 0.8, "r2": 0.9, "r3": 0.7}.items():
        readers[name] = np.where(rng.random(n) < acc, reference, 1 - reference).astype(float)
    readers["r3"][:5] = np.nan  # r3 skipped five items
    out = {"reference": reference.tolist(), "ai": ai.tolist(), "readers": {}}
    for name, r in readers.items():
        keep = ~np.isnan(r)
        ref_k, r_k, ai_k = reference[keep], r[keep].astype(int), ai[keep]
        out["readers"][name] = {
            "ratings": [None if np.isnan(v) else float(v) for v in r],
            "accuracy": [float(accuracy_score(ref_k, r_k)), float(accuracy_score(ref_k, ai_k))],
            "kappa": [float(cohen_kappa_score(ref_k, r_k)), float(cohen_kappa_score(ref_k, ai_k))],
            "sensitivity": [float(recall_score(ref_k, r_k)), float(recall_score(ref_k, ai_k))],
            "specificity": [float(recall_score(ref_k, r_k, pos_label=0)), float(recall_score(ref_k, ai_k, pos_label=0))],
        }
    x = rng.normal(55, 10, n)
    meas_ai = x + rng.normal(0, 3, n)
    meas_r = x + rng.normal(1, 5, n)
    out["measurements"] = {
        "reference": x.tolist(),
        "ai": meas_ai.tolist(),
        "reader": meas_r.tolist(),
        "mae": [float(mean_absolute_error(x, meas_r)), float(mean_absolute_error(x, meas_ai))],
    }
    return out


golden = {
    "generated_by": "tools/python/gen_agreement_goldens.py",
    "versions": {
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "statsmodels": statsmodels.__version__,
        "pingouin": pingouin.__version__,
        "pandas": pd.__version__,
    },
    "cohen": cohen_cases(),
    "fleiss": fleiss_cases(),
    "icc": icc_cases(),
    "bland_altman": bland_altman_cases(),
    "masks": mask_cases(),
    "readers": reader_cases(),
}
OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.write_text(json.dumps(golden, indent=1) + "\n")
print(f"wrote {OUT.relative_to(ROOT)}")
