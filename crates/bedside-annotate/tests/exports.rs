#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The SR, SEG and mask exports through the REST API, read back with dicom-rs, the zip and
//! png crates: units and values against the file's own calibration, frame numbers, the real
//! observer, and mask pixels equal to what was drawn.

mod common;

use std::io::Read as _;

use axum::http::{Method, StatusCode, header};
use base64::Engine as _;
use bedside_annotate::api::AuthConfig;
use common::*;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde_json::{Value, json};

struct Setup {
    f: Fixture,
    root: Session,
    ann1: Session,
    ann2: Session,
    pid: i64,
    inst: Instance,
}

async fn setup() -> Setup {
    let f = fixture(
        &[("root", true), ("ann1", false), ("ann2", false)],
        AuthConfig::default(),
    );
    let root = login(&f.app, "root").await;
    let r = call(
        &f.app,
        Method::POST,
        "/api/projects",
        Some(&root),
        Some(json!({"name": "exports", "blinded": false, "schema": schema()})),
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
    for u in ["ann1", "ann2"] {
        call(
            &f.app,
            Method::PUT,
            &format!("/api/projects/{pid}/members/{u}"),
            Some(&root),
            Some(json!({"role": "annotator"})),
        )
        .await;
        call(
            &f.app,
            Method::PUT,
            &format!("/api/projects/{pid}/studies/{}/assignees/{u}", inst.study),
            Some(&root),
            None,
        )
        .await;
    }
    let (ann1, ann2) = (login(&f.app, "ann1").await, login(&f.app, "ann2").await);
    Setup {
        f,
        root,
        ann1,
        ann2,
        pid,
        inst,
    }
}

async fn create(s: &Setup, who: &Session, body: Value) -> Value {
    let r = call(
        &s.f.app,
        Method::POST,
        &format!(
            "/api/projects/{}/studies/{}/annotations",
            s.pid, s.inst.study
        ),
        Some(who),
        Some(body),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json);
    r.json
}

fn on_frame(s: &Setup, frame: i64, kind: &str, name: &str, payload: Value) -> Value {
    json!({"series_instance_uid": s.inst.series, "sop_instance_uid": s.inst.sop, "frame": frame,
           "kind": kind, "name": name, "payload": payload})
}

/// The drawn mask: a rectangle inside the ultrasound region.
fn drawn_mask(s: &Setup) -> Vec<u8> {
    let (rows, cols) = (s.inst.rows as usize, s.inst.columns as usize);
    let mut m = vec![0u8; rows * cols];
    let [x0, y0, ..] = s.inst.region;
    for y in (y0 as usize + 2)..(y0 as usize + 9) {
        for x in (x0 as usize + 3)..(x0 as usize + 15) {
            m[y * cols + x] = 1;
        }
    }
    m
}

/// Annotations by two readers: a length on frame 3, an ellipse on frame 1, a frame label and
/// a study label by ann1; a series label by ann2; a mask on frame 2 by ann1.
async fn annotate(s: &Setup) {
    let [x0, y0, ..] = s.inst.region;
    create(
        s,
        &s.ann1,
        on_frame(
            s,
            3,
            "length",
            "LVIDd",
            json!({"points": [[x0 + 1.0, y0 + 1.0], [x0 + 11.0, y0 + 1.0]]}),
        ),
    )
    .await;
    create(
        s,
        &s.ann1,
        on_frame(
            s,
            1,
            "ellipse",
            "LA",
            json!({"center": [x0 + 6.0, y0 + 4.0], "radii": [2.0, 3.0]}),
        ),
    )
    .await;
    create(
        s,
        &s.ann1,
        on_frame(s, 2, "label", "findings", json!({"values": ["effusion"]})),
    )
    .await;
    create(
        s,
        &s.ann1,
        json!({"kind": "label", "name": "quality", "payload": {"values": ["good"]}}),
    )
    .await;
    create(
        s,
        &s.ann2,
        json!({"series_instance_uid": s.inst.series, "kind": "label", "name": "view",
               "payload": {"values": ["A4C"]}}),
    )
    .await;
    let data = base64::engine::general_purpose::STANDARD.encode(drawn_mask(s));
    create(
        s,
        &s.ann1,
        on_frame(
            s,
            2,
            "mask",
            "LV cavity",
            json!({"rows": s.inst.rows, "columns": s.inst.columns, "data": data}),
        ),
    )
    .await;
}

async fn export(s: &Setup, format: &str, who: &Session) -> Reply {
    call(
        &s.f.app,
        Method::GET,
        &format!("/api/projects/{}/export?format={format}", s.pid),
        Some(who),
        None,
    )
    .await
}

fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut out = Vec::new();
            f.read_to_end(&mut out).unwrap();
            (f.name().unwrap().to_string(), out)
        })
        .collect()
}

fn text(o: &InMemDicomObject, t: dicom_core::Tag) -> String {
    o.element(t)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

fn items(o: &InMemDicomObject, t: dicom_core::Tag) -> Vec<InMemDicomObject> {
    o.element(t)
        .map(|e| e.items().unwrap().to_vec())
        .unwrap_or_default()
}

fn concept(o: &InMemDicomObject) -> Option<(String, String)> {
    let c = items(o, tags::CONCEPT_NAME_CODE_SEQUENCE);
    c.first().map(|c| {
        (
            text(c, tags::CODE_VALUE),
            text(c, tags::CODING_SCHEME_DESIGNATOR),
        )
    })
}

/// Every content item of the tree, depth first.
fn walk(o: &InMemDicomObject, out: &mut Vec<InMemDicomObject>) {
    for c in items(o, tags::CONTENT_SEQUENCE) {
        out.push(c.clone());
        walk(&c, out);
    }
}

fn child_with_concept(o: &InMemDicomObject, value: &str) -> Option<InMemDicomObject> {
    items(o, tags::CONTENT_SEQUENCE)
        .into_iter()
        .find(|c| concept(c).is_some_and(|(v, _)| v == value))
}

fn read_dicom(bytes: &[u8]) -> dicom_object::DefaultDicomObject {
    bedside_dicom::read::read_bytes(bytes).unwrap()
}

#[tokio::test]
async fn sr_has_units_frames_and_the_real_observers() {
    let s = setup().await;
    annotate(&s).await;
    let r = export(&s, "sr", &s.root).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/zip");
    let files = unzip(&r.bytes);
    let manifest: Value = serde_json::from_slice(&files[0].1).unwrap();
    assert_eq!(files[0].0, "manifest.json");
    let srs: Vec<_> = files.iter().filter(|(n, _)| n.ends_with(".dcm")).collect();
    // One document per reader of the study.
    assert_eq!(srs.len(), 2, "{manifest}");
    assert_eq!(manifest["files"].as_array().unwrap().len(), 2);
    let mut observers = Vec::new();
    for (name, bytes) in &srs {
        let obj = read_dicom(bytes);
        assert_eq!(
            text(&obj, tags::SOP_CLASS_UID),
            bedside_dicom::sr::COMPREHENSIVE_SR
        );
        assert_eq!(text(&obj, tags::STUDY_INSTANCE_UID), s.inst.study);
        let template = &items(&obj, tags::CONTENT_TEMPLATE_SEQUENCE)[0];
        assert_eq!(text(template, tags::TEMPLATE_IDENTIFIER), "1500");
        let observer = items(&obj, tags::CONTENT_SEQUENCE)
            .into_iter()
            .find(|c| concept(c).is_some_and(|(v, _)| v == "121008"))
            .unwrap();
        assert_eq!(text(&observer, tags::VALUE_TYPE), "PNAME");
        let who = text(&observer, tags::PERSON_NAME);
        observers.push(who.clone());
        let who = who.trim_end_matches('^').to_string();
        assert!(name.ends_with(&format!("/{who}.dcm")), "{name} {who}");
        let mut all = Vec::new();
        walk(&obj, &mut all);
        if who == "ann1" {
            // The length: 10 px along x at the region's PhysicalDeltaX (cm) = 100 × Δx mm.
            let num = all
                .iter()
                .find(|c| concept(c) == Some(("410668003".into(), "SCT".into())))
                .unwrap();
            assert_eq!(text(num, tags::VALUE_TYPE), "NUM");
            let m = &items(num, tags::MEASURED_VALUE_SEQUENCE)[0];
            let unit = &items(m, tags::MEASUREMENT_UNITS_CODE_SEQUENCE)[0];
            assert_eq!(text(unit, tags::CODE_VALUE), "mm");
            assert_eq!(text(unit, tags::CODING_SCHEME_DESIGNATOR), "UCUM");
            let v = m
                .element(tags::FLOATING_POINT_VALUE)
                .unwrap()
                .to_float64()
                .unwrap();
            assert!((v - 10.0 * s.inst.delta_x_cm * 10.0).abs() < 1e-9, "{v}");
            let scoord = &items(num, tags::CONTENT_SEQUENCE)[0];
            assert_eq!(text(scoord, tags::RELATIONSHIP_TYPE), "INFERRED FROM");
            assert_eq!(text(scoord, tags::VALUE_TYPE), "SCOORD");
            assert_eq!(text(scoord, tags::GRAPHIC_TYPE), "POLYLINE");
            let [x0, y0, ..] = s.inst.region;
            let data = scoord
                .element(tags::GRAPHIC_DATA)
                .unwrap()
                .to_multi_float32()
                .unwrap();
            assert_eq!(
                data,
                vec![
                    (x0 + 1.0) as f32,
                    (y0 + 1.0) as f32,
                    (x0 + 11.0) as f32,
                    (y0 + 1.0) as f32
                ]
            );
            let image = &items(scoord, tags::CONTENT_SEQUENCE)[0];
            assert_eq!(text(image, tags::RELATIONSHIP_TYPE), "SELECTED FROM");
            let sop = &items(image, tags::REFERENCED_SOP_SEQUENCE)[0];
            assert_eq!(text(sop, tags::REFERENCED_SOP_INSTANCE_UID), s.inst.sop);
            assert_eq!(text(sop, tags::REFERENCED_FRAME_NUMBER), "3");
            // The ellipse: area and perimeter, an ELLIPSE of four points, frame 1.
            let areas: Vec<_> = all
                .iter()
                .filter(|c| concept(c) == Some(("42798000".into(), "SCT".into())))
                .collect();
            assert_eq!(areas.len(), 1);
            let m = &items(areas[0], tags::MEASURED_VALUE_SEQUENCE)[0];
            assert_eq!(
                text(
                    &items(m, tags::MEASUREMENT_UNITS_CODE_SEQUENCE)[0],
                    tags::CODE_VALUE
                ),
                "mm2"
            );
            let scoord = &items(areas[0], tags::CONTENT_SEQUENCE)[0];
            assert_eq!(text(scoord, tags::GRAPHIC_TYPE), "ELLIPSE");
            let image = &items(scoord, tags::CONTENT_SEQUENCE)[0];
            let sop = &items(image, tags::REFERENCED_SOP_SEQUENCE)[0];
            assert_eq!(text(sop, tags::REFERENCED_FRAME_NUMBER), "1");
            // Measurement groups carry tracking identifiers.
            let imaging = child_with_concept(&obj, "126010").unwrap();
            let groups = items(&imaging, tags::CONTENT_SEQUENCE);
            assert_eq!(groups.len(), 3, "length, ellipse, frame label");
            for g in &groups {
                let t = child_with_concept(g, "112039").unwrap();
                assert!(!text(&t, tags::TEXT_VALUE).is_empty());
                assert!(child_with_concept(g, "112040").is_some());
            }
            // The frame label: a CODE INFERRED FROM frame 2.
            let label = all
                .iter()
                .find(|c| {
                    text(c, tags::VALUE_TYPE) == "CODE"
                        && items(c, tags::CONCEPT_CODE_SEQUENCE)
                            .first()
                            .is_some_and(|v| text(v, tags::CODE_MEANING) == "effusion")
                })
                .unwrap();
            let image = &items(label, tags::CONTENT_SEQUENCE)[0];
            let sop = &items(image, tags::REFERENCED_SOP_SEQUENCE)[0];
            assert_eq!(text(sop, tags::REFERENCED_FRAME_NUMBER), "2");
            // The study label under Qualitative Evaluations.
            let q = child_with_concept(&obj, "C0034375").unwrap();
            let v = &items(&q, tags::CONTENT_SEQUENCE)[0];
            assert_eq!(
                text(
                    &items(v, tags::CONCEPT_CODE_SEQUENCE)[0],
                    tags::CODE_MEANING
                ),
                "good"
            );
            // Masks are not in the SR.
            assert!(!all.iter().any(|c| {
                items(c, tags::CONCEPT_CODE_SEQUENCE)
                    .first()
                    .is_some_and(|v| text(v, tags::CODE_MEANING) == "LV cavity")
            }));
        } else {
            let label = all
                .iter()
                .find(|c| {
                    text(c, tags::VALUE_TYPE) == "CODE"
                        && items(c, tags::CONCEPT_CODE_SEQUENCE)
                            .first()
                            .is_some_and(|v| text(v, tags::CODE_MEANING) == "A4C")
                })
                .unwrap();
            let series = &items(label, tags::CONTENT_SEQUENCE)[0];
            assert_eq!(text(series, tags::UID), s.inst.series);
        }
    }
    observers.sort();
    // The account names as Person Names' family name (the caret marks the component).
    assert_eq!(observers, ["ann1^", "ann2^"]);
    // Exporting again gives the same objects (UIDs follow the content).
    let again = unzip(&export(&s, "sr", &s.root).await.bytes);
    assert_eq!(again, files);
}

#[tokio::test]
async fn seg_and_masks_equal_the_drawn_mask() {
    let s = setup().await;
    annotate(&s).await;
    let drawn = drawn_mask(&s);
    let (rows, cols) = (s.inst.rows as usize, s.inst.columns as usize);
    let r = export(&s, "seg", &s.root).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    let files = unzip(&r.bytes);
    let segs: Vec<_> = files.iter().filter(|(n, _)| n.ends_with(".dcm")).collect();
    assert_eq!(segs.len(), 1);
    let seg = read_dicom(&segs[0].1);
    assert_eq!(
        text(&seg, tags::SOP_CLASS_UID),
        bedside_dicom::seg::SEGMENTATION_STORAGE
    );
    assert_eq!(text(&seg, tags::CONTENT_CREATOR_NAME), "ann1^");
    assert_eq!(text(&seg, tags::NUMBER_OF_FRAMES), "1");
    let segment = &items(&seg, tags::SEGMENT_SEQUENCE)[0];
    assert_eq!(text(segment, tags::SEGMENT_LABEL), "LV cavity");
    let frame = &items(&seg, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)[0];
    let derivation = &items(frame, tags::DERIVATION_IMAGE_SEQUENCE)[0];
    let source = &items(derivation, tags::SOURCE_IMAGE_SEQUENCE)[0];
    assert_eq!(text(source, tags::REFERENCED_SOP_INSTANCE_UID), s.inst.sop);
    assert_eq!(text(source, tags::REFERENCED_FRAME_NUMBER), "2");
    let packed = seg.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    let bits = bedside_dicom::seg::unpack_bits(&packed, rows * cols);
    assert_eq!(bits, drawn);

    let r = export(&s, "masks", &s.root).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json);
    let files = unzip(&r.bytes);
    let npy = files.iter().find(|(n, _)| n.ends_with("mask.npy")).unwrap();
    let len = u16::from_le_bytes([npy.1[8], npy.1[9]]) as usize;
    let header = std::str::from_utf8(&npy.1[10..10 + len]).unwrap();
    let frames = s.inst.frames as usize;
    assert!(
        header.contains(&format!("'shape': ({frames}, {rows}, {cols})")),
        "{header}"
    );
    let body = &npy.1[10 + len..];
    assert_eq!(body.len(), frames * rows * cols);
    for f in 0..frames {
        let plane = &body[f * rows * cols..(f + 1) * rows * cols];
        if f == 1 {
            assert_eq!(plane, drawn.as_slice());
        } else {
            assert!(plane.iter().all(|&v| v == 0));
        }
    }
    let pngs: Vec<_> = files.iter().filter(|(n, _)| n.ends_with(".png")).collect();
    assert_eq!(pngs.len(), 1);
    assert!(pngs[0].0.ends_with("frame-0002.png"), "{}", pngs[0].0);
    let mut dec = png::Decoder::new(std::io::Cursor::new(pngs[0].1.clone()))
        .read_info()
        .unwrap();
    let mut buf = vec![0; dec.output_buffer_size().unwrap()];
    let info = dec.next_frame(&mut buf).unwrap();
    assert_eq!((info.width as usize, info.height as usize), (cols, rows));
    let got: Vec<u8> = buf[..rows * cols]
        .iter()
        .map(|&v| u8::from(v != 0))
        .collect();
    assert_eq!(got, drawn);
}

#[tokio::test]
async fn multipart_roles_and_bad_formats() {
    let s = setup().await;
    annotate(&s).await;
    // SR as multipart/related, one application/dicom part per document.
    let mut req = axum::http::Request::builder()
        .uri(format!("/api/projects/{}/export?format=sr", s.pid))
        .header(header::COOKIE, &s.root.cookie)
        .header(
            header::ACCEPT,
            "multipart/related; type=\"application/dicom\"",
        );
    req = req.header("x-csrf-token", &s.root.csrf);
    let res = tower::ServiceExt::oneshot(
        s.f.app.clone(),
        req.body(axum::body::Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let ct = res.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        ct.starts_with("multipart/related; type=\"application/dicom\""),
        "{ct}"
    );
    let boundary = ct.split("boundary=").nth(1).unwrap().to_string();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    let parts = bedside_dicomweb::multipart::parse_multipart(&body, &boundary).unwrap();
    assert_eq!(parts.len(), 2);
    for p in parts {
        read_dicom(&p.body);
    }
    // Annotators may not export; unknown formats are refused.
    assert_eq!(
        export(&s, "sr", &s.ann1).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        export(&s, "dicom", &s.root).await.status,
        StatusCode::BAD_REQUEST
    );
    // One study only.
    let r = call(
        &s.f.app,
        Method::GET,
        &format!("/api/projects/{}/export?format=sr&study=2.25.1", s.pid),
        Some(&s.root),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(unzip(&r.bytes).len(), 1, "only the manifest");
}

/// Stores a copy of the phantom instance in the same study under its own UIDs with a Frame of
/// Reference and, when `geometry`, classic plane geometry; draws the mask on its frame 1.
async fn frame_of_reference_copy(s: &Setup, suffix: &str, geometry: bool) -> (String, String) {
    use bedside_dicom::elements::{put_ds, put_str};
    let mut obj = dicom_object::OpenFileOptions::new()
        .open_file(&s.inst.path)
        .unwrap();
    let sop = format!("{}.{suffix}", s.inst.sop);
    let series = format!("{}.{suffix}", s.inst.series);
    put_str(&mut obj, tags::SOP_INSTANCE_UID, dicom_core::VR::UI, &sop);
    put_str(
        &mut obj,
        tags::SERIES_INSTANCE_UID,
        dicom_core::VR::UI,
        &series,
    );
    put_str(
        &mut obj,
        tags::FRAME_OF_REFERENCE_UID,
        dicom_core::VR::UI,
        "2.25.77",
    );
    if geometry {
        put_ds(
            &mut obj,
            tags::IMAGE_ORIENTATION_PATIENT,
            &[1.0, 0.0, 0.0, 0.0, 0.0, -1.0],
        );
        put_ds(
            &mut obj,
            tags::IMAGE_POSITION_PATIENT,
            &[-10.5, 20.0, 30.25],
        );
        put_ds(&mut obj, tags::PIXEL_SPACING, &[0.5, 0.4]);
        put_ds(&mut obj, tags::SLICE_THICKNESS, &[2.0]);
    }
    let ts = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let bytes = bedside_dicom::write::encode_file(obj.into_inner(), &ts).unwrap();
    std::fs::write(dir.path().join("for.dcm"), bytes).unwrap();
    let summary = off_runtime(|| {
        bedside_annotate::import::import_path(&s.f.store(), dir.path(), |_, _| {}).unwrap()
    });
    assert_eq!(summary.stored, 1, "{summary:?}");
    let data = base64::engine::general_purpose::STANDARD.encode(drawn_mask(s));
    create(
        s,
        &s.ann1,
        json!({"series_instance_uid": series, "sop_instance_uid": sop, "frame": 1,
               "kind": "mask", "name": "LV cavity",
               "payload": {"rows": s.inst.rows, "columns": s.inst.columns, "data": data}}),
    )
    .await;
    (series, sop)
}

#[tokio::test]
async fn seg_of_a_source_in_a_frame_of_reference_carries_its_geometry() {
    let s = setup().await;
    let (_, sop) = frame_of_reference_copy(&s, "77", true).await;
    let r = export(&s, "seg", &s.root).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get(header::WARNING).is_none());
    let files = unzip(&r.bytes);
    let (_, bytes) = files
        .iter()
        .find(|(n, _)| n.contains(&sop) && n.ends_with(".dcm"))
        .expect("a SEG of the source with a frame of reference");
    let seg = dicom_object::from_reader(&bytes[128..]).unwrap();
    let text = |o: &InMemDicomObject, t| o.element(t).unwrap().to_str().unwrap().to_string();
    let floats = |o: &InMemDicomObject, t| o.element(t).unwrap().to_multi_float64().unwrap();
    let item = |o: &InMemDicomObject, t| o.element(t).unwrap().items().unwrap()[0].clone();
    assert_eq!(text(&seg, tags::FRAME_OF_REFERENCE_UID), "2.25.77");
    assert!(seg.element(tags::PATIENT_ORIENTATION).is_err());
    let shared = item(&seg, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let measures = item(&shared, tags::PIXEL_MEASURES_SEQUENCE);
    assert_eq!(floats(&measures, tags::PIXEL_SPACING), vec![0.5, 0.4]);
    assert_eq!(floats(&measures, tags::SLICE_THICKNESS), vec![2.0]);
    let orientation = item(&shared, tags::PLANE_ORIENTATION_SEQUENCE);
    assert_eq!(
        floats(&orientation, tags::IMAGE_ORIENTATION_PATIENT),
        vec![1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
    );
    let frame = item(&seg, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE);
    let plane = item(&frame, tags::PLANE_POSITION_SEQUENCE);
    assert_eq!(
        floats(&plane, tags::IMAGE_POSITION_PATIENT),
        vec![-10.5, 20.0, 30.25]
    );
    let content = item(&frame, tags::FRAME_CONTENT_SEQUENCE);
    assert!(content.element(tags::TEMPORAL_POSITION_INDEX).is_err());
    let dims = seg
        .element(tags::DIMENSION_INDEX_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()
        .to_vec();
    let pointer = dims[1]
        .element(tags::DIMENSION_INDEX_POINTER)
        .unwrap()
        .value()
        .to_tag()
        .unwrap();
    assert_eq!(pointer, tags::IMAGE_POSITION_PATIENT);
    let packed = seg.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    let pixels = (s.inst.rows * s.inst.columns) as usize;
    let mask: Vec<u8> = drawn_mask(&s).iter().map(|&v| (v != 0) as u8).collect();
    assert_eq!(bedside_dicom::seg::unpack_bits(&packed, pixels), mask);
}

#[tokio::test]
async fn seg_leaves_out_sources_in_a_frame_of_reference_without_geometry() {
    let s = setup().await;
    let (_, sop) = frame_of_reference_copy(&s, "78", false).await;
    let r = export(&s, "seg", &s.root).await;
    assert_eq!(r.status, StatusCode::OK);
    let warning = r.headers[header::WARNING].to_str().unwrap().to_string();
    assert!(
        warning.contains(&sop) && warning.contains("Image Orientation (Patient)"),
        "{warning}"
    );
    let files = unzip(&r.bytes);
    assert_eq!(files.len(), 1, "only the manifest");
    let manifest: Value = serde_json::from_slice(&files[0].1).unwrap();
    assert_eq!(manifest["skipped"].as_array().unwrap().len(), 1);
    // The masks export still has it.
    let r = export(&s, "masks", &s.root).await;
    assert!(unzip(&r.bytes).iter().any(|(n, _)| n.contains(&sop)));
}
