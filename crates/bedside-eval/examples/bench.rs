//! Speed of the survival and bootstrap metrics, side by side with lifelines and scikit-survival.
//!
//! Run: `cargo run --release -p bedside-eval --example bench [-- --live]`
//!
//! Data as in the golden `bench_cindex.py`: risk ~ N(0, 1), T ~ Exp(rate e^{0.5·risk}),
//! C ~ Exp(mean 2), time = min(T, C) rounded to 3 decimals (ties occur). Our timings are one core
//! for the C-index and all cores (rayon) for the bootstrap. Peer timings come from the stored
//! `bench_cindex.json`, or, with `--live`, from running the peers now through the project's Python
//! environment (`.venv`, or `BEDSIDE_PYTHON`) on the same data written to CSV (and their C-index
//! values checked against ours); scikit-survival is skipped above n = 30,000, where it takes minutes.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use bedside_core::rng::Rng;
use bedside_eval::bootstrap::{BootstrapOptions, Clusters, bootstrap_replicates};
use bedside_eval::classification::RankedScores;
use bedside_eval::evaluate::{EvalSettings, evaluate};
use bedside_eval::input::EvalTable;
use bedside_eval::survival::{ConcordanceOptions, compute_harrell_c, compute_uno_c};

fn make(n: usize, seed: u64) -> (Vec<f64>, Vec<bool>, Vec<f64>) {
    let mut rng = Rng::seed_from(seed);
    let (mut t, mut e, mut r) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for _ in 0..n {
        let risk = rng.normal();
        let tt = -(1.0 - rng.uniform()).ln() / (0.5 * risk).exp();
        let cc = -(1.0 - rng.uniform()).ln() * 2.0;
        t.push((tt.min(cc) * 1000.0).round() / 1000.0);
        e.push(tt <= cc);
        r.push(risk);
    }
    (t, e, r)
}

fn best_of<T>(reps: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut out = None;
    for _ in 0..reps {
        let start = Instant::now();
        let v = f();
        best = best.min(start.elapsed().as_secs_f64());
        out = Some(v);
    }
    match out {
        Some(v) => (best, v),
        None => (best, f()),
    }
}

fn python() -> Option<PathBuf> {
    let p = std::env::var_os("BEDSIDE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
        });
    p.exists().then_some(p)
}

const PEER: &str = r#"
import json, sys, time
import numpy as np, pandas as pd
d = pd.read_csv(sys.argv[1]); t = d.t.values; e = d.e.values.astype(bool); r = d.r.values
out = {}
from lifelines.utils import concordance_index as ll_c
t0 = time.perf_counter(); out["lifelines_c"] = float(ll_c(t, -r, e)); out["lifelines_s"] = time.perf_counter() - t0
if len(t) <= int(sys.argv[2]):
    from sksurv.metrics import concordance_index_censored as sk_c, concordance_index_ipcw
    t0 = time.perf_counter(); out["sksurv_c"] = float(sk_c(e, t, r)[0]); out["sksurv_s"] = time.perf_counter() - t0
    y = np.array(list(zip(e, t)), dtype=[("e", bool), ("t", float)])
    t0 = time.perf_counter(); out["sksurv_uno_c"] = float(concordance_index_ipcw(y, y, r)[0]); out["sksurv_uno_s"] = time.perf_counter() - t0
print(json.dumps(out))
"#;

const PEER_BOOT: &str = r#"
import json, sys, time
import numpy as np
from sklearn.metrics import roc_auc_score
rng = np.random.default_rng(0); n = int(sys.argv[1]); reps = int(sys.argv[2])
z = rng.standard_normal(n); y = rng.random(n) < 1 / (1 + np.exp(-z)); p = 1 / (1 + np.exp(-1.5 * z))
t0 = time.perf_counter()
for _ in range(reps):
    idx = rng.integers(0, n, n); roc_auc_score(y[idx], p[idx])
print(json.dumps(dict(seconds_per_replicate=(time.perf_counter() - t0) / reps)))
"#;

fn stored_peers() -> Vec<serde_json::Value> {
    let shared = std::env::var_os("BEDSIDE_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let path = shared.join("testdata/golden/bench_cindex.json");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["runs"].as_array().cloned())
        .unwrap_or_default()
}

fn ratio(peer: Option<f64>, ours: f64) -> String {
    peer.map_or("–".into(), |p| format!("{:.0}×", p / ours))
}

fn secs(v: Option<f64>) -> String {
    v.map_or("–".into(), |s| format!("{s:.3}"))
}

fn main() {
    let live = std::env::args().any(|a| a == "--live");
    let py = if live { python() } else { None };
    if live && py.is_none() {
        eprintln!("--live: no Python environment found; using stored peer timings");
    }
    let stored = stored_peers();
    println!(
        "Harrell's and Uno's C (ours: one core; peers: {})",
        if py.is_some() {
            "measured now"
        } else {
            "stored bench_cindex.json, same machine class"
        }
    );
    println!(
        "{:>9} {:>10} {:>10} {:>10} {:>12} {:>9} {:>10} {:>9} {:>10} {:>9}",
        "n",
        "ours C s",
        "ours Uno s",
        "C",
        "lifelines s",
        "ratio",
        "sksurv s",
        "ratio",
        "sk Uno s",
        "ratio"
    );
    let dir = std::env::temp_dir().join(format!("bedside-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    for n in [10_000usize, 30_000, 100_000, 1_000_000] {
        let (t, e, r) = make(n, 0);
        let opts = ConcordanceOptions::default();
        let (ours_c, c) = best_of(3, || {
            compute_harrell_c(&t, &e, &r, &opts)
                .map(|c| c.c_index)
                .unwrap_or(f64::NAN)
        });
        let (ours_u, _) = best_of(3, || {
            compute_uno_c(&t, &e, &t, &e, &r, &opts)
                .map(|c| c.c_index)
                .unwrap_or(f64::NAN)
        });
        let (mut ll, mut sk, mut sku) = (None, None, None);
        if let Some(py) = &py {
            {
                let csv = dir.join("data.csv");
                let mut s = String::with_capacity(n * 24);
                s.push_str("t,e,r\n");
                for i in 0..n {
                    s.push_str(&format!("{},{},{}\n", t[i], u8::from(e[i]), r[i]));
                }
                if std::fs::write(&csv, s).is_ok()
                    && let Ok(out) = Command::new(py)
                        .arg("-c")
                        .arg(PEER)
                        .arg(&csv)
                        .arg("30000")
                        .output()
                    && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
                {
                    ll = v["lifelines_s"].as_f64();
                    sk = v["sksurv_s"].as_f64();
                    sku = v["sksurv_uno_s"].as_f64();
                    if let Some(pc) = v["lifelines_c"].as_f64() {
                        assert!(
                            (pc - c).abs() < 1e-6,
                            "lifelines C {pc} differs from ours {c}"
                        );
                    }
                    if let Some(pc) = v["sksurv_c"].as_f64() {
                        assert!(
                            (pc - c).abs() < 1e-9,
                            "scikit-survival C {pc} differs from ours {c}"
                        );
                    }
                }
            }
        } else if let Some(row) = stored
            .iter()
            .find(|row| row["n"].as_u64() == Some(n as u64))
        {
            ll = row["lifelines_s"].as_f64();
            sk = row["sksurv_s"].as_f64();
            sku = row["sksurv_uno_s"].as_f64();
        }
        println!(
            "{n:>9} {ours_c:>10.4} {ours_u:>10.4} {c:>10.6} {:>12} {:>9} {:>10} {:>9} {:>10} {:>9}",
            secs(ll),
            ratio(ll, ours_c),
            secs(sk),
            ratio(sk, ours_c),
            secs(sku),
            ratio(sku, ours_u)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);

    // Bootstrap of AUROC: 1,000 replicates at n = 100,000.
    let n = 100_000;
    let reps = 1000;
    let mut rng = Rng::seed_from(1);
    let (mut y, mut p) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let z = rng.normal();
        y.push(rng.uniform() < 1.0 / (1.0 + (-z).exp()));
        p.push(1.0 / (1.0 + (-1.5 * z).exp()));
    }
    let threads = rayon::current_num_threads();
    let start = Instant::now();
    let ranked = RankedScores::new(&p);
    let clusters = Clusters::singletons(n);
    let opts = BootstrapOptions {
        replicates: reps,
        seed: 3,
        confidence: 0.95,
    };
    let values = bootstrap_replicates(&clusters, &opts, |s| {
        ranked.auroc_weighted(&y, Some(&s.counts))
    });
    let ours = start.elapsed().as_secs_f64();
    println!();
    println!(
        "Bootstrap AUROC, n = {n}, {reps} replicates, {threads} threads: {ours:.3} s ({} replicates defined)",
        values.len()
    );
    if let Some(py) = &py {
        let probe = 20;
        if let Ok(out) = Command::new(py)
            .arg("-c")
            .arg(PEER_BOOT)
            .arg(n.to_string())
            .arg(probe.to_string())
            .output()
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            && let Some(per) = v["seconds_per_replicate"].as_f64()
        {
            let total = per * reps as f64;
            println!(
                "scikit-learn roc_auc_score on resampled indices: {per:.4} s per replicate (timed {probe}), {total:.1} s for {reps} (extrapolated): ratio {:.0}×",
                total / ours
            );
        }
    }

    // A whole evaluation: classification + survival + two group columns, 200 replicates.
    let n = 100_000;
    let mut rng = Rng::seed_from(2);
    let (time, event, risk) = make(n, 4);
    let mut label = Vec::with_capacity(n);
    let mut score = Vec::with_capacity(n);
    for &r in &risk {
        label.push(rng.uniform() < 1.0 / (1.0 + (-r).exp()));
        score.push(1.0 / (1.0 + (-1.2 * r).exp()));
    }
    let sex: Vec<String> = (0..n).map(|i| ["F", "M"][i % 2].to_string()).collect();
    let site: Vec<String> = (0..n).map(|i| ["A", "B", "C"][i % 3].to_string()).collect();
    let table = EvalTable {
        n,
        patients: Some((0..n).map(|i| format!("p{}", i / 2)).collect()),
        score: Some(score),
        label: Some(label),
        time: Some(time),
        event: Some(event),
        risk: Some(risk),
        groups: vec![("sex".into(), sex), ("site".into(), site)],
        ..Default::default()
    };
    let settings = EvalSettings {
        bootstrap: BootstrapOptions {
            replicates: 200,
            seed: 1,
            confidence: 0.95,
        },
        ..Default::default()
    };
    let start = Instant::now();
    match evaluate(&table, &settings) {
        Ok(r) => println!(
            "Full evaluation, n = {n} (classification, survival, 2 group columns + intersection, 200 replicates): {:.2} s ({} metrics in subgroups)",
            start.elapsed().as_secs_f64(),
            r.subgroups.iter().map(|a| a.rows.len()).sum::<usize>()
        ),
        Err(e) => println!("full evaluation failed: {e}"),
    }
}
