//! Task metrics written to `metrics.csv` each epoch: accuracy and AUROC (classification),
//! MAE and RMSE (regression), Harrell's C-index (survival).
//!
//! These are the light per-epoch monitors of a training run; the audited evaluation with
//! confidence intervals is `bedside evaluate` (crate `bedside-eval`).

/// Fraction of rows whose largest probability is at the label.
pub fn accuracy(probabilities: &[Vec<f64>], labels: &[usize]) -> f64 {
    if labels.is_empty() {
        return f64::NAN;
    }
    let correct = probabilities
        .iter()
        .zip(labels)
        .filter(|(p, y)| argmax(p) == **y)
        .count();
    correct as f64 / labels.len() as f64
}

fn argmax(p: &[f64]) -> usize {
    p.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// Area under the ROC curve of `scores` for `positive` labels (Mann–Whitney, ties count
/// half); NaN when one class is absent.
pub fn auroc_binary(scores: &[f64], positive: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Mid-ranks of tied groups.
    let mut ranks = vec![0.0; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    let n_pos = positive.iter().filter(|p| **p).count() as f64;
    let n_neg = positive.len() as f64 - n_pos;
    if n_pos == 0.0 || n_neg == 0.0 {
        return f64::NAN;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(positive)
        .filter(|(_, p)| **p)
        .map(|(r, _)| r)
        .sum();
    (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
}

/// AUROC of a classifier: binary on the probability of class 1; with more classes the
/// unweighted mean of one-vs-rest AUROCs over the classes present.
pub fn auroc(probabilities: &[Vec<f64>], labels: &[usize]) -> f64 {
    let classes = probabilities.first().map_or(0, Vec::len);
    if classes == 2 {
        let scores: Vec<f64> = probabilities.iter().map(|p| p[1]).collect();
        let positive: Vec<bool> = labels.iter().map(|&y| y == 1).collect();
        return auroc_binary(&scores, &positive);
    }
    let values: Vec<f64> = (0..classes)
        .map(|k| {
            let scores: Vec<f64> = probabilities.iter().map(|p| p[k]).collect();
            let positive: Vec<bool> = labels.iter().map(|&y| y == k).collect();
            auroc_binary(&scores, &positive)
        })
        .filter(|v| !v.is_nan())
        .collect();
    if values.is_empty() {
        f64::NAN
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// Mean absolute error.
pub fn mae(predicted: &[f64], target: &[f64]) -> f64 {
    if target.is_empty() {
        return f64::NAN;
    }
    predicted
        .iter()
        .zip(target)
        .map(|(p, t)| (p - t).abs())
        .sum::<f64>()
        / target.len() as f64
}

/// Root mean squared error.
pub fn rmse(predicted: &[f64], target: &[f64]) -> f64 {
    if target.is_empty() {
        return f64::NAN;
    }
    (predicted
        .iter()
        .zip(target)
        .map(|(p, t)| (p - t).powi(2))
        .sum::<f64>()
        / target.len() as f64)
        .sqrt()
}

/// Harrell's C-index (higher risk = earlier event): pairs where the earlier time is an
/// event, tied risks count half (lifelines' `concordance_index` on `-risk`); NaN without
/// comparable pairs.
pub fn concordance_index(risk: &[f64], time: &[f64], event: &[bool]) -> f64 {
    let (mut concordant, mut pairs) = (0.0, 0.0);
    for i in 0..risk.len() {
        if !event[i] {
            continue;
        }
        for j in 0..risk.len() {
            if time[i] < time[j] {
                pairs += 1.0;
                if risk[i] > risk[j] {
                    concordant += 1.0;
                } else if risk[i] == risk[j] {
                    concordant += 0.5;
                }
            }
        }
    }
    if pairs == 0.0 {
        f64::NAN
    } else {
        concordant / pairs
    }
}
