//! What a site releases of its data-quality statistics: nothing below the minimum count,
//! and no small cells.

use crate::FederateError;
use crate::agent::keys;
use crate::config::StatsConfig;
use crate::objects::MetricValue;
use crate::trainer::Statistics;

/// Metric record of a `query` reply: `num-examples`, `suppressed-cells` and every value of
/// `stats` (lists as float lists). Refuses when the site has fewer than `min_count`
/// examples; counts (keys ending in `.counts`, `count` or starting with `missing.`,
/// `split.`) between 1 and `min_cell − 1` are released as 0.
pub fn release(
    stats: &Statistics,
    cfg: &StatsConfig,
) -> Result<Vec<(String, MetricValue)>, FederateError> {
    if stats.count < cfg.min_count {
        return Err(FederateError::Refused(format!(
            "the site has fewer than {} examples and releases no statistics",
            cfg.min_count
        )));
    }
    let is_count = |k: &str| {
        k.ends_with(".counts")
            || k.ends_with("count")
            || k.starts_with("missing.")
            || k.starts_with("split.")
            || k == "failures"
            || k == "unlabelled"
    };
    let small = |v: f64| v > 0.0 && v < cfg.min_cell as f64;
    let mut suppressed = 0i64;
    let mut out = vec![(
        keys::NUM_EXAMPLES.to_string(),
        MetricValue::Int(stats.count as i64),
    )];
    for (k, values) in &stats.values {
        let mut values = values.clone();
        if is_count(k) {
            for v in &mut values {
                if small(*v) {
                    *v = 0.0;
                    suppressed += 1;
                }
            }
        }
        let value = match values.as_slice() {
            [one] => MetricValue::Double(*one),
            _ => MetricValue::DoubleList(values),
        };
        out.push((k.clone(), value));
    }
    out.push(("suppressed-cells".into(), MetricValue::Int(suppressed)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_sites_answer_nothing_and_small_cells_are_zeroed() {
        let cfg = StatsConfig {
            min_count: 10,
            min_cell: 3,
        };
        let mut stats = Statistics {
            count: 9,
            values: vec![
                ("frame_rate.counts".into(), vec![0.0, 1.0, 2.0, 3.0, 4.0]),
                ("frame_rate.mean".into(), vec![2.0]),
                ("missing.age".into(), vec![2.0]),
            ],
        };
        assert!(matches!(
            release(&stats, &cfg),
            Err(FederateError::Refused(_))
        ));
        stats.count = 10;
        let out = release(&stats, &cfg).expect("released");
        let get = |k: &str| out.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("frame_rate.counts"),
            Some(MetricValue::DoubleList(vec![0.0, 0.0, 0.0, 3.0, 4.0]))
        );
        // A mean is not a count: released as it is.
        assert_eq!(get("frame_rate.mean"), Some(MetricValue::Double(2.0)));
        assert_eq!(get("missing.age"), Some(MetricValue::Double(0.0)));
        assert_eq!(get("suppressed-cells"), Some(MetricValue::Int(3)));
        assert_eq!(get("num-examples"), Some(MetricValue::Int(10)));
    }
}
