//! Per-group rates, MetricFrame summaries and aggregate fairness metrics compared with Fairlearn.

mod common;

use bedside_eval::classification::compute_auroc;
use bedside_eval::fairness::{GroupSummary, Groups, compute_fairness, compute_group_rates};
use common::*;

const TOL: f64 = 1e-8;

/// Labels, predictions, scores, sex, site.
type FairlearnData = (Vec<bool>, Vec<bool>, Vec<f64>, Vec<String>, Vec<String>);

/// One grouping: golden key, column names, column values.
type Grouping<'a> = (&'a str, Vec<&'a str>, Vec<Vec<String>>);

fn load() -> FairlearnData {
    let t = Table::read("fairlearn_data.csv");
    (
        t.bools("y_true"),
        t.bools("y_pred"),
        t.f64s("score"),
        t.strings("sex"),
        t.strings("site"),
    )
}

#[test]
fn metric_frames_match_fairlearn() {
    let g = golden_json("golden_fairlearn.json");
    let (y, p, _, sex, site) = load();
    let cases: [Grouping<'_>; 3] = [
        ("metricframe_sex", vec!["sex"], vec![sex.clone()]),
        ("metricframe_site", vec!["site"], vec![site.clone()]),
        (
            "metricframe_sex_x_site",
            vec!["sex", "site"],
            vec![sex.clone(), site.clone()],
        ),
    ];
    for (key, cols, values) in cases {
        let cols: Vec<String> = cols.iter().map(|s| s.to_string()).collect();
        let groups = Groups::from_columns(&cols, &values).unwrap();
        let gold = &g[key];
        let rows = gold["by_group"].as_array().unwrap();
        assert_eq!(groups.len(), rows.len(), "{key}: number of groups");
        let (overall, by) = compute_group_rates(&y, &p, &groups).unwrap();
        for (gi, row) in rows.iter().enumerate() {
            for (c, col) in cols.iter().enumerate() {
                assert_eq!(
                    row[col].as_str().unwrap(),
                    groups.keys[gi][c],
                    "{key}: group order"
                );
            }
        }
        for (k, (name, _)) in overall.named().iter().enumerate() {
            close(
                overall.named()[k].1,
                f(&gold["overall"][name]),
                TOL,
                &format!("{key} overall {name}"),
            );
            for (gi, row) in rows.iter().enumerate() {
                // by_group values are rounded to 10 decimals in the golden file
                close(
                    by[gi].named()[k].1,
                    f(&row[name]),
                    1e-9,
                    &format!("{key} {name} group {gi}"),
                );
            }
            let s = GroupSummary::new(
                overall.named()[k].1,
                by.iter().map(|r| r.named()[k].1).collect(),
            );
            close(
                s.difference,
                f(&gold["difference_between_groups"][name]),
                TOL,
                &format!("{key} difference {name}"),
            );
            close(
                s.difference_to_overall,
                f(&gold["difference_to_overall"][name]),
                TOL,
                &format!("{key} to_overall {name}"),
            );
            close(
                s.ratio,
                f(&gold["ratio_between_groups"][name]),
                TOL,
                &format!("{key} ratio {name}"),
            );
            close(
                s.group_min,
                f(&gold["group_min"][name]),
                TOL,
                &format!("{key} min {name}"),
            );
            close(
                s.group_max,
                f(&gold["group_max"][name]),
                TOL,
                &format!("{key} max {name}"),
            );
        }
    }
}

#[test]
fn aggregate_fairness_metrics_match_fairlearn() {
    let g = golden_json("golden_fairlearn.json");
    let (y, p, _, sex, site) = load();
    let cases = [
        ("sex", vec!["sex".to_string()], vec![sex.clone()]),
        ("site", vec!["site".to_string()], vec![site.clone()]),
        (
            "sex_x_site",
            vec!["sex".to_string(), "site".to_string()],
            vec![sex, site],
        ),
    ];
    for (key, cols, values) in cases {
        let groups = Groups::from_columns(&cols, &values).unwrap();
        let m = compute_fairness(&y, &p, &groups).unwrap();
        let gold = &g["aggregate_metrics"][key];
        let pairs = [
            (
                "demographic_parity_difference",
                m.demographic_parity_difference,
            ),
            ("demographic_parity_ratio", m.demographic_parity_ratio),
            (
                "demographic_parity_difference_to_overall",
                m.demographic_parity_difference_to_overall,
            ),
            ("equalized_odds_difference", m.equalized_odds_difference),
            (
                "equalized_odds_difference_agg_mean",
                m.equalized_odds_difference_mean,
            ),
            ("equalized_odds_ratio", m.equalized_odds_ratio),
            (
                "equal_opportunity_difference",
                m.equal_opportunity_difference,
            ),
            ("equal_opportunity_ratio", m.equal_opportunity_ratio),
        ];
        for (name, got) in pairs {
            close(got, f(&gold[name]), TOL, &format!("{key} {name}"));
        }
    }
}

#[test]
fn auroc_by_site_matches_scikit_learn() {
    let g = golden_json("golden_fairlearn.json");
    let (y, _, score, _, site) = load();
    close(
        compute_auroc(&y, &score).unwrap(),
        f(&g["auc_by_site"]["overall"]),
        TOL,
        "overall AUROC",
    );
    let groups = Groups::from_columns(&["site".to_string()], &[site]).unwrap();
    for (gi, rows) in groups.members.iter().enumerate() {
        let yy: Vec<bool> = rows.iter().map(|&i| y[i]).collect();
        let ss: Vec<f64> = rows.iter().map(|&i| score[i]).collect();
        let want = f(&g["auc_by_site"]["by_group"][&groups.keys[gi][0]]);
        close(compute_auroc(&yy, &ss).unwrap(), want, TOL, "AUROC by site");
    }
}
