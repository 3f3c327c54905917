//! Local training behind a trait, so the protocol is independent of the model code.
//!
//! The agent hands a [`Trainer`] the global arrays and the instruction's configuration
//! and gets back new arrays, the number of examples and metrics. [`LinearTrainer`] is a
//! plain-Rust logistic regression on a CSV (used by tests and demos); the burn trainer of
//! `bedside-ml` plugs in through the same trait.

use std::path::Path;

use crate::FederateError;
use crate::npy::Tensor;

/// Settings of one training instruction (from the `config` record).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Round number, if the server sends it.
    pub server_round: u64,
    /// Local epochs.
    pub local_epochs: u32,
    /// Learning rate, if the server sends one (`lr`).
    pub lr: Option<f64>,
    /// FedProx proximal weight (0 for FedAvg).
    pub proximal_mu: f64,
    /// Input normalisation agreed by the federation (`norm-mean`, `norm-std`), e.g. from
    /// the sites' pooled statistics; without it a site uses its own.
    pub normalization: Option<(f64, f64)>,
    /// Standard deviation of Gaussian noise a site adds to the arrays its model does not
    /// train (`frozen-noise`, default 0), drawn from a stream of its own. Benchmarks set it
    /// so that every reply carries new bytes, as a trained model's would: returned
    /// unchanged, or changed the same way at every site, a frozen block has a content
    /// address the SuperLink already holds, and it does not ask for those bytes again.
    pub frozen_noise: f64,
}

/// Data-quality statistics of a site: the examples counted, and named values (scalars
/// are lists of one). Keys ending in `.counts` hold counts, which the agent suppresses
/// below the site's minimum cell size.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Statistics {
    /// Examples the statistics describe.
    pub count: u64,
    /// Named values, e.g. `frame_rate.counts`, `frame_rate.edges`, `intensity.mean`.
    pub values: Vec<(String, Vec<f64>)>,
}

/// What a training step returns.
#[derive(Clone, Debug)]
pub struct TrainOutput {
    /// Updated arrays, same names and shapes as the global ones.
    pub arrays: Vec<(String, Tensor)>,
    /// Examples seen (the FedAvg weight).
    pub num_examples: u64,
    /// Scalar metrics, e.g. `train-loss`.
    pub metrics: Vec<(String, f64)>,
    /// The weights training started from when the instruction carried none (the model's
    /// seeded initialisation): the egress filter measures the update against them.
    pub base: Option<Vec<(String, Tensor)>>,
}

/// Local training and evaluation on the site's data.
pub trait Trainer: Send {
    /// Trains from `global` and returns the local model.
    fn train(
        &mut self,
        global: &[(String, Tensor)],
        config: &TrainConfig,
    ) -> Result<TrainOutput, FederateError>;

    /// Evaluates `global`; returns (examples, metrics).
    fn evaluate(
        &mut self,
        global: &[(String, Tensor)],
    ) -> Result<(u64, Vec<(String, f64)>), FederateError>;

    /// Data-quality statistics of the local data (answered to `query` messages).
    fn statistics(&mut self) -> Result<Statistics, FederateError> {
        Err(FederateError::Refused(
            "this trainer has no data-quality statistics".into(),
        ))
    }
}

/// Logistic regression by full-batch gradient descent on `features..., label` rows.
///
/// Arrays: `w` (one weight per feature) and `b` (bias, shape 1). The same arithmetic as
/// `tools/flower/bedside_fl/bedside_fl/client_app.py`, in `f64`, returned as `f32`.
pub struct LinearTrainer {
    x: Vec<Vec<f64>>,
    y: Vec<f64>,
}

impl LinearTrainer {
    /// Reads a CSV with a header; the last column is the 0/1 label.
    pub fn from_csv(path: &Path) -> Result<Self, FederateError> {
        let err = |what: String| FederateError::Data(format!("{}: {what}", path.display()));
        let mut reader = csv::Reader::from_path(path).map_err(|e| err(e.to_string()))?;
        let mut x = Vec::new();
        let mut y = Vec::new();
        for (row, record) in reader.records().enumerate() {
            let record = record.map_err(|e| err(e.to_string()))?;
            let values: Vec<f64> = record
                .iter()
                .map(|v| v.trim().parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|_| err(format!("row {} is not numeric", row + 1)))?;
            let Some((label, features)) = values.split_last() else {
                return Err(err(format!("row {} is empty", row + 1)));
            };
            x.push(features.to_vec());
            y.push(*label);
        }
        if y.is_empty() {
            return Err(err("no rows".into()));
        }
        Ok(LinearTrainer { x, y })
    }

    /// From rows in memory.
    pub fn new(x: Vec<Vec<f64>>, y: Vec<f64>) -> Self {
        LinearTrainer { x, y }
    }

    fn params(&self, global: &[(String, Tensor)]) -> Result<(Vec<f64>, f64), FederateError> {
        let get = |name: &str| {
            global
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, t)| &t.data)
                .ok_or_else(|| FederateError::Data(format!("model has no array `{name}`")))
        };
        let w: Vec<f64> = get("w")?.iter().map(|v| f64::from(*v)).collect();
        let b = get("b")?
            .first()
            .map(|v| f64::from(*v))
            .ok_or_else(|| FederateError::Data("`b` is empty".into()))?;
        if self.x.iter().any(|r| r.len() != w.len()) {
            return Err(FederateError::Data(format!(
                "model has {} features, data rows differ",
                w.len()
            )));
        }
        Ok((w, b))
    }

    /// Mean log-loss and gradient at (w, b), with the proximal term towards (w0, b0).
    fn loss_grad(&self, w: &[f64], b: f64, mu: f64, w0: &[f64], b0: f64) -> (f64, Vec<f64>, f64) {
        let n = self.y.len() as f64;
        let mut gw = vec![0.0; w.len()];
        let mut gb = 0.0;
        let mut loss = 0.0;
        for (row, y) in self.x.iter().zip(&self.y) {
            let z: f64 = row.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() + b;
            let p = 1.0 / (1.0 + (-z).exp());
            loss -= y * (p + 1e-12).ln() + (1.0 - y) * (1.0 - p + 1e-12).ln();
            let r = (p - y) / n;
            for (g, a) in gw.iter_mut().zip(row) {
                *g += a * r;
            }
            gb += r;
        }
        for ((g, wi), w0i) in gw.iter_mut().zip(w).zip(w0) {
            *g += mu * (wi - w0i);
        }
        gb += mu * (b - b0);
        (loss / n, gw, gb)
    }
}

/// A random stream that differs between sites and runs (clock and process id), for noise
/// that must not coincide across sites.
fn site_stream() -> bedside_core::rng::Rng {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    bedside_core::rng::Rng::seed_from(nanos ^ (u64::from(std::process::id()) << 32))
}

impl Trainer for LinearTrainer {
    fn train(
        &mut self,
        global: &[(String, Tensor)],
        config: &TrainConfig,
    ) -> Result<TrainOutput, FederateError> {
        let (w0, b0) = self.params(global)?;
        let lr = config.lr.unwrap_or(0.01);
        let (mut w, mut b) = (w0.clone(), b0);
        let mut loss = 0.0;
        for _ in 0..config.local_epochs {
            let (l, gw, gb) = self.loss_grad(&w, b, config.proximal_mu, &w0, b0);
            loss = l;
            for (wi, g) in w.iter_mut().zip(&gw) {
                *wi -= lr * g;
            }
            b -= lr * gb;
        }
        let mut arrays = vec![
            (
                "w".into(),
                Tensor::vector(w.iter().map(|v| *v as f32).collect()),
            ),
            ("b".into(), Tensor::vector(vec![b as f32])),
        ];
        // Arrays this model does not train (e.g. a frozen block) go back unchanged, or with
        // noise when the instruction asks for it.
        let mut noise = (config.frozen_noise > 0.0).then(site_stream);
        arrays.extend(
            global
                .iter()
                .filter(|(k, _)| k != "w" && k != "b")
                .map(|(k, t)| {
                    let mut t = t.clone();
                    if let Some(rng) = noise.as_mut() {
                        for v in t.data.iter_mut() {
                            *v += (rng.normal() * config.frozen_noise) as f32;
                        }
                    }
                    (k.clone(), t)
                }),
        );
        Ok(TrainOutput {
            arrays,
            num_examples: self.y.len() as u64,
            metrics: vec![("train-loss".into(), loss)],
            base: None,
        })
    }

    fn evaluate(
        &mut self,
        global: &[(String, Tensor)],
    ) -> Result<(u64, Vec<(String, f64)>), FederateError> {
        let (w, b) = self.params(global)?;
        let (loss, _, _) = self.loss_grad(&w, b, 0.0, &w, b);
        Ok((self.y.len() as u64, vec![("eval-loss".into(), loss)]))
    }

    /// Rows, label prevalence and per-feature mean and standard deviation.
    fn statistics(&mut self) -> Result<Statistics, FederateError> {
        let n = self.y.len() as f64;
        let positive = self.y.iter().filter(|&&v| v > 0.5).count() as f64;
        let mut values = vec![("prevalence.label=1".to_string(), vec![positive / n])];
        let width = self.x.first().map_or(0, Vec::len);
        for j in 0..width {
            let (mut s, mut s2) = (0.0, 0.0);
            for row in &self.x {
                s += row[j];
                s2 += row[j] * row[j];
            }
            let mean = s / n;
            values.push((format!("feature{j}.mean"), vec![mean]));
            values.push((
                format!("feature{j}.sd"),
                vec![(s2 / n - mean * mean).max(0.0).sqrt()],
            ));
        }
        Ok(Statistics {
            count: self.y.len() as u64,
            values,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradient_descent_lowers_the_loss() {
        let x: Vec<Vec<f64>> = (0..40).map(|i| vec![(i as f64 - 20.0) / 10.0]).collect();
        let y: Vec<f64> = x.iter().map(|r| f64::from(r[0] > 0.0)).collect();
        let mut t = LinearTrainer::new(x, y);
        let global = vec![
            ("w".to_string(), Tensor::vector(vec![0.0])),
            ("b".to_string(), Tensor::vector(vec![0.0])),
        ];
        let (_, before) = t.evaluate(&global).expect("eval");
        let cfg = TrainConfig {
            server_round: 1,
            local_epochs: 20,
            lr: Some(0.5),
            proximal_mu: 0.0,
            normalization: None,
            frozen_noise: 0.0,
        };
        let out = t.train(&global, &cfg).expect("train");
        let (_, after) = t.evaluate(&out.arrays).expect("eval");
        assert!((before[0].1 - std::f64::consts::LN_2).abs() < 1e-9);
        assert!(after[0].1 < before[0].1 - 0.1);
        assert!(out.arrays[0].1.data[0] > 0.0);
    }
}
