#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The annotation model through the REST API: schema checks, physical units on phantom files
//! (compared with values worked out by hand from the files' own calibration, read with
//! dicom-rs), versions, blinding, masks and exports.

mod common;

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use bedside_annotate::api::AuthConfig;
use common::*;
use serde_json::{Value, json};

struct Setup {
    f: Fixture,
    root: Session,
    ann1: Session,
    ann2: Session,
    rev: Session,
    view: Session,
    pid: i64,
    inst: Instance,
}

async fn setup(blinded: bool) -> Setup {
    let f = fixture(
        &[
            ("root", true),
            ("ann1", false),
            ("ann2", false),
            ("rev", false),
            ("view", false),
        ],
        AuthConfig::default(),
    );
    let root = login(&f.app, "root").await;
    let r = call(
        &f.app,
        Method::POST,
        "/api/projects",
        Some(&root),
        Some(json!({"name": "p", "blinded": blinded, "schema": schema()})),
    )
    .await;
    let pid = r.json["id"].as_i64().unwrap();
    let inst = instances().into_iter().next().unwrap();
    call(
        &f.app,
        Method::POST,
        &format!("/api/projects/{pid}/studies"),
        Some(&root),
        Some(json!({"study_instance_uid": inst.study})),
    )
    .await;
    for (u, role) in [
        ("ann1", "annotator"),
        ("ann2", "annotator"),
        ("rev", "reviewer"),
        ("view", "viewer"),
    ] {
        call(
            &f.app,
            Method::PUT,
            &format!("/api/projects/{pid}/members/{u}"),
            Some(&root),
            Some(json!({"role": role})),
        )
        .await;
        if role == "annotator" {
            call(
                &f.app,
                Method::PUT,
                &format!("/api/projects/{pid}/studies/{}/assignees/{u}", inst.study),
                Some(&root),
                None,
            )
            .await;
        }
    }
    let (ann1, ann2, rev, view) = (
        login(&f.app, "ann1").await,
        login(&f.app, "ann2").await,
        login(&f.app, "rev").await,
        login(&f.app, "view").await,
    );
    Setup {
        f,
        root,
        ann1,
        ann2,
        rev,
        view,
        pid,
        inst,
    }
}

fn url(s: &Setup) -> String {
    format!(
        "/api/projects/{}/studies/{}/annotations",
        s.pid, s.inst.study
    )
}

fn on_frame(s: &Setup, frame: i64, kind: &str, name: &str, payload: Value) -> Value {
    json!({"series_instance_uid": s.inst.series, "sop_instance_uid": s.inst.sop, "frame": frame,
           "kind": kind, "name": name, "payload": payload})
}

fn quantity(a: &Value, q: &str) -> (f64, String) {
    let v = a["measurement"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["quantity"] == q)
        .unwrap();
    (
        v["value"].as_f64().unwrap(),
        v["unit"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn measurements_use_the_ultrasound_region_calibration() {
    let s = setup(false).await;
    let i = &s.inst;
    // Points inside the region (its corners come from the file).
    let [x0, y0, x1, y1] = i.region;
    // The small phantom's region is about 11 × 8 px.
    assert!(
        x1 - x0 >= 10.0 && y1 - y0 >= 8.0,
        "region too small for the test: {:?}",
        i.region
    );
    let (px, py) = (x0, y0);
    // A 6 px by 8 px step: 10 px along the diagonal when the calibration is isotropic.
    let r = call(
        &s.f.app,
        Method::POST,
        &url(&s),
        Some(&s.ann1),
        Some(on_frame(
            &s,
            2,
            "length",
            "LVIDd",
            json!({"points": [[px, py], [px + 6.0, py + 8.0]]}),
        )),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json);
    let a = &r.json["annotation"];
    assert_eq!(a["frame"], 2);
    assert_eq!(a["author"], "ann1");
    assert_eq!(a["measurement"]["calibration"], "UltrasoundRegion");
    let (v, unit) = quantity(a, "length");
    let dx = i.delta_x_cm * 10.0;
    let dy = i.delta_y_cm * 10.0;
    let want = ((6.0 * dx).powi(2) + (8.0 * dy).powi(2)).sqrt();
    assert_eq!(unit, "mm");
    assert!((v - want).abs() < 1e-9, "{v} vs {want}");
    if (dx - dy).abs() < 1e-12 {
        assert!((v - 10.0 * dx).abs() < 1e-9);
    }
    // A 10 × 8 px rectangle: 80 px² → 80 · dx · dy mm², perimeter 2 · (10 dx + 8 dy).
    let rect =
        json!({"points": [[px, py], [px + 10.0, py], [px + 10.0, py + 8.0], [px, py + 8.0]]});
    let r = call(
        &s.f.app,
        Method::POST,
        &url(&s),
        Some(&s.ann1),
        Some(on_frame(&s, 1, "area", "LV area", rect.clone())),
    )
    .await;
    let (area, unit) = quantity(&r.json["annotation"], "area");
    assert_eq!(unit, "mm2");
    assert!((area - 80.0 * dx * dy).abs() < 1e-9);
    let r = call(
        &s.f.app,
        Method::POST,
        &url(&s),
        Some(&s.ann1),
        Some(on_frame(&s, 1, "polygon", "RV outline", rect)),
    )
    .await;
    let (per, _) = quantity(&r.json["annotation"], "perimeter");
    assert!((per - 2.0 * (10.0 * dx + 8.0 * dy)).abs() < 1e-9);
    // Ellipse with radii 4 and 3 px: π · 4dx · 3dy.
    let r = call(
        &s.f.app,
        Method::POST,
        &url(&s),
        Some(&s.ann1),
        Some(on_frame(
            &s,
            1,
            "ellipse",
            "LA",
            json!({"center": [px + 5.0, py + 4.0], "radii": [4, 3]}),
        )),
    )
    .await;
    let (area, _) = quantity(&r.json["annotation"], "area");
    assert!((area - std::f64::consts::PI * 4.0 * dx * 3.0 * dy).abs() < 1e-9);
    // Outside the region the same segment is not calibrated: pixels.
    let r = call(
        &s.f.app,
        Method::POST,
        &url(&s),
        Some(&s.ann1),
        Some(on_frame(
            &s,
            1,
            "length",
            "LVIDd",
            json!({"points": [[1, 1], [7, 9]]}),
        )),
    )
    .await;
    assert_eq!(
        quantity(&r.json["annotation"], "length"),
        (10.0, "px".to_string())
    );
    // A mask of 37 pixels: 37 · dx · dy mm²; its bytes come back unchanged.
    let mut raw = vec![0u8; (i.rows * i.columns) as usize];
    for k in 0..37 {
        raw[k * 3] = 1;
    }
    let data = base64::engine::general_purpose::STANDARD.encode(&raw);
    let r = call(
        &s.f.app,
        Method::POST,
        &url(&s),
        Some(&s.ann1),
        Some(on_frame(
            &s,
            3,
            "mask",
            "LV cavity",
            json!({"rows": i.rows, "columns": i.columns, "data": data}),
        )),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json);
    let mask = &r.json["annotation"];
    assert!(
        mask["payload"].get("data").is_none(),
        "pixels are not echoed"
    );
    let (area, _) = quantity(mask, "area");
    assert!((area - 37.0 * dx * dy).abs() < 1e-9);
    let id = mask["id"].as_str().unwrap();
    let r = request(
        &s.f.app,
        Method::GET,
        &format!("{}/{id}/mask", url(&s)),
        Some(&s.rev),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes, raw);
    // Stored compressed: the row's blob is much smaller than the raw mask.
    let stored =
        s.f.scalar("SELECT length(mask) FROM annotations WHERE id = $1", id) as usize;
    assert!(stored * 4 < raw.len(), "{stored} vs {}", raw.len());
}

#[tokio::test]
async fn schema_and_location_are_enforced() {
    let s = setup(false).await;
    let u = url(&s);
    let bad: Vec<(Value, &str)> = vec![
        (
            on_frame(&s, 1, "label", "view", json!({"values": ["A4C"]})),
            "view is series-level",
        ),
        (
            json!({"series_instance_uid": s.inst.series, "kind": "label", "name": "view", "payload": {"values": ["A5C"]}}),
            "not an option",
        ),
        (
            json!({"series_instance_uid": s.inst.series, "kind": "label", "name": "view", "payload": {"values": ["A4C", "A2C"]}}),
            "single choice",
        ),
        (
            json!({"kind": "label", "name": "nope", "payload": {"values": ["good"]}}),
            "unknown label",
        ),
        (
            on_frame(
                &s,
                1,
                "area",
                "LVIDd",
                json!({"points": [[1, 1], [2, 2], [3, 1]]}),
            ),
            "wrong tool",
        ),
        (
            on_frame(
                &s,
                s.inst.frames + 1,
                "length",
                "LVIDd",
                json!({"points": [[1, 1], [2, 2]]}),
            ),
            "frame past the end",
        ),
        (
            on_frame(
                &s,
                0,
                "length",
                "LVIDd",
                json!({"points": [[1, 1], [2, 2]]}),
            ),
            "frame 0",
        ),
        (
            on_frame(
                &s,
                1,
                "length",
                "LVIDd",
                json!({"points": [[1, 1], [2, 1e9]]}),
            ),
            "outside the image",
        ),
        (
            on_frame(
                &s,
                1,
                "mask",
                "LV cavity",
                json!({"rows": 2, "columns": 2, "data": "AAAAAA=="}),
            ),
            "mask size",
        ),
        (
            json!({"series_instance_uid": "1.2.3", "kind": "label", "name": "view", "payload": {"values": ["A4C"]}}),
            "series of another study",
        ),
    ];
    for (body, why) in bad {
        let r = call(&s.f.app, Method::POST, &u, Some(&s.ann1), Some(body)).await;
        assert!(
            r.status == StatusCode::UNPROCESSABLE_ENTITY || r.status == StatusCode::NOT_FOUND,
            "{why}: {} {:?}",
            r.status,
            r.json
        );
    }
    let r = request(
        &s.f.app,
        Method::POST,
        &u,
        Some(&s.ann1),
        Some(("application/json", b"{not json".to_vec())),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Good ones at each scope.
    for body in [
        json!({"kind": "label", "name": "quality", "payload": {"values": ["good"]}}),
        json!({"series_instance_uid": s.inst.series, "kind": "label", "name": "view", "payload": {"values": ["A4C"]}}),
        on_frame(
            &s,
            1,
            "label",
            "findings",
            json!({"values": ["effusion", "thrombus"]}),
        ),
    ] {
        let r = call(&s.f.app, Method::POST, &u, Some(&s.ann1), Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json);
    }
    // Invalid schemas are refused.
    let r = call(&s.f.app, Method::PATCH, &format!("/api/projects/{}", s.pid), Some(&s.root),
        Some(json!({"schema": {"labels": [{"name": "x", "choice": "single", "scope": "study", "options": []}]}}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn stale_versions_are_refused_with_the_current_state() {
    let s = setup(false).await;
    let u = url(&s);
    let body = json!({"id": "client-chosen-1", "kind": "label", "name": "quality", "payload": {"values": ["good"]}});
    let r = call(
        &s.f.app,
        Method::POST,
        &u,
        Some(&s.ann1),
        Some(body.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // A retried creation (lost acknowledgement) does not create a second annotation.
    let r = call(
        &s.f.app,
        Method::POST,
        &u,
        Some(&s.ann1),
        Some(body.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["annotation"]["version"], 1);
    let r = call(&s.f.app, Method::POST, &u, Some(&s.ann2), Some(body)).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "someone else's id");
    let r = call(
        &s.f.app,
        Method::PUT,
        &format!("{u}/client-chosen-1"),
        Some(&s.root),
        Some(json!({"version": 1, "payload": {"values": ["poor"]}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(
        &s.f.app,
        Method::PUT,
        &format!("{u}/client-chosen-1"),
        Some(&s.ann1),
        Some(json!({"version": 1, "payload": {"values": ["good"]}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json["code"], "conflict");
    assert_eq!(r.json["current"]["version"], 2);
    assert_eq!(r.json["current"]["payload"]["values"][0], "poor");
    assert_eq!(r.json["current"]["updated_by"], "root");
    let r = call(
        &s.f.app,
        Method::DELETE,
        &format!("{u}/client-chosen-1?version=2"),
        Some(&s.ann1),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = call(
        &s.f.app,
        Method::PUT,
        &format!("{u}/client-chosen-1"),
        Some(&s.ann1),
        Some(json!({"version": 3, "payload": {"values": ["good"]}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "deleted");
    assert_eq!(r.json["current"]["deleted"], true);
    let r = call(&s.f.app, Method::GET, &u, Some(&s.ann1), None).await;
    assert_eq!(r.json["annotations"].as_array().unwrap().len(), 0);
    assert_eq!(r.json["seq"], 3, "create, update, delete");
}

#[tokio::test]
async fn blinded_projects_hide_annotators_from_each_other() {
    let s = setup(true).await;
    let u = url(&s);
    let label = json!({"kind": "label", "name": "quality", "payload": {"values": ["good"]}});
    let r1 = call(
        &s.f.app,
        Method::POST,
        &u,
        Some(&s.ann1),
        Some(label.clone()),
    )
    .await;
    let id1 = r1.json["annotation"]["id"].as_str().unwrap().to_string();
    call(&s.f.app, Method::POST, &u, Some(&s.ann2), Some(label)).await;
    let authors = |r: &Reply| -> Vec<String> {
        let mut v: Vec<String> = r.json["annotations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["author"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        authors(&call(&s.f.app, Method::GET, &u, Some(&s.ann1), None).await),
        ["ann1"]
    );
    assert_eq!(
        authors(&call(&s.f.app, Method::GET, &u, Some(&s.ann2), None).await),
        ["ann2"]
    );
    assert_eq!(
        authors(&call(&s.f.app, Method::GET, &u, Some(&s.rev), None).await),
        ["ann1", "ann2"]
    );
    assert_eq!(
        authors(&call(&s.f.app, Method::GET, &u, Some(&s.root), None).await),
        ["ann1", "ann2"]
    );
    assert!(authors(&call(&s.f.app, Method::GET, &u, Some(&s.view), None).await).is_empty());
    // ann2 cannot even learn that ann1's annotation exists.
    let r = call(
        &s.f.app,
        Method::PUT,
        &format!("{u}/{id1}"),
        Some(&s.ann2),
        Some(json!({"version": 1, "payload": {"values": ["poor"]}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Nor reuse its id.
    let r = call(
        &s.f.app,
        Method::POST,
        &u,
        Some(&s.ann2),
        Some(
            json!({"id": id1, "kind": "label", "name": "quality", "payload": {"values": ["good"]}}),
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(r.json["current"].is_null());
}

#[tokio::test]
async fn exports_carry_units_frames_and_authors() {
    let s = setup(false).await;
    let u = url(&s);
    let [x0, y0, ..] = s.inst.region;
    call(
        &s.f.app,
        Method::POST,
        &u,
        Some(&s.ann1),
        Some(on_frame(
            &s,
            3,
            "length",
            "LVIDd",
            json!({"points": [[x0 + 1.0, y0 + 1.0], [x0 + 11.0, y0 + 1.0]]}),
        )),
    )
    .await;
    call(
        &s.f.app,
        Method::POST,
        &u,
        Some(&s.ann2),
        Some(on_frame(
            &s,
            2,
            "label",
            "findings",
            json!({"values": ["none"]}),
        )),
    )
    .await;
    let r = call(
        &s.f.app,
        Method::GET,
        &format!("/api/projects/{}/export?format=csv", s.pid),
        Some(&s.rev),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8(r.bytes).unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    let col = |row: &csv::StringRecord, name: &str| {
        row[headers.iter().position(|h| h == name).unwrap()].to_string()
    };
    let length = rows.iter().find(|r| col(r, "name") == "LVIDd").unwrap();
    assert_eq!(col(length, "frame"), "3");
    assert_eq!(col(length, "unit"), "mm");
    assert_eq!(col(length, "author"), "ann1");
    assert_eq!(col(length, "sop_instance_uid"), s.inst.sop);
    let v: f64 = col(length, "value").parse().unwrap();
    assert!((v - 10.0 * s.inst.delta_x_cm * 10.0).abs() < 1e-9);
    let label = rows.iter().find(|r| col(r, "name") == "findings").unwrap();
    assert_eq!(col(label, "values"), "none");
    assert_eq!(col(label, "frame"), "2");
    let r = call(
        &s.f.app,
        Method::GET,
        &format!("/api/projects/{}/export?format=json", s.pid),
        Some(&s.root),
        None,
    )
    .await;
    let list = r.json["annotations"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .all(|a| a["created"].as_str().unwrap().ends_with('Z'))
    );
}
