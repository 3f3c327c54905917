//! Renders a full report in headless Chromium and checks that every section and plot is shown
//! and that the browser reports no errors for the page.
//!
//! Needs Debian's `chromium` (or the binary named by `BEDSIDE_CHROMIUM`). Skips with a message when
//! it is missing, unless `BEDSIDE_REQUIRE_PEERS=1`, in which case a missing browser fails.

use std::path::PathBuf;
use std::process::Command;

use bedside_core::rng::Rng;
use bedside_eval::bootstrap::BootstrapOptions;
use bedside_eval::evaluate::{EvalSettings, evaluate};
use bedside_eval::input::{ColumnMap, load};
use bedside_eval::report::write_report;

fn chromium() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("BEDSIDE_CHROMIUM") {
        Some(p) => vec![PathBuf::from(p)],
        None => vec![
            "/usr/bin/chromium".into(),
            "/usr/bin/chromium-browser".into(),
        ],
    };
    if let Some(found) = candidates.into_iter().find(|p| p.exists()) {
        return Some(found);
    }
    if std::env::var("BEDSIDE_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("BEDSIDE_REQUIRE_PEERS=1 but chromium was not found (apt-get install chromium)");
    }
    eprintln!("skipping: chromium not found (apt-get install chromium, or set BEDSIDE_CHROMIUM)");
    None
}

fn synthetic_table(dir: &std::path::Path) -> PathBuf {
    let mut rng = Rng::seed_from(42);
    let mut csv = String::from("id,patient,prob,label,time,event,lvef,lvef_pred,sex,site\n");
    for i in 0..300 {
        let z = rng.normal();
        let p = 1.0 / (1.0 + (-1.5 * z).exp());
        let y = rng.uniform() < 1.0 / (1.0 + (-z).exp());
        let t = (-rng.uniform().ln() * 100.0 / (0.5 * z).exp()).ceil();
        let c = (-rng.uniform().ln() * 150.0).ceil();
        let truth = 55.0 + 8.0 * rng.normal();
        let sex = if rng.bernoulli(0.5) { "F" } else { "M" };
        let site = ["A", "B", "C <&>"][rng.below(3) as usize];
        csv.push_str(&format!(
            "{i},p{},{p:.5},{},{},{},{truth:.2},{:.2},{sex},\"{site}\"\n",
            i / 3,
            u8::from(y),
            t.min(c),
            u8::from(t <= c),
            truth + 3.0 * rng.normal()
        ));
    }
    let path = dir.join("table.csv");
    std::fs::write(&path, csv).expect("write table");
    path
}

#[test]
fn report_renders_in_headless_chromium() {
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = synthetic_table(dir.path());
    let map = ColumnMap {
        patient: Some("patient".into()),
        score: Some("prob".into()),
        label: Some("label".into()),
        time: Some("time".into()),
        event: Some("event".into()),
        risk: Some("prob".into()),
        target: Some("lvef".into()),
        predicted: Some("lvef_pred".into()),
        groups: vec!["sex".into(), "site".into()],
        ..Default::default()
    };
    let table = load(&path, None, &map).unwrap();
    let settings = EvalSettings {
        bootstrap: BootstrapOptions {
            replicates: 50,
            ..Default::default()
        },
        ..Default::default()
    };
    let report = evaluate(&table, &settings).unwrap();
    let (html, _) = write_report(&report, dir.path(), "evaluation", "Browser check").unwrap();
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("<title>Browser check</title>"),
        "page did not load"
    );
    for id in [
        "summary",
        "classification",
        "regression",
        "survival",
        "subgroups",
        "uncertainty",
        "settings",
    ] {
        assert!(
            dom.contains(&format!("<section id=\"{id}\">")),
            "section {id} not shown"
        );
    }
    let svgs = dom.matches("<svg").count();
    // ROC, PR, calibration, Kaplan–Meier, referral, and one forest plot per grouping (3)
    assert!(svgs >= 8, "only {svgs} plots rendered");
    assert!(
        dom.contains("C &lt;&amp;&gt;"),
        "group names must be escaped"
    );
    let log = String::from_utf8_lossy(&out.stderr);
    for line in log.lines() {
        let l = line.to_ascii_lowercase();
        let page_error = (l.contains("console") && l.contains("error"))
            || l.contains("uncaught")
            || l.contains("net::err");
        assert!(!page_error, "browser reported a page error: {line}");
    }
}
