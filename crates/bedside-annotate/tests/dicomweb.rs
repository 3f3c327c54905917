#![allow(clippy::unwrap_used, clippy::expect_used)]
//! DICOMweb over the disk store, in process (`tower::ServiceExt::oneshot`), checked against the
//! source files as read by dicom-rs directly.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bedside_annotate::{import, server, store::DiskStore};
use bedside_dicomweb::DicomWebConfig;
use bedside_dicomweb::multipart::{parse_media_type, parse_multipart};
use dicom_core::value::Value as DicomValue;
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// A small phantom cohort generated once per test binary: mixed native/JPEG, mono/RGB.
fn cohort() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = bedside_phantom::PhantomConfig {
            seed: 11,
            patients: 3,
            sites: 2,
            studies_per_patient: [1, 2],
            rows: 64,
            columns: 96,
            frames: [4, 6],
            rgb_fraction: 0.5,
            rgb_jpeg_fraction: 0.5,
            mono_jpeg_fraction: 0.5,
            write_masks: false,
            ..Default::default()
        };
        bedside_phantom::generate(&config, dir.path(), true, &|| {}).unwrap();
        dir
    })
    .path()
}

fn dicom_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![cohort().join("dicom")];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                pending.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn open(path: &Path) -> DefaultDicomObject {
    OpenFileOptions::new().open_file(path).unwrap()
}

fn text(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> String {
    obj.element(tag)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

struct Fixture {
    app: Router,
    _data: tempfile::TempDir,
}

fn fixture_with(config: DicomWebConfig, import_cohort: bool) -> Fixture {
    let data = tempfile::tempdir().unwrap();
    let store = DiskStore::open(data.path()).unwrap();
    if import_cohort {
        let summary = import::import_path(&store, &cohort().join("dicom"), |_, _| {}).unwrap();
        assert_eq!(summary.stored as usize, dicom_files().len());
        assert!(summary.failed.is_empty());
    }
    // Every endpoint needs a session: sign in as a superuser and send its cookie and CSRF
    // token with every request.
    let db = Arc::new(bedside_annotate::db::AnnotateDb::open(data.path()).unwrap());
    db.add_user("tester", "tester-password", true).unwrap();
    let (who, token) = db
        .login("tester", "tester-password", 3600)
        .unwrap()
        .unwrap();
    let cookie = format!("{}={token}", bedside_annotate::auth::SESSION_COOKIE);
    let app = server::app(Arc::new(store), db, config, Default::default()).layer(
        axum::middleware::map_request(move |mut req: Request<Body>| {
            let (cookie, csrf) = (cookie.clone(), who.csrf.clone());
            async move {
                req.headers_mut()
                    .insert(header::COOKIE, cookie.parse().unwrap());
                req.headers_mut()
                    .insert("x-csrf-token", csrf.parse().unwrap());
                req
            }
        }),
    );
    Fixture { app, _data: data }
}

fn fixture() -> Fixture {
    fixture_with(DicomWebConfig::default(), true)
}

struct Reply {
    status: StatusCode,
    content_type: String,
    warning: Option<String>,
    body: bytes::Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn parts(&self) -> Vec<bedside_dicomweb::multipart::Part> {
        let ct = parse_media_type(&self.content_type).unwrap();
        assert_eq!(ct.essence, "multipart/related");
        parse_multipart(&self.body, ct.param("boundary").unwrap()).unwrap()
    }
}

async fn send(app: &Router, req: Request<Body>) -> Reply {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let content_type = res
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let warning = res
        .headers()
        .get(header::WARNING)
        .map(|v| v.to_str().unwrap().to_string());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        content_type,
        warning,
        body,
    }
}

async fn get(app: &Router, uri: &str, accept: Option<&str>) -> Reply {
    let mut req = Request::get(uri).header(header::HOST, "example.test:8042");
    if let Some(a) = accept {
        req = req.header(header::ACCEPT, a);
    }
    send(app, req.body(Body::empty()).unwrap()).await
}

fn values<'a>(record: &'a Value, key: &str) -> Vec<&'a Value> {
    record[key]["Value"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn str_value(record: &Value, key: &str) -> String {
    values(record, key)[0].as_str().unwrap().to_string()
}

fn instance_path(obj: &DefaultDicomObject) -> String {
    format!(
        "/dicomweb/studies/{}/series/{}/instances/{}",
        text(obj, tags::STUDY_INSTANCE_UID),
        text(obj, tags::SERIES_INSTANCE_UID),
        text(obj, tags::SOP_INSTANCE_UID)
    )
}

fn is_jpeg(obj: &DefaultDicomObject) -> bool {
    obj.meta().transfer_syntax().trim_end_matches('\0') == "1.2.840.10008.1.2.4.50"
}

/// The stored bytes of frame `i` (0-based) as dicom-rs reads them from the file.
fn source_frame(obj: &DefaultDicomObject, i: usize) -> Vec<u8> {
    let pixel = obj.element(tags::PIXEL_DATA).unwrap();
    match pixel.value() {
        DicomValue::PixelSequence(seq) => seq.fragments()[i].clone(),
        DicomValue::Primitive(p) => {
            let bytes = p.to_bytes();
            let n: usize = text(obj, tags::NUMBER_OF_FRAMES).parse().unwrap();
            let len = bytes.len() / n;
            bytes[i * len..(i + 1) * len].to_vec()
        }
        _ => panic!("no pixel data"),
    }
}

#[tokio::test]
async fn qido_studies_match_the_files() {
    let f = fixture();
    let files: Vec<DefaultDicomObject> = dicom_files().iter().map(|p| open(p)).collect();
    let mut studies: Vec<String> = files
        .iter()
        .map(|o| text(o, tags::STUDY_INSTANCE_UID))
        .collect();
    studies.sort();
    studies.dedup();

    // The call OHIF makes for its study list.
    let r = get(
        &f.app,
        "/dicomweb/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030,00080060,00080090,00100030",
        Some("application/dicom+json"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type.starts_with("application/dicom+json"));
    let list = r.json();
    let mut got: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| str_value(s, "0020000D"))
        .collect();
    got.sort();
    assert_eq!(got, studies);
    for study in list.as_array().unwrap() {
        let uid = str_value(study, "0020000D");
        let in_study: Vec<&DefaultDicomObject> = files
            .iter()
            .filter(|o| text(o, tags::STUDY_INSTANCE_UID) == uid)
            .collect();
        assert_eq!(
            values(study, "00201208")[0].as_i64().unwrap() as usize,
            in_study.len()
        );
        assert_eq!(str_value(study, "00080061"), "US");
        assert_eq!(
            study["00100010"]["Value"][0]["Alphabetic"]
                .as_str()
                .unwrap(),
            text(in_study[0], tags::PATIENT_NAME)
        );
        assert_eq!(
            str_value(study, "00081190"),
            format!("http://example.test:8042/dicomweb/studies/{uid}")
        );
    }

    // Matching by PatientID, by wildcard and by a UID list.
    let pid = text(&files[0], tags::PATIENT_ID);
    let expected = files
        .iter()
        .filter(|o| text(o, tags::PATIENT_ID) == pid)
        .map(|o| text(o, tags::STUDY_INSTANCE_UID))
        .collect::<std::collections::BTreeSet<_>>();
    let r = get(&f.app, &format!("/dicomweb/studies?00100020={pid}"), None).await;
    assert_eq!(r.json().as_array().unwrap().len(), expected.len());
    let r = get(
        &f.app,
        &format!("/dicomweb/studies?PatientID={}*", &pid[..pid.len() - 1]),
        None,
    )
    .await;
    assert!(r.json().as_array().unwrap().len() >= expected.len());
    let two = format!("{},{}", studies[0], studies[studies.len() - 1]);
    let r = get(
        &f.app,
        &format!("/dicomweb/studies?StudyInstanceUID={two}"),
        None,
    )
    .await;
    assert_eq!(r.json().as_array().unwrap().len(), 2.min(studies.len()));

    // Date ranges.
    let date = text(&files[0], tags::STUDY_DATE);
    let r = get(
        &f.app,
        &format!("/dicomweb/studies?StudyDate={date}-{date}"),
        None,
    )
    .await;
    assert!(
        r.json()
            .as_array()
            .unwrap()
            .iter()
            .all(|s| str_value(s, "00080020") == date)
    );
    let r = get(&f.app, "/dicomweb/studies?StudyDate=-18000101", None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 0);

    // Paging and the Warning header about further results.
    let r = get(&f.app, "/dicomweb/studies?limit=1&offset=1", None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    if studies.len() > 2 {
        assert!(r.warning.unwrap().contains("additional results"));
    }

    // includefield=all carries patient attributes beyond the defaults.
    let r = get(&f.app, "/dicomweb/studies?includefield=all", None).await;
    assert!(r.json()[0].get("00100040").is_some());
}

#[tokio::test]
async fn qido_series_and_instances() {
    let f = fixture();
    let obj = open(&dicom_files()[0]);
    let study = text(&obj, tags::STUDY_INSTANCE_UID);
    let series = text(&obj, tags::SERIES_INSTANCE_UID);
    let r = get(
        &f.app,
        &format!(
            "/dicomweb/studies/{study}/series?includefield=00080021,00080031,0008103E,00200011"
        ),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.json();
    let s = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| str_value(s, "0020000E") == series)
        .unwrap();
    assert_eq!(str_value(s, "00080060"), text(&obj, tags::MODALITY));
    assert_eq!(values(s, "00201209")[0].as_i64().unwrap(), 1);

    let r = get(
        &f.app,
        &format!("/dicomweb/studies/{study}/series/{series}/instances"),
        None,
    )
    .await;
    let list = r.json();
    assert_eq!(
        str_value(&list[0], "00080018"),
        text(&obj, tags::SOP_INSTANCE_UID)
    );
    assert_eq!(
        values(&list[0], "00280008")[0]
            .as_i64()
            .unwrap()
            .to_string(),
        text(&obj, tags::NUMBER_OF_FRAMES)
    );
    assert_eq!(list[0]["00280010"]["Value"][0].as_i64().unwrap(), 64);

    let r = get(&f.app, "/dicomweb/series?Modality=US", None).await;
    assert!(!r.json().as_array().unwrap().is_empty());
    let r = get(
        &f.app,
        "/dicomweb/instances?SOPClassUID=1.2.840.10008.5.1.4.1.1.3.1",
        None,
    )
    .await;
    assert_eq!(r.json().as_array().unwrap().len(), dicom_files().len());
    let r = get(
        &f.app,
        &format!("/dicomweb/studies/{study}/instances"),
        None,
    )
    .await;
    assert!(!r.json().as_array().unwrap().is_empty());
}

#[tokio::test]
async fn metadata_matches_the_file() {
    let f = fixture();
    let obj = open(&dicom_files()[0]);
    let study = text(&obj, tags::STUDY_INSTANCE_UID);
    let series = text(&obj, tags::SERIES_INSTANCE_UID);
    for uri in [
        format!("/dicomweb/studies/{study}/series/{series}/metadata"),
        format!("{}/metadata", instance_path(&obj)),
    ] {
        let r = get(&f.app, &uri, Some("application/dicom+json")).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        let list = r.json();
        let m = &list[0];
        assert_eq!(str_value(m, "00080018"), text(&obj, tags::SOP_INSTANCE_UID));
        assert_eq!(
            m["00280010"]["Value"][0].as_i64().unwrap().to_string(),
            text(&obj, tags::ROWS)
        );
        assert_eq!(
            str_value(m, "00280004"),
            text(&obj, tags::PHOTOMETRIC_INTERPRETATION)
        );
        assert!(
            m["7FE00010"]["BulkDataURI"]
                .as_str()
                .unwrap()
                .starts_with(&format!("http://example.test:8042{}", instance_path(&obj)))
        );
        assert!(m.get("00020010").is_none());
        // Every top-level attribute of the file is present (file meta and pixel data aside).
        for elem in obj.iter() {
            let tag = elem.header().tag;
            let key = format!("{:04X}{:04X}", tag.group(), tag.element());
            assert!(m.get(&key).is_some(), "{key} missing from metadata");
        }
    }
    let r = get(&f.app, &format!("/dicomweb/studies/{study}/metadata"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(
        &f.app,
        &format!("/dicomweb/studies/{study}/metadata"),
        Some("application/dicom+xml"),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn frames_as_stored_and_decoded() {
    let f = fixture();
    let mut seen_jpeg = false;
    let mut seen_native = false;
    for path in dicom_files() {
        let obj = open(&path);
        let jpeg = is_jpeg(&obj);
        seen_jpeg |= jpeg;
        seen_native |= !jpeg;
        let ts = obj
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string();
        let base = instance_path(&obj);
        // OHIF: one frame per request, any transfer syntax, quotes optional.
        for accept in [
            "multipart/related; type=application/octet-stream; transfer-syntax=*",
            "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*",
        ] {
            let r = get(&f.app, &format!("{base}/frames/2"), Some(accept)).await;
            assert_eq!(r.status, StatusCode::OK);
            let parts = r.parts();
            assert_eq!(parts.len(), 1);
            let part_type = parts[0].content_type.clone().unwrap();
            let expected_ts = if jpeg {
                ts.as_str()
            } else {
                "1.2.840.10008.1.2.1"
            };
            assert_eq!(part_type.param("transfer-syntax"), Some(expected_ts));
            assert_eq!(&parts[0].body[..], &source_frame(&obj, 1)[..]);
        }
        // A frame list.
        let r = get(
            &f.app,
            &format!("{base}/frames/1,3,2"),
            Some("multipart/related; type=\"application/octet-stream\"; transfer-syntax=*"),
        )
        .await;
        let parts = r.parts();
        assert_eq!(parts.len(), 3);
        for (part, i) in parts.iter().zip([0, 2, 1]) {
            assert_eq!(&part.body[..], &source_frame(&obj, i)[..]);
        }
        // Uncompressed on request: compare with dicom-pixeldata's decoding of the file.
        let r = get(
            &f.app,
            &format!("{base}/frames/1"),
            Some("multipart/related; type=\"application/octet-stream\"; transfer-syntax=1.2.840.10008.1.2.1"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        let parts = r.parts();
        assert_eq!(
            parts[0]
                .content_type
                .as_ref()
                .unwrap()
                .param("transfer-syntax"),
            Some("1.2.840.10008.1.2.1")
        );
        let decoded = obj.decode_pixel_data_frame(0).unwrap();
        assert_eq!(&parts[0].body[..], decoded.data());
        if jpeg {
            let r = get(
                &f.app,
                &format!("{base}/frames/1"),
                Some("multipart/related; type=\"image/jpeg\""),
            )
            .await;
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(
                r.parts()[0].content_type.as_ref().unwrap().essence,
                "image/jpeg"
            );
        }
        let r = get(
            &f.app,
            &format!("{base}/frames/1"),
            Some("multipart/related; type=\"image/jp2\""),
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
        assert!(r.warning.is_some());
        let r = get(&f.app, &format!("{base}/frames/99"), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        for bad in ["0", "1,x", "-1", "1,,2"] {
            let r = get(&f.app, &format!("{base}/frames/{bad}"), None).await;
            assert!(r.status.is_client_error(), "{bad}: {}", r.status);
        }
    }
    assert!(seen_jpeg && seen_native, "the cohort should mix encodings");
}

#[tokio::test]
async fn rendered_thumbnail_and_bulkdata() {
    let f = fixture();
    let obj = open(&dicom_files()[0]);
    let base = instance_path(&obj);
    let r = get(&f.app, &format!("{base}/rendered"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type, "image/jpeg");
    assert_eq!(&r.body[..2], &[0xFF, 0xD8]);
    let r = get(
        &f.app,
        &format!("{base}/frames/2/rendered?window=128,256"),
        Some("image/png"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let decoder = png::Decoder::new(std::io::Cursor::new(r.body.to_vec()));
    let reader = decoder.read_info().unwrap();
    assert_eq!(reader.info().width.to_string(), text(&obj, tags::COLUMNS));
    assert_eq!(reader.info().height.to_string(), text(&obj, tags::ROWS));
    let r = get(&f.app, &format!("{base}/thumbnail"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    for bad in [
        "window=abc",
        "window=1",
        "window=10,-1",
        "quality=0",
        "window=1,2,cubic",
    ] {
        let r = get(&f.app, &format!("{base}/rendered?{bad}"), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
    }
    let r = get(&f.app, &format!("{base}/rendered"), Some("image/gif")).await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);

    // Pixel data bulk data: every frame's stored bytes.
    let r = get(&f.app, &format!("{base}/bulkdata/7FE00010"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let all: Vec<u8> = r.parts().iter().flat_map(|p| p.body.to_vec()).collect();
    let n: usize = text(&obj, tags::NUMBER_OF_FRAMES).parse().unwrap();
    let expected: Vec<u8> = (0..n).flat_map(|i| source_frame(&obj, i)).collect();
    assert_eq!(all, expected);
    let r = get(&f.app, &format!("{base}/bulkdata/zz"), None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = get(&f.app, &format!("{base}/bulkdata/00099999"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn whole_instances_are_the_stored_files() {
    let f = fixture();
    let path = &dicom_files()[0];
    let obj = open(path);
    let original = std::fs::read(path).unwrap();
    let r = get(
        &f.app,
        &instance_path(&obj),
        Some("multipart/related; type=\"application/dicom\"; transfer-syntax=*"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let parts = r.parts();
    assert_eq!(parts.len(), 1);
    assert_eq!(&parts[0].body[..], &original[..]);
    let r = get(&f.app, &instance_path(&obj), Some("application/dicom")).await;
    assert_eq!(&r.body[..], &original[..]);
    let study = text(&obj, tags::STUDY_INSTANCE_UID);
    let r = get(&f.app, &format!("/dicomweb/studies/{study}"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let in_study = dicom_files()
        .iter()
        .filter(|p| text(&open(p), tags::STUDY_INSTANCE_UID) == study)
        .count();
    assert_eq!(r.parts().len(), in_study);
    let r = get(
        &f.app,
        &instance_path(&obj),
        Some(
            "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.90",
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
}

fn multipart_body(boundary: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(p);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

async fn stow(app: &Router, content_type: &str, body: Vec<u8>) -> Reply {
    send(
        app,
        Request::post("/dicomweb/studies")
            .header(header::HOST, "example.test")
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn stow_statuses_and_sequences() {
    let path = &dicom_files()[0];
    let bytes = std::fs::read(path).unwrap();
    let largest = dicom_files()
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len() as usize)
        .max()
        .unwrap();
    let f = fixture_with(
        DicomWebConfig {
            max_request_bytes: 2 * largest + 4096,
            ..Default::default()
        },
        false,
    );
    let obj = open(path);
    let uid = text(&obj, tags::SOP_INSTANCE_UID);

    // Boundary quoted, type given.
    let r = stow(
        &f.app,
        "multipart/related; type=\"application/dicom\"; boundary=\"abc123\"",
        multipart_body("abc123", &[&bytes]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    assert_eq!(str_value(&j["00081199"]["Value"][0], "00081155"), uid);
    assert!(j.get("00081198").is_none());
    // Read it back.
    let r = get(&f.app, &format!("{}/frames/1", instance_path(&obj)), None).await;
    assert_eq!(&r.parts()[0].body[..], &source_frame(&obj, 0)[..]);

    // Same bytes again, boundary unquoted, no type: still success.
    let r = stow(
        &f.app,
        "multipart/related; boundary=xyz",
        multipart_body("xyz", &[&bytes]),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);

    // Same UID, different bytes: conflict with a failure reason.
    let mut changed = bytes.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0xFF;
    let r = stow(
        &f.app,
        "multipart/related; type=application/dicom; boundary=b",
        multipart_body("b", &[&changed]),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let j = r.json();
    assert_eq!(j["00081198"]["Value"][0]["00081197"]["Value"][0], 0x0111);
    assert_eq!(str_value(&j["00081198"]["Value"][0], "00081155"), uid);

    // One good, one garbage: accepted with failures.
    let other = std::fs::read(&dicom_files()[1]).unwrap();
    let r = stow(
        &f.app,
        "multipart/related; type=application/dicom; boundary=b",
        multipart_body("b", &[&other, b"not dicom at all"]),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let j = r.json();
    assert_eq!(j["00081199"]["Value"].as_array().unwrap().len(), 1);
    assert_eq!(j["00081198"]["Value"].as_array().unwrap().len(), 1);

    // Malformed requests: 4xx with a Warning, never a panic.
    let cases: Vec<(&str, Vec<u8>, StatusCode)> = vec![
        (
            "application/dicom",
            bytes.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "multipart/related; type=\"application/dicom+json\"; boundary=b",
            multipart_body("b", &[b"{}"]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "multipart/related; type=application/dicom",
            multipart_body("b", &[&bytes]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "multipart/related; boundary=b",
            b"--b\r\nContent-Type: application/dicom\r\n\r\nxx".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "multipart/related; boundary=b",
            b"no delimiter here".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "multipart/related; boundary=b",
            multipart_body("b", &vec![&bytes[..]; (2 * largest) / bytes.len() + 2]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (ct, body, want) in cases {
        let r = stow(&f.app, ct, body).await;
        assert_eq!(r.status, want, "{ct}");
        assert!(r.warning.is_some());
    }
    // A part truncated mid-file is refused as that part, not as a server error.
    let r = stow(
        &f.app,
        "multipart/related; boundary=b",
        multipart_body("b", &[&bytes[..bytes.len() / 2]]),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // STOW to a study path with an instance of another study.
    let r = send(
        &f.app,
        Request::post("/dicomweb/studies/1.2.3")
            .header(header::CONTENT_TYPE, "multipart/related; boundary=b")
            .body(Body::from(multipart_body("b", &[&bytes])))
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn malformed_paths_and_queries() {
    let f = fixture();
    for (uri, want) in [
        ("/dicomweb/studies?NoSuchKeyword=1", StatusCode::BAD_REQUEST),
        ("/dicomweb/studies?limit=-1", StatusCode::BAD_REQUEST),
        ("/dicomweb/studies?offset=x", StatusCode::BAD_REQUEST),
        (
            "/dicomweb/studies?fuzzymatching=maybe",
            StatusCode::BAD_REQUEST,
        ),
        ("/dicomweb/studies?PatientID=%zz", StatusCode::BAD_REQUEST),
        (
            "/dicomweb/studies?includefield=NotAKeyword",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/dicomweb/studies?00400275.00321060=x",
            StatusCode::BAD_REQUEST,
        ),
        ("/dicomweb/studies/1.2.x/series", StatusCode::BAD_REQUEST),
        (
            "/dicomweb/studies/1.2.3/series/4.5/instances/6.7/frames/1",
            StatusCode::NOT_FOUND,
        ),
        ("/dicomweb/studies/1.2.3/metadata", StatusCode::NOT_FOUND),
        ("/dicomweb/nothing/here", StatusCode::NOT_FOUND),
        ("/dicomweb/studies/%FF%FE/series", StatusCode::BAD_REQUEST),
    ] {
        let r = get(&f.app, uri, None).await;
        assert_eq!(r.status, want, "{uri}");
        assert!(r.warning.is_some(), "{uri}");
        assert!(r.json()["message"].is_string());
    }
    let r = send(
        &f.app,
        Request::delete("/dicomweb/studies")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.warning.is_some());
    let r = get(&f.app, "/dicomweb/studies", Some("application/dicom+xml")).await;
    assert_eq!(r.status, StatusCode::NOT_ACCEPTABLE);
    let r = get(&f.app, "/dicomweb/studies?PatientName=nobody", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), serde_json::json!([]));
    let r = get(&f.app, "/healthz", None).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[test]
fn reopening_keeps_the_schema_and_import_is_idempotent() {
    let data = tempfile::tempdir().unwrap();
    let first = {
        let store = DiskStore::open(data.path()).unwrap();
        import::import_path(&store, cohort(), |_, _| {}).unwrap()
    };
    assert_eq!(first.stored as usize, dicom_files().len());
    assert!(first.not_dicom > 0, "csv and json files are skipped");
    let store = DiskStore::open(data.path()).unwrap();
    assert_eq!(
        store.schema_version().unwrap(),
        2,
        "index, then accounts and annotations"
    );
    let again = import::import_path(&store, cohort(), |_, _| {}).unwrap();
    assert_eq!(again.stored, 0);
    assert_eq!(again.already_stored, first.stored);
    assert_eq!(store.instance_count().unwrap(), first.stored);
}
