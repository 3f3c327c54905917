#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Accounts, sessions, CSRF and roles, in process: every role is refused what it may not do
//! (401 without a session, 403 with the wrong role) across the API and DICOMweb.

mod common;

use std::collections::{BTreeSet, HashMap};

use axum::http::{Method, StatusCode, header};
use bedside_annotate::api::AuthConfig;
use common::*;
use serde_json::{Value, json};

const ROLES: &[&str] = &["adm", "ann1", "rev", "view", "outsider"];

struct Setup {
    f: Fixture,
    s: HashMap<&'static str, Session>,
    pid: i64,
    a: String,
    b: String,
    c: String,
}

async fn setup(blinded: bool) -> Setup {
    let users: Vec<(&str, bool)> = vec![
        ("root", true),
        ("adm", false),
        ("ann1", false),
        ("ann2", false),
        ("rev", false),
        ("view", false),
        ("outsider", false),
        ("spare", false),
    ];
    let f = fixture(&users, AuthConfig::default());
    let mut s = HashMap::new();
    for (u, _) in &users {
        s.insert(*u, login(&f.app, u).await);
    }
    let root = &s["root"];
    let r = call(
        &f.app,
        Method::POST,
        "/api/projects",
        Some(root),
        Some(json!({"name": "echo", "blinded": blinded, "schema": schema()})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json);
    let pid = r.json["id"].as_i64().unwrap();
    for (u, role) in [
        ("adm", "admin"),
        ("ann1", "annotator"),
        ("ann2", "annotator"),
        ("rev", "reviewer"),
        ("view", "viewer"),
    ] {
        let r = call(
            &f.app,
            Method::PUT,
            &format!("/api/projects/{pid}/members/{u}"),
            Some(root),
            Some(json!({"role": role})),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.json);
    }
    assert!(f.studies.len() >= 3);
    let (a, b, c) = (
        f.studies[0].clone(),
        f.studies[1].clone(),
        f.studies[2].clone(),
    );
    for study in [&a, &b] {
        let r = call(
            &f.app,
            Method::POST,
            &format!("/api/projects/{pid}/studies"),
            Some(&s["adm"]),
            Some(json!({"study_instance_uid": study})),
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{:?}", r.json);
    }
    for u in ["ann1", "ann2"] {
        let r = call(
            &f.app,
            Method::PUT,
            &format!("/api/projects/{pid}/studies/{a}/assignees/{u}"),
            Some(&s["adm"]),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
    }
    Setup { f, s, pid, a, b, c }
}

fn stow_body(path: &std::path::Path) -> (String, Vec<u8>) {
    let boundary = "bedside-test-boundary";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(&std::fs::read(path).unwrap());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
        body,
    )
}

#[tokio::test]
async fn every_role_is_refused_what_it_may_not_do() {
    let Setup { f, s, pid, a, b, c } = setup(false).await;
    let inst = instances().into_iter().find(|i| i.study == a).unwrap();
    let label = json!({"kind": "label", "name": "quality", "payload": {"values": ["good"]}});
    type Case = (String, Method, String, Option<Value>, Vec<&'static str>);
    let members = vec!["adm", "ann1", "rev", "view"];
    let cases: Vec<Case> = vec![
        (
            "read project".into(),
            Method::GET,
            format!("/api/projects/{pid}"),
            None,
            members.clone(),
        ),
        (
            "change project".into(),
            Method::PATCH,
            format!("/api/projects/{pid}"),
            Some(json!({"blinded": false})),
            vec!["adm"],
        ),
        (
            "list members".into(),
            Method::GET,
            format!("/api/projects/{pid}/members"),
            None,
            vec!["adm"],
        ),
        (
            "set member".into(),
            Method::PUT,
            format!("/api/projects/{pid}/members/spare"),
            Some(json!({"role": "viewer"})),
            vec!["adm"],
        ),
        (
            "add study".into(),
            Method::POST,
            format!("/api/projects/{pid}/studies"),
            Some(json!({"study_instance_uid": b})),
            vec!["adm"],
        ),
        (
            "assign".into(),
            Method::PUT,
            format!("/api/projects/{pid}/studies/{b}/assignees/spare"),
            None,
            vec!["adm"],
        ),
        (
            "list studies".into(),
            Method::GET,
            format!("/api/projects/{pid}/studies"),
            None,
            members.clone(),
        ),
        (
            "read assigned study".into(),
            Method::GET,
            format!("/api/projects/{pid}/studies/{a}/annotations"),
            None,
            members.clone(),
        ),
        (
            "read unassigned study".into(),
            Method::GET,
            format!("/api/projects/{pid}/studies/{b}/annotations"),
            None,
            vec!["adm", "rev", "view"],
        ),
        (
            "annotate".into(),
            Method::POST,
            format!("/api/projects/{pid}/studies/{a}/annotations"),
            Some(label.clone()),
            vec!["adm", "ann1"],
        ),
        (
            "annotate unassigned".into(),
            Method::POST,
            format!("/api/projects/{pid}/studies/{b}/annotations"),
            Some(label.clone()),
            vec!["adm"],
        ),
        (
            "audit".into(),
            Method::GET,
            format!("/api/projects/{pid}/audit"),
            None,
            vec!["adm"],
        ),
        (
            "export".into(),
            Method::GET,
            format!("/api/projects/{pid}/export?format=csv"),
            None,
            vec!["adm", "rev"],
        ),
        (
            "create project".into(),
            Method::POST,
            "/api/projects".into(),
            Some(json!({"name": "other"})),
            vec![],
        ),
        (
            "QIDO studies".into(),
            Method::GET,
            "/dicomweb/studies".into(),
            None,
            vec!["adm", "ann1", "rev", "view", "outsider"],
        ),
        (
            "QIDO series of study".into(),
            Method::GET,
            format!("/dicomweb/studies/{a}/series"),
            None,
            members.clone(),
        ),
        (
            "metadata assigned".into(),
            Method::GET,
            format!("/dicomweb/studies/{a}/metadata"),
            None,
            members.clone(),
        ),
        (
            "metadata unassigned".into(),
            Method::GET,
            format!("/dicomweb/studies/{b}/metadata"),
            None,
            vec!["adm", "rev", "view"],
        ),
        (
            "metadata outside project".into(),
            Method::GET,
            format!("/dicomweb/studies/{c}/metadata"),
            None,
            vec![],
        ),
        (
            "instance retrieve".into(),
            Method::GET,
            format!(
                "/dicomweb/studies/{a}/series/{}/instances/{}",
                inst.series, inst.sop
            ),
            None,
            members.clone(),
        ),
    ];
    let mut checked = 0;
    for (name, method, uri, body, allowed) in &cases {
        let r = call(&f.app, method.clone(), uri, None, body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{name} without a session"
        );
        for role in ROLES {
            let r = call(&f.app, method.clone(), uri, Some(&s[role]), body.clone()).await;
            if allowed.contains(role) {
                assert!(
                    r.status.is_success(),
                    "{name} as {role}: {} {:?}",
                    r.status,
                    r.json
                );
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::FORBIDDEN,
                    "{name} as {role}: {:?}",
                    r.json
                );
            }
            checked += 1;
        }
    }
    // STOW-RS: admins only.
    let (ct, body) = stow_body(&inst.path);
    let r = request(
        &f.app,
        Method::POST,
        "/dicomweb/studies",
        None,
        Some((&ct, body.clone())),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    for role in ROLES {
        let r = request(
            &f.app,
            Method::POST,
            "/dicomweb/studies",
            Some(&s[role]),
            Some((&ct, body.clone())),
        )
        .await;
        if *role == "adm" {
            assert_eq!(
                r.status,
                StatusCode::OK,
                "STOW as admin: {}",
                String::from_utf8_lossy(&r.bytes)
            );
        } else {
            assert_eq!(r.status, StatusCode::FORBIDDEN, "STOW as {role}");
        }
    }
    assert!(checked >= 100, "{checked}");
    // The superuser creates projects; everyone else was refused above.
    let r = call(
        &f.app,
        Method::POST,
        "/api/projects",
        Some(&s["root"]),
        Some(json!({"name": "other"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn annotators_change_only_their_own_annotations() {
    let Setup { f, s, pid, a, .. } = setup(false).await;
    let url = format!("/api/projects/{pid}/studies/{a}/annotations");
    let body = json!({"kind": "label", "name": "quality", "payload": {"values": ["good"]}});
    let r = call(&f.app, Method::POST, &url, Some(&s["ann1"]), Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json);
    let id = r.json["annotation"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.json["annotation"]["author"], "ann1");
    assert_eq!(r.json["annotation"]["version"], 1);
    let change = json!({"version": 1, "payload": {"values": ["poor"]}});
    for role in ["ann2", "rev", "view", "outsider"] {
        let r = call(
            &f.app,
            Method::PUT,
            &format!("{url}/{id}"),
            Some(&s[role]),
            Some(change.clone()),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "update as {role}: {:?}",
            r.json
        );
        let r = call(
            &f.app,
            Method::DELETE,
            &format!("{url}/{id}?version=1"),
            Some(&s[role]),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "delete as {role}");
    }
    let r = call(
        &f.app,
        Method::PUT,
        &format!("{url}/{id}"),
        None,
        Some(change.clone()),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    // The author and the project admin may.
    let r = call(
        &f.app,
        Method::PUT,
        &format!("{url}/{id}"),
        Some(&s["ann1"]),
        Some(change),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    assert_eq!(r.json["annotation"]["version"], 2);
    let r = call(
        &f.app,
        Method::DELETE,
        &format!("{url}/{id}?version=2"),
        Some(&s["adm"]),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    assert_eq!(r.json["annotation"]["deleted"], true);
    assert_eq!(r.json["annotation"]["updated_by"], "adm");
}

#[tokio::test]
async fn dicomweb_searches_only_see_the_callers_studies() {
    let Setup { f, s, a, b, c, .. } = setup(false).await;
    let studies = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["0020000D"]["Value"][0].as_str().unwrap().to_string())
            .collect()
    };
    let set = |xs: &[&String]| xs.iter().map(|x| x.to_string()).collect::<BTreeSet<_>>();
    for (who, want) in [
        ("root", set(&[&a, &b, &c])),
        ("adm", set(&[&a, &b])),
        ("view", set(&[&a, &b])),
        ("ann1", set(&[&a])),
        ("outsider", set(&[])),
    ] {
        for level in ["studies", "series", "instances"] {
            let r = call(
                &f.app,
                Method::GET,
                &format!("/dicomweb/{level}"),
                Some(&s[who]),
                None,
            )
            .await;
            assert_eq!(r.status, StatusCode::OK, "{who} {level}");
            assert_eq!(studies(&r.json), want, "{who} {level}");
        }
    }
    // A caller's own StudyInstanceUID filter narrows within what they may see, never beyond.
    let r = call(
        &f.app,
        Method::GET,
        &format!("/dicomweb/studies?StudyInstanceUID={b}"),
        Some(&s["ann1"]),
        None,
    )
    .await;
    assert_eq!(studies(&r.json), BTreeSet::new());
    let r = call(
        &f.app,
        Method::GET,
        &format!("/dicomweb/studies?StudyInstanceUID={a}"),
        Some(&s["ann1"]),
        None,
    )
    .await;
    assert_eq!(studies(&r.json), set(&[&a]));
}

#[tokio::test]
async fn sessions_cookies_and_csrf() {
    let f = fixture(&[("u", false)], AuthConfig::default());
    // Wrong password and unknown user look the same.
    for (user, pw) in [("u", "wrong password!"), ("nobody", PASSWORD)] {
        let r = call(
            &f.app,
            Method::POST,
            "/api/login",
            None,
            Some(json!({"username": user, "password": pw})),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.headers.get(header::SET_COOKIE).is_none());
    }
    let r = call(
        &f.app,
        Method::POST,
        "/api/login",
        None,
        Some(json!({"username": "u", "password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let cookies: Vec<String> = r
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("bedside_session="))
        .unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(
            session.split("; ").any(|a| a == attr),
            "{session} lacks {attr}"
        );
    }
    assert!(!session.contains("Secure"), "no TLS here: {session}");
    let token = session
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("bedside_session=");
    assert_eq!(token.len(), 64, "256-bit token in hex");
    // The database keeps only a digest of the token.
    if f.postgres_url.is_none() {
        let raw = std::fs::read(f.data.path().join("annotate.sqlite")).unwrap();
        assert!(!raw.windows(token.len()).any(|w| w == token.as_bytes()));
    }
    assert_eq!(f.scalar("SELECT COUNT(*) FROM sessions", ""), 1);
    assert_eq!(
        f.scalar(
            "SELECT COUNT(*) FROM sessions WHERE token_sha256 = $1",
            token
        ),
        0
    );
    let csrf_cookie = cookies
        .iter()
        .find(|c| c.starts_with("bedside_csrf="))
        .unwrap();
    assert!(
        !csrf_cookie.contains("HttpOnly"),
        "the page must read the CSRF cookie"
    );
    let good = Session {
        cookie: session.split(';').next().unwrap().to_string(),
        csrf: r.json["csrf_token"].as_str().unwrap().to_string(),
    };
    assert!(csrf_cookie.starts_with(&format!("bedside_csrf={};", good.csrf)));
    let r = call(&f.app, Method::GET, "/api/me", Some(&good), None).await;
    assert_eq!(r.json["username"], "u");
    // Unsafe requests need the CSRF token; safe ones do not.
    let bad = Session {
        cookie: good.cookie.clone(),
        csrf: "0".repeat(64),
    };
    let r = call(&f.app, Method::POST, "/api/logout", Some(&bad), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let none = Session {
        cookie: good.cookie.clone(),
        csrf: String::new(),
    };
    let r = call(&f.app, Method::POST, "/api/logout", Some(&none), None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = call(&f.app, Method::GET, "/api/me", Some(&bad), None).await;
    assert_eq!(r.status, StatusCode::OK);
    // Logging out ends the session on the server, not only in the browser.
    let r = call(&f.app, Method::POST, "/api/logout", Some(&good), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(
        r.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .any(|c| c.to_str().unwrap().contains("Max-Age=0"))
    );
    let r = call(&f.app, Method::GET, "/api/me", Some(&good), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = call(&f.app, Method::GET, "/dicomweb/studies", Some(&good), None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sessions_expire_and_tls_marks_cookies_secure() {
    let f = fixture(
        &[("u", false)],
        AuthConfig {
            session_ttl_secs: 1,
            secure_cookies: true,
            ..AuthConfig::default()
        },
    );
    let r = call(
        &f.app,
        Method::POST,
        "/api/login",
        None,
        Some(json!({"username": "u", "password": PASSWORD})),
    )
    .await;
    let cookies: Vec<String> = r
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        cookies.iter().all(|c| c.split("; ").any(|a| a == "Secure")),
        "{cookies:?}"
    );
    let s = Session {
        cookie: cookies[0].split(';').next().unwrap().to_string(),
        csrf: r.json["csrf_token"].as_str().unwrap().to_string(),
    };
    assert_eq!(
        call(&f.app, Method::GET, "/api/me", Some(&s), None)
            .await
            .status,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        call(&f.app, Method::GET, "/api/me", Some(&s), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn every_change_is_audited() {
    let Setup { f, s, pid, a, .. } = setup(false).await;
    let url = format!("/api/projects/{pid}/studies/{a}/annotations");
    let r = call(
        &f.app,
        Method::POST,
        &url,
        Some(&s["ann1"]),
        Some(json!({"kind": "label", "name": "quality", "payload": {"values": ["good"]}})),
    )
    .await;
    let id = r.json["annotation"]["id"].as_str().unwrap().to_string();
    call(
        &f.app,
        Method::PUT,
        &format!("{url}/{id}"),
        Some(&s["ann1"]),
        Some(json!({"version": 1, "payload": {"values": ["poor"]}})),
    )
    .await;
    call(
        &f.app,
        Method::DELETE,
        &format!("{url}/{id}?version=2"),
        Some(&s["ann1"]),
        None,
    )
    .await;
    call(
        &f.app,
        Method::PATCH,
        &format!("/api/projects/{pid}"),
        Some(&s["adm"]),
        Some(json!({"blinded": true})),
    )
    .await;
    let r = call(
        &f.app,
        Method::GET,
        &format!("/api/projects/{pid}/audit"),
        Some(&s["adm"]),
        None,
    )
    .await;
    let rows = r.json.as_array().unwrap();
    let actions: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap(),
                r["user"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for want in [
        ("project.create", "root"),
        ("member.set", "root"),
        ("study.add", "adm"),
        ("study.assign", "adm"),
        ("annotation.create", "ann1"),
        ("annotation.update", "ann1"),
        ("annotation.delete", "ann1"),
        ("project.update", "adm"),
    ] {
        assert!(actions.contains(&want), "{want:?} missing from {actions:?}");
    }
    let update = rows
        .iter()
        .find(|r| r["action"] == "annotation.update")
        .unwrap();
    assert_eq!(update["detail"]["payload"]["values"][0], "poor");
    assert_eq!(update["detail"]["version"], 2);
}

async fn sign_in(app: &axum::Router, user: &str, password: &str) -> common::Reply {
    call(
        app,
        Method::POST,
        "/api/login",
        None,
        Some(json!({"username": user, "password": password})),
    )
    .await
}

#[tokio::test]
async fn failed_sign_ins_throttle_only_that_account() {
    let f = fixture(
        &[("u", false), ("v", false)],
        AuthConfig {
            login_free_failures: 3,
            login_base_delay_ms: 1_000,
            ..AuthConfig::default()
        },
    );
    for _ in 0..3 {
        let r = sign_in(&f.app, "u", "wrong password!").await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    // Now the account waits, even with the right password, and is told for how long.
    let r = sign_in(&f.app, "u", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers[header::RETRY_AFTER], "1");
    assert!(r.headers.get(header::SET_COOKIE).is_none());
    // The same name typed otherwise is the same account.
    let r = sign_in(&f.app, "U ", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // Other accounts are not affected.
    assert_eq!(sign_in(&f.app, "v", PASSWORD).await.status, StatusCode::OK);
    // After the wait (1 s), one more failure doubles it (2 s).
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let r = sign_in(&f.app, "u", "wrong password!").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    let r = sign_in(&f.app, "u", PASSWORD).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    // The right password then works and clears the count.
    assert_eq!(sign_in(&f.app, "u", PASSWORD).await.status, StatusCode::OK);
    let r = sign_in(&f.app, "u", "wrong password!").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(sign_in(&f.app, "u", PASSWORD).await.status, StatusCode::OK);
}
