#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Losses against the shared golden values (lifelines/scikit-survival Cox log-likelihoods,
//! torchsurv, pycox discrete-time and DeepHit losses, the evidential loss, FairTorch and
//! fairlearn), to 1e-6.

use std::path::PathBuf;

use bedside_ml::loss::classification::cross_entropy;
use bedside_ml::loss::evidential::{
    Evidence, EvidentialDataTerm, EvidentialLossConfig, kl_to_uniform_dirichlet, uncertainty,
};
use bedside_ml::loss::fairness::{
    demographic_parity_gap, demographic_parity_penalty, equalized_odds_gap,
};
use bedside_ml::loss::survival::{
    CoxTies, cox_loss, cox_partial_log_likelihood, deephit_loss, deephit_rank_loss,
    nll_logistic_hazard, nll_mtlr, nll_pmf, pair_rank_matrix,
};
use burn::tensor::{DType, Device, Tensor, TensorData};
use serde_json::Value;

fn golden_dir() -> PathBuf {
    match std::env::var_os("BEDSIDE_SHARED_DIR") {
        Some(dir) => PathBuf::from(dir).join("testdata/golden"),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/golden"),
    }
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(golden_dir().join(name)).unwrap()).unwrap()
}

/// (header, rows of raw fields)
fn csv(name: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(golden_dir().join(name)).unwrap();
    let mut lines = text.lines();
    let header = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    (header, rows)
}

fn device() -> Device {
    Device::flex()
}

fn t1(values: Vec<f64>, dtype: DType) -> Tensor<1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), (&device(), dtype))
}

fn t2(values: Vec<f64>, shape: [usize; 2], dtype: DType) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, shape), (&device(), dtype))
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()[0]
}

fn column(t: Tensor<2>) -> Vec<f64> {
    t.into_data().convert::<f64>().try_to_vec::<f64>().unwrap()
}

fn close(what: &str, got: f64, want: f64, tol: f64) {
    let diff = (got - want).abs();
    println!("{what}: got {got:.10}, golden {want:.10}, |diff| = {diff:.2e}");
    assert!(
        diff <= tol,
        "{what}: {got} vs {want} (|diff| {diff:.3e} > {tol:e})"
    );
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

fn vf(v: &Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).unwrap()
}

// ------------------------------------------------------------------ Cox on whas500

struct Whas {
    risk: std::collections::HashMap<&'static str, Vec<f64>>,
    time: Vec<f64>,
    event: Vec<bool>,
}

fn whas500() -> Whas {
    let golden = json("golden_survival.json");
    let cox = &golden["whas500_coxph"];
    let covariates: Vec<String> = serde_json::from_value(cox["covariates"].clone()).unwrap();
    let (header, rows) = csv("whas500_encoded.csv");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let value = |row: &Vec<String>, name: &str| row[col(name)].parse::<f64>().unwrap();
    let mut risk = std::collections::HashMap::new();
    for ties in ["breslow", "efron"] {
        let beta: Vec<f64> = covariates
            .iter()
            .map(|c| f(&cox[ties]["coef"][c]))
            .collect();
        let eta = rows
            .iter()
            .map(|r| {
                covariates
                    .iter()
                    .zip(&beta)
                    .map(|(c, b)| value(r, c) * b)
                    .sum()
            })
            .collect();
        risk.insert(ties, eta);
    }
    Whas {
        risk,
        time: rows.iter().map(|r| value(r, "lenfol")).collect(),
        event: rows.iter().map(|r| value(r, "fstat") == 1.0).collect(),
    }
}

#[test]
fn cox_log_likelihood_matches_lifelines_and_sksurv_breslow_and_efron() {
    let whas = whas500();
    let golden = json("golden_survival.json");
    let deep = json("golden_deep.json");
    let deep = &deep["whas500_cox_losses_at_fitted_beta"];
    for (name, ties) in [("breslow", CoxTies::Breslow), ("efron", CoxTies::Efron)] {
        let eta = whas.risk[name].clone();
        let ll = scalar(
            cox_partial_log_likelihood(t1(eta.clone(), DType::F64), &whas.time, &whas.event, ties)
                .unwrap(),
        );
        close(
            &format!("{name} log-likelihood (f64)"),
            ll,
            f(&golden["whas500_coxph"][name]["log_likelihood_numpy"]),
            1e-6,
        );
        let loss =
            scalar(cox_loss(t1(eta.clone(), DType::F64), &whas.time, &whas.event, ties).unwrap());
        close(
            &format!("{name} loss per event (f64)"),
            loss,
            f(&deep[name]["numpy_neg_loglik_per_event"]),
            1e-6,
        );
        // float32 inputs: the per-event loss still agrees to a few 1e-6.
        let loss32 = scalar(cox_loss(t1(eta, DType::F32), &whas.time, &whas.event, ties).unwrap());
        close(
            &format!("{name} loss per event (f32)"),
            loss32,
            f(&deep[name]["numpy_neg_loglik_per_event"]),
            1e-5,
        );
    }
    close(
        "lifelines efron log-likelihood",
        scalar(
            cox_partial_log_likelihood(
                t1(whas.risk["efron"].clone(), DType::F64),
                &whas.time,
                &whas.event,
                CoxTies::Efron,
            )
            .unwrap(),
        ),
        f(&golden["whas500_coxph"]["efron"]["log_likelihood_numpy"]),
        1e-6,
    );
}

#[test]
fn cox_gradient_matches_finite_differences() {
    let whas = whas500();
    let eta: Vec<f64> = whas.risk["efron"][..60].to_vec();
    let (time, event) = (&whas.time[..60], &whas.event[..60]);
    let ad = device().autodiff();
    let x = Tensor::<1>::from_data(TensorData::new(eta.clone(), [60]), (&ad, DType::F64))
        .require_grad();
    let grads = cox_loss(x.clone(), time, event, CoxTies::Efron)
        .unwrap()
        .backward();
    let grad = x
        .grad(&grads)
        .unwrap()
        .into_data()
        .try_to_vec::<f64>()
        .unwrap();
    let loss_at =
        |v: Vec<f64>| scalar(cox_loss(t1(v, DType::F64), time, event, CoxTies::Efron).unwrap());
    for i in [0, 7, 31, 59] {
        let h = 1e-6;
        let mut up = eta.clone();
        up[i] += h;
        let mut down = eta.clone();
        down[i] -= h;
        let numeric = (loss_at(up) - loss_at(down)) / (2.0 * h);
        assert!(
            (numeric - grad[i]).abs() < 1e-7,
            "{i}: {numeric} vs {}",
            grad[i]
        );
    }
}

// ------------------------------------------------------------------ pycox discrete time

struct Discrete {
    phi: Vec<f64>,
    n: usize,
    m: usize,
    idx: Vec<usize>,
    event: Vec<bool>,
}

fn discrete() -> Discrete {
    let (header, rows) = csv("discrete_inputs.csv");
    let m = header.iter().filter(|h| h.starts_with("phi")).count();
    let idx_col = header.iter().position(|h| h == "idx_duration").unwrap();
    let ev_col = header.iter().position(|h| h == "event").unwrap();
    Discrete {
        phi: rows
            .iter()
            .flat_map(|r| r[..m].iter().map(|v| v.parse::<f64>().unwrap()))
            .collect(),
        n: rows.len(),
        m,
        idx: rows.iter().map(|r| r[idx_col].parse().unwrap()).collect(),
        event: rows.iter().map(|r| r[ev_col] == "1").collect(),
    }
}

#[test]
fn discrete_time_losses_match_pycox() {
    let d = discrete();
    let golden = json("golden_deep.json");
    let g = &golden["discrete_time_losses"];
    for dtype in [DType::F64, DType::F32] {
        let tol = if dtype == DType::F64 { 1e-9 } else { 1e-6 };
        let phi = || t2(d.phi.clone(), [d.n, d.m], dtype);
        let label = |s: &str| format!("{s} ({dtype:?})");
        close(
            &label("nll_logistic_hazard"),
            scalar(nll_logistic_hazard(phi(), &d.idx, &d.event).unwrap()),
            f(&g["nll_logistic_hazard"]),
            tol,
        );
        close(
            &label("nll_pmf"),
            scalar(nll_pmf(phi(), &d.idx, &d.event).unwrap()),
            f(&g["nll_pmf"]),
            tol,
        );
        close(
            &label("nll_mtlr"),
            scalar(nll_mtlr(phi(), &d.idx, &d.event).unwrap()),
            f(&g["nll_mtlr"]),
            tol,
        );
        close(
            &label("deephit rank sigma 0.1"),
            scalar(deephit_rank_loss(phi(), &d.idx, &d.event, 0.1).unwrap()),
            f(&g["rank_loss_deephit_single_sigma0_1"]),
            tol,
        );
        close(
            &label("deephit alpha 0.2 sigma 0.1"),
            scalar(deephit_loss(phi(), &d.idx, &d.event, 0.2, 0.1).unwrap()),
            f(&g["deephit_single_alpha0_2_sigma0_1"]),
            tol,
        );
    }
    let rank: Vec<Vec<f64>> = serde_json::from_value(g["pair_rank_mat"].clone()).unwrap();
    assert_eq!(pair_rank_matrix(&d.idx, &d.event), rank);
}

#[test]
fn discrete_losses_reject_bad_bins() {
    let d = discrete();
    let mut idx = d.idx.clone();
    idx[3] = d.m;
    let phi = t2(d.phi.clone(), [d.n, d.m], DType::F32);
    let err = nll_pmf(phi, &idx, &d.event).err().unwrap().to_string();
    assert!(err.contains("row 3"), "{err}");
}

// ------------------------------------------------------------------ evidential

#[test]
fn evidential_loss_matches_sensoy_reference() {
    let golden = json("golden_deep.json");
    let e = &golden["evidential"];
    let logits: Vec<Vec<f64>> = serde_json::from_value(e["inputs"]["logits"].clone()).unwrap();
    let labels: Vec<usize> = serde_json::from_value(e["inputs"]["labels"].clone()).unwrap();
    let (n, k) = (logits.len(), logits[0].len());
    let cases = [
        ("relu_epoch0", Evidence::Relu, 0),
        ("relu_epoch5", Evidence::Relu, 5),
        ("relu_epoch10", Evidence::Relu, 10),
        ("relu_epoch20", Evidence::Relu, 20),
        ("softplus_epoch10", Evidence::Softplus, 10),
        ("exp_epoch10", Evidence::Exp, 10),
    ];
    for dtype in [DType::F64, DType::F32] {
        let tol = if dtype == DType::F64 { 1e-9 } else { 1e-6 };
        for (key, evidence, epoch) in cases {
            let g = &e[key];
            let loss = EvidentialLossConfig::new()
                .with_evidence(evidence)
                .with_data_term(EvidentialDataTerm::Mse)
                .init();
            let x = t2(logits.concat(), [n, k], dtype);
            let terms = loss.terms(x, &labels, epoch).unwrap();
            close(
                &format!("{key} annealing"),
                terms.annealing,
                f(&g["annealing_coef"]),
                0.0,
            );
            close(
                &format!("{key} loss_mean ({dtype:?})"),
                scalar(terms.mean()),
                f(&g["loss_mean"]),
                tol,
            );
            let kl = column(terms.kl.clone());
            for (got, want) in kl.iter().zip(vf(&g["kl"])) {
                close(&format!("{key} kl ({dtype:?})"), *got, want, tol);
            }
            let u = column(uncertainty(terms.alpha.clone()));
            for (got, want) in u.iter().zip(vf(&g["uncertainty"])) {
                close(&format!("{key} uncertainty"), *got, want, tol);
            }
            let per = column(terms.per_sample());
            for (got, want) in per.iter().zip(vf(&g["loss_per_sample"])) {
                close(&format!("{key} per sample"), *got, want, tol);
            }
        }
    }
    // edl_pytorch: dirichlet_mse = MSE term mean, dirichlet_reg = mean KL of the misleading
    // evidence, evidential_classification(lamb = 1) = their sum.
    let loss = EvidentialLossConfig::new()
        .with_evidence(Evidence::Relu)
        .init();
    let terms = loss
        .terms(t2(logits.concat(), [n, k], DType::F64), &labels, 10)
        .unwrap();
    close(
        "edl_pytorch dirichlet_mse",
        scalar(terms.data.clone().mean()),
        f(&e["edl_pytorch_dirichlet_mse"]),
        1e-9,
    );
    close(
        "edl_pytorch dirichlet_reg",
        scalar(terms.kl.clone().mean()),
        f(&e["edl_pytorch_dirichlet_reg"]),
        1e-9,
    );
    close(
        "edl_pytorch evidential_classification",
        scalar(terms.mean()),
        f(&e["edl_pytorch_evidential_classification_lamb1"]),
        1e-9,
    );
}

#[test]
fn evidential_log_and_digamma_terms_match_closed_forms() {
    // For one-hot targets the log term is log S − log α_y and the digamma term ψ(S) − ψ(α_y);
    // with integer α these have closed forms: ψ(n) = −γ + H_{n−1}.
    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
    let psi = |n: usize| -EULER_GAMMA + (1..n).map(|k| 1.0 / k as f64).sum::<f64>();
    // ReLU evidence of integer logits gives integer α = logit + 1.
    let logits = vec![3.0, 0.0, 1.0, 0.0, 5.0, 2.0];
    let labels = [0usize, 2];
    let alpha = [[4usize, 1, 2], [1, 6, 3]];
    for (term, expected) in [
        (
            EvidentialDataTerm::Log,
            alpha
                .iter()
                .zip(labels)
                .map(|(a, y)| ((a.iter().sum::<usize>()) as f64).ln() - (a[y] as f64).ln())
                .collect::<Vec<_>>(),
        ),
        (
            EvidentialDataTerm::Digamma,
            alpha
                .iter()
                .zip(labels)
                .map(|(a, y)| psi(a.iter().sum()) - psi(a[y]))
                .collect::<Vec<_>>(),
        ),
    ] {
        let loss = EvidentialLossConfig::new()
            .with_evidence(Evidence::Relu)
            .with_data_term(term)
            .with_annealing_step(10)
            .init();
        let terms = loss
            .terms(t2(logits.clone(), [2, 3], DType::F64), &labels, 0)
            .unwrap();
        for (got, want) in column(terms.data).iter().zip(expected) {
            close(&format!("{term:?}"), *got, want, 1e-10);
        }
    }
    // KL(Dir(1) || Dir(1)) = 0.
    let kl = column(kl_to_uniform_dirichlet(t2(
        vec![1.0; 6],
        [2, 3],
        DType::F64,
    )));
    assert!(kl.iter().all(|v| v.abs() < 1e-11), "{kl:?}");
}

#[test]
fn evidential_gradients_match_finite_differences_in_f64_and_f32() {
    let logits = vec![3.0, -1.0, 0.5, 0.2, 0.1, -0.3, -2.0, 4.0, 1.0];
    let labels = [0usize, 2, 1];
    for term in [EvidentialDataTerm::Mse, EvidentialDataTerm::Digamma] {
        let loss = EvidentialLossConfig::new()
            .with_evidence(Evidence::Softplus)
            .with_data_term(term)
            .init();
        let value =
            |v: Vec<f64>| scalar(loss.forward(t2(v, [3, 3], DType::F64), &labels, 7).unwrap());
        let ad = device().autodiff();
        let mut grads_by_dtype = Vec::new();
        for dtype in [DType::F64, DType::F32] {
            let x = Tensor::<2>::from_data(TensorData::new(logits.clone(), [3, 3]), (&ad, dtype))
                .require_grad();
            let g = loss.forward(x.clone(), &labels, 7).unwrap().backward();
            grads_by_dtype.push(
                x.grad(&g)
                    .unwrap()
                    .into_data()
                    .convert::<f64>()
                    .try_to_vec::<f64>()
                    .unwrap(),
            );
        }
        for i in 0..logits.len() {
            let h = 1e-6;
            let mut up = logits.clone();
            up[i] += h;
            let mut down = logits.clone();
            down[i] -= h;
            let numeric = (value(up) - value(down)) / (2.0 * h);
            assert!(
                (numeric - grads_by_dtype[0][i]).abs() < 1e-7,
                "{term:?} f64 {i}"
            );
            assert!(
                (numeric - grads_by_dtype[1][i]).abs() < 1e-5,
                "{term:?} f32 {i}"
            );
        }
    }
}

// ------------------------------------------------------------------ fairness

#[test]
fn demographic_parity_penalty_matches_fairtorch_reference() {
    let golden = json("golden_deep.json");
    let ft = &golden["fairtorch"];
    let logits = vf(&ft["inputs"]["logits"]);
    let groups: Vec<usize> = serde_json::from_value(ft["inputs"]["sensitive"].clone()).unwrap();
    let probs: Vec<f64> = logits.iter().map(|x| 1.0 / (1.0 + (-x).exp())).collect();
    let penalty = scalar(demographic_parity_penalty(t1(probs, DType::F64), &groups).unwrap());
    close(
        "DP penalty vs all-groups reference",
        penalty,
        f(&ft["dp_all_groups_reference"]),
        1e-9,
    );
    // With two equal-sized groups FairTorch's group-0-only constraint gives the same value.
    close(
        "DP penalty vs fairtorch",
        penalty,
        f(&ft["dp_fairtorch"]),
        1e-6,
    );
}

#[test]
fn fairness_gaps_match_fairlearn_over_three_sites() {
    let golden = json("golden_fairlearn.json");
    let (header, rows) = csv("fairlearn_data.csv");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let y_true: Vec<bool> = rows.iter().map(|r| r[col("y_true")] == "1").collect();
    let y_pred: Vec<f64> = rows
        .iter()
        .map(|r| r[col("y_pred")].parse().unwrap())
        .collect();
    for attr in ["site", "sex"] {
        let mut names: Vec<String> = rows.iter().map(|r| r[col(attr)].clone()).collect();
        names.sort();
        names.dedup();
        let groups: Vec<usize> = rows
            .iter()
            .map(|r| names.iter().position(|n| *n == r[col(attr)]).unwrap())
            .collect();
        let g = &golden["aggregate_metrics"][attr];
        close(
            &format!("{attr} demographic parity difference"),
            scalar(demographic_parity_gap(t1(y_pred.clone(), DType::F64), &groups).unwrap()),
            f(&g["demographic_parity_difference"]),
            1e-9,
        );
        close(
            &format!("{attr} equalized odds difference"),
            scalar(equalized_odds_gap(t1(y_pred.clone(), DType::F64), &y_true, &groups).unwrap()),
            f(&g["equalized_odds_difference"]),
            1e-9,
        );
    }
}

// ------------------------------------------------------------------ softmax

#[test]
fn cross_entropy_matches_direct_formula() {
    let logits: [[f64; 3]; 2] = [[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]];
    let labels = [2usize, 0];
    let want: f64 = logits
        .iter()
        .zip(labels)
        .map(|(row, y)| row.iter().map(|v| v.exp()).sum::<f64>().ln() - row[y])
        .sum::<f64>()
        / 2.0;
    let got = scalar(cross_entropy(t2(logits.concat(), [2, 3], DType::F64), &labels).unwrap());
    close("cross entropy", got, want, 1e-12);
    assert!(cross_entropy(t2(logits.concat(), [2, 3], DType::F64), &[0, 3]).is_err());
}
