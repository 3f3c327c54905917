#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The service end to end in-process: C-STORE intake (through this crate's SCU and through
//! hand-made malformed P-DATA), quality-control reasons, the "I don't know" gate, reports,
//! idempotency and restart.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bedside_core::npy::{Dtype, write_npy};
use bedside_dicom::elements::*;
use bedside_serve::config::{Destination, ExplainRoute, Qc, Route, ServeConfig};
use bedside_serve::dimse;
use bedside_serve::store::{Source, Store};
use bedside_serve::{Model, Running};
use burn::tensor::Device;
use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_ul::Pdu;
use dicom_ul::association::client::ClientAssociationOptions;
use dicom_ul::pdu::{PDataValue, PDataValueType};

const US_MF: &str = "1.2.840.10008.5.1.4.1.1.3.1";

/// A tiny evidential bundle trained for one epoch on synthetic arrays (seconds).
fn bundle_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let mut csv = String::from("study_id,array,split,label\n");
        for i in 0..8 {
            let (f, h, w) = (10, 20, 24);
            let v: Vec<u8> = (0..f * h * w)
                .map(|k| ((k * (i + 3)) % 251) as u8)
                .collect();
            let name = format!("v{i}.npy");
            write_npy(
                &mut std::fs::File::create(data.join(&name)).unwrap(),
                Dtype::U8,
                &[f, h, w],
                &v,
            )
            .unwrap();
            let split = if i % 4 == 0 { "val" } else { "train" };
            csv.push_str(&format!("S{i},{name},{split},{}\n", i % 2));
        }
        std::fs::write(data.join("manifest.csv"), csv).unwrap();
        let text = format!(
            r#"
name = "tiny-evidential"
seed = 3
[data]
manifest = "{}"
clip_length = 4
period = 2
size = 16
workers = 1
[data.columns]
class = "label"
[model]
width = 0.0625
layers = [1, 1, 1, 1]
[task]
kind = "evidential"
classes = 2
[training]
epochs = 1
batch_size = 4
"#,
            data.join("manifest.csv").display()
        );
        let config: bedside_ml::train::config::ExperimentConfig =
            bedside_core::config::from_str(&text, "test").unwrap();
        let run = dir.path().join("run");
        bedside_ml::train::train(&config, &run, false, &mut |_| ControlFlow::Continue(())).unwrap();
        bedside_ml::bundle::export(&run, &dir.path().join("bundle")).unwrap();
        dir
    })
    .path()
}

fn model() -> Model {
    let dir = bundle_dir().join("bundle");
    let bundle = bedside_ml::bundle::load(&dir, &Device::flex()).unwrap();
    Model::new(bundle, &std::fs::read(dir.join("bundle.json")).unwrap()).unwrap()
}

fn config(data: &Path, destination: Option<Destination>) -> ServeConfig {
    let qc = Qc {
        min_fps: 10.0,
        max_fps: 100.0,
        min_size: 16,
        max_size: 512,
        ..Qc::default()
    };
    let route = |desc: Vec<String>, qc: Qc| Route {
        bundle: "tiny-evidential".into(),
        modality: vec!["US".into()],
        sop_class: vec![US_MF.into()],
        series_description: desc,
        manufacturer: Vec::new(),
        value_unit: "1".into(),
        qc,
        explain: None,
    };
    let mut c = ServeConfig {
        data_dir: data.to_path_buf(),
        allowed_calling_aes: vec!["TESTSCU".into(), "BEDSIDE".into()],
        route: vec![
            route(
                vec!["ood".into()],
                Qc {
                    max_uncertainty: Some(0.0001),
                    ..qc.clone()
                },
            ),
            route(Vec::new(), qc),
        ],
        destination,
        ..ServeConfig::default()
    };
    c.listen.dicom = "127.0.0.1:0".into();
    c.listen.http = "127.0.0.1:0".into();
    c.worker.poll_ms = 50;
    c
}

fn start(data: &Path, destination: Option<Destination>) -> Running {
    bedside_serve::start(config(data, destination), vec![model()], Device::flex()).unwrap()
}

#[derive(Clone)]
struct Cine {
    uid: String,
    modality: &'static str,
    class: &'static str,
    frames: usize,
    rows: usize,
    frame_time_ms: f64,
    calibrated: bool,
    description: &'static str,
    garbage_jpeg: bool,
    seed: u8,
}

fn cine(n: u32) -> Cine {
    Cine {
        uid: format!("2.25.{}", 1000 + n),
        modality: "US",
        class: US_MF,
        frames: 12,
        rows: 32,
        frame_time_ms: 33.3,
        calibrated: true,
        description: "A4C",
        garbage_jpeg: false,
        seed: n as u8,
    }
}

fn encode(c: &Cine) -> Vec<u8> {
    let mut o = InMemDicomObject::new_empty();
    let cols = c.rows + 8;
    put_str(&mut o, tags::SOP_CLASS_UID, VR::UI, c.class);
    put_str(&mut o, tags::SOP_INSTANCE_UID, VR::UI, &c.uid);
    put_str(
        &mut o,
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        &format!("{}.1", c.uid),
    );
    put_str(
        &mut o,
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        &format!("{}.2", c.uid),
    );
    put_str(&mut o, tags::MODALITY, VR::CS, c.modality);
    put_str(&mut o, tags::SERIES_DESCRIPTION, VR::LO, c.description);
    put_str(&mut o, tags::PATIENT_NAME, VR::PN, "PHANTOM^TEST");
    put_str(&mut o, tags::PATIENT_ID, VR::LO, "P1");
    put_str(&mut o, tags::STUDY_DATE, VR::DA, "20260101");
    put_str(&mut o, tags::STUDY_TIME, VR::TM, "120000");
    put_ds(&mut o, tags::FRAME_TIME, &[c.frame_time_ms]);
    put_is(&mut o, tags::NUMBER_OF_FRAMES, c.frames as i64);
    put_u16(&mut o, tags::ROWS, &[c.rows as u16]);
    put_u16(&mut o, tags::COLUMNS, &[cols as u16]);
    put_u16(&mut o, tags::SAMPLES_PER_PIXEL, &[1]);
    put_str(
        &mut o,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        "MONOCHROME2",
    );
    put_u16(&mut o, tags::BITS_ALLOCATED, &[8]);
    put_u16(&mut o, tags::BITS_STORED, &[8]);
    put_u16(&mut o, tags::HIGH_BIT, &[7]);
    put_u16(&mut o, tags::PIXEL_REPRESENTATION, &[0]);
    if c.calibrated {
        let mut region = InMemDicomObject::new_empty();
        put_f64(&mut region, tags::PHYSICAL_DELTA_X, &[0.03]);
        put_f64(&mut region, tags::PHYSICAL_DELTA_Y, &[0.03]);
        put_u16(&mut region, tags::PHYSICAL_UNITS_X_DIRECTION, &[3]);
        put_u16(&mut region, tags::PHYSICAL_UNITS_Y_DIRECTION, &[3]);
        put_seq(&mut o, tags::SEQUENCE_OF_ULTRASOUND_REGIONS, vec![region]);
    }
    let ts = if c.garbage_jpeg {
        let frames = (0..c.frames)
            .map(|f| vec![0xFF, 0xD8, f as u8, 1, 2, 3, 4, 5])
            .collect();
        o.put(bedside_dicom::pixel::encapsulated_pixel_data(frames));
        bedside_dicom::ts::JPEG_BASELINE
    } else {
        let pixels: Vec<u8> = (0..c.frames * c.rows * cols)
            .map(|k| ((k as u64 * (u64::from(c.seed) + 7)) % 253) as u8)
            .collect();
        o.put(bedside_dicom::pixel::native_pixel_data_8bit(pixels));
        bedside_dicom::ts::EXPLICIT_VR_LE
    };
    let mut o = o;
    put_str(&mut o, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 100");
    bedside_dicom::write::encode_file(o, ts).unwrap()
}

fn dest(r: &Running) -> Destination {
    Destination {
        host: "127.0.0.1".into(),
        port: r.dicom_addr.port(),
        ae_title: "BEDSIDE".into(),
    }
}

fn send(r: &Running, files: &[Vec<u8>]) -> Result<(), dimse::DimseError> {
    dimse::send(&dest(r), "TESTSCU", files)
}

fn wait_done(store: &Store, uids: &[String]) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let entries: Vec<_> = uids.iter().map(|u| store.entry(u).unwrap()).collect();
        if entries
            .iter()
            .all(|e| e.as_ref().is_some_and(|e| e.state != "pending"))
        {
            return entries
                .into_iter()
                .map(|e| serde_json::from_str(&e.unwrap().result.unwrap()).unwrap())
                .collect();
        }
        assert!(Instant::now() < deadline, "processing did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn reasons(result: &serde_json::Value) -> Vec<String> {
    result["qc"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap().to_string())
        .collect()
}

#[test]
// One push per QC case keeps each crafted input next to the reason it must trigger.
#[allow(clippy::vec_init_then_push)]
fn every_qc_reason_is_named_and_good_input_gets_a_report() {
    let data = tempfile::tempdir().unwrap();
    let running = start(data.path(), None);
    let mut cases: Vec<(Cine, &str)> = Vec::new();
    cases.push((cine(1), "result"));
    cases.push((
        Cine {
            modality: "CT",
            ..cine(2)
        },
        "wrong_modality",
    ));
    cases.push((
        Cine {
            class: "1.2.840.10008.5.1.4.1.1.7",
            ..cine(3)
        },
        "wrong_sop_class",
    ));
    cases.push((
        Cine {
            frames: 3,
            ..cine(4)
        },
        "too_few_frames",
    ));
    cases.push((
        Cine {
            frame_time_ms: 500.0,
            ..cine(5)
        },
        "frame_rate",
    ));
    cases.push((Cine { rows: 8, ..cine(6) }, "resolution"));
    cases.push((
        Cine {
            calibrated: false,
            ..cine(7)
        },
        "missing_calibration",
    ));
    cases.push((
        Cine {
            garbage_jpeg: true,
            ..cine(8)
        },
        "unreadable_pixels",
    ));
    cases.push((
        Cine {
            description: "ood view",
            ..cine(9)
        },
        "uncertainty",
    ));
    let files: Vec<Vec<u8>> = cases.iter().map(|(c, _)| encode(c)).collect();
    send(&running, &files).unwrap();
    let uids: Vec<String> = cases.iter().map(|(c, _)| c.uid.clone()).collect();
    let results = wait_done(&running.store, &uids);
    for ((c, expected), r) in cases.iter().zip(&results) {
        match *expected {
            "result" => {
                assert_eq!(r["status"], "result", "{r}");
                assert!(reasons(r).is_empty());
                let outputs = r["prediction"]["outputs"].as_array().unwrap();
                let names: Vec<&str> = outputs
                    .iter()
                    .map(|o| o["name"].as_str().unwrap())
                    .collect();
                assert_eq!(names, ["prob_0", "prob_1", "uncertainty"]);
                let p: f64 = outputs[..2]
                    .iter()
                    .map(|o| o["mean"].as_f64().unwrap())
                    .sum();
                assert!((p - 1.0).abs() < 1e-6, "probabilities sum to 1: {p}");
                // 12 frames, span 7: six clip starts, all run (max_clips 8).
                assert_eq!(r["prediction"]["clips"], 6);
            }
            "uncertainty" => {
                assert_eq!(r["status"], "indeterminate", "{r}");
                assert_eq!(r["gate"]["reason"], "uncertainty");
            }
            reason => {
                assert_eq!(r["status"], "rejected", "{}: {r}", c.uid);
                assert!(
                    reasons(r).contains(&reason.to_string()),
                    "{}: expected {reason}, got {r}",
                    c.uid
                );
            }
        }
        // Every outcome has a report that parses and references the source.
        let report_uid = r["report_sop_instance_uid"].as_str().unwrap();
        let bytes = std::fs::read(running.store.object_path(report_uid)).unwrap();
        let sr = bedside_dicom::read::read_bytes(&bytes).unwrap();
        // For validating by hand with dciodvfy: BEDSIDE_SERVE_KEEP_SR=<folder>.
        if let Ok(keep) = std::env::var("BEDSIDE_SERVE_KEEP_SR") {
            std::fs::write(Path::new(&keep).join(format!("{}.dcm", c.uid)), &bytes).unwrap();
        }
        let ev = sr
            .element(tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE)
            .unwrap()
            .items()
            .unwrap();
        let series = ev[0]
            .element(tags::REFERENCED_SERIES_SEQUENCE)
            .unwrap()
            .items()
            .unwrap();
        let sop = series[0]
            .element(tags::REFERENCED_SOP_SEQUENCE)
            .unwrap()
            .items()
            .unwrap();
        assert_eq!(
            sop[0]
                .element(tags::REFERENCED_SOP_INSTANCE_UID)
                .unwrap()
                .to_str()
                .unwrap(),
            c.uid
        );
    }
    // The C-ECHO and the metrics saw it all.
    running.stop();
}

#[test]
fn resends_are_idempotent_and_conflicts_refused() {
    let data = tempfile::tempdir().unwrap();
    let running = start(data.path(), None);
    let c = cine(20);
    let bytes = encode(&c);
    send(&running, std::slice::from_ref(&bytes)).unwrap();
    let first = wait_done(&running.store, std::slice::from_ref(&c.uid));
    let processed_at = |s: &Store| s.entry(&c.uid).unwrap().unwrap().result;
    let before = processed_at(&running.store);
    // The same bytes again: success, nothing reprocessed.
    send(&running, std::slice::from_ref(&bytes)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(processed_at(&running.store), before);
    assert_eq!(
        running.store.entry(&c.uid).unwrap().unwrap().state,
        first[0]["status"]
            .as_str()
            .map(|s| if s == "rejected" { "rejected" } else { "done" })
            .unwrap()
    );
    // Other content under the same UID: refused with a failure status.
    let other = encode(&Cine {
        seed: 99,
        ..c.clone()
    });
    match send(&running, &[other]) {
        Err(dimse::DimseError::Status(code)) => assert_eq!(code, dimse::status::DUPLICATE_CONFLICT),
        other => panic!("expected a conflict status, got {other:?}"),
    }
    let counts = running.store.counts().unwrap();
    let inputs: i64 = counts
        .iter()
        .filter(|(s, _)| s != "report")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(inputs, 1, "{counts:?}");
    running.stop();
}

#[test]
fn restart_resumes_pending_work_exactly_once() {
    let data = tempfile::tempdir().unwrap();
    // Instances accepted while no worker ran (as after a crash between intake and processing).
    let uids: Vec<String> = {
        let store = Store::open(data.path()).unwrap();
        (30..34)
            .map(|n| {
                let c = cine(n);
                let bytes = encode(&c);
                let obj = bedside_dicom::read::read_bytes(&bytes).unwrap();
                store.put(&bytes, &obj, Source::Dimse).unwrap();
                c.uid
            })
            .collect()
    };
    let running = start(data.path(), None);
    let results = wait_done(&running.store, &uids);
    assert!(
        results.iter().all(|r| r["status"] == "result"),
        "{results:?}"
    );
    let reports = running
        .store
        .counts()
        .unwrap()
        .into_iter()
        .find(|(s, _)| s == "report")
        .unwrap()
        .1;
    assert_eq!(reports, 4);
    running.stop();
    // A second restart finds nothing to do.
    let running = start(data.path(), None);
    std::thread::sleep(Duration::from_millis(300));
    let reports = running
        .store
        .counts()
        .unwrap()
        .into_iter()
        .find(|(s, _)| s == "report")
        .unwrap()
        .1;
    assert_eq!(reports, 4);
    running.stop();
}

#[test]
fn reports_are_forwarded_to_the_destination() {
    // A second service stands in for the PACS; the first sends its reports there.
    let pacs_data = tempfile::tempdir().unwrap();
    let pacs = start(pacs_data.path(), None);
    let data = tempfile::tempdir().unwrap();
    let mut d = dest(&pacs);
    d.ae_title = "BEDSIDE".into();
    let running = start(data.path(), Some(d));
    let c = cine(40);
    send(&running, &[encode(&c)]).unwrap();
    let r = wait_done(&running.store, std::slice::from_ref(&c.uid));
    let report_uid = r[0]["report_sop_instance_uid"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !running.store.entry(&c.uid).unwrap().unwrap().sent {
        assert!(Instant::now() < deadline, "report not delivered");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The "PACS" received the SR (and, having no SR route, reports it as the wrong modality).
    let got = wait_done(&pacs.store, std::slice::from_ref(&report_uid));
    assert!(reasons(&got[0]).contains(&"wrong_modality".to_string()));
    running.stop();
    pacs.stop();
}

fn raw_association(r: &Running) -> dicom_ul::association::client::ClientAssociation<TcpStream> {
    ClientAssociationOptions::new()
        .calling_ae_title("TESTSCU")
        .called_ae_title("BEDSIDE")
        .with_presentation_context(US_MF, vec![bedside_dicom::ts::EXPLICIT_VR_LE])
        .with_abstract_syntax(dimse::VERIFICATION)
        .establish(r.dicom_addr)
        .unwrap()
}

fn store_rq(uid: &str) -> Vec<u8> {
    let mut cmd = InMemDicomObject::new_empty();
    put_str(&mut cmd, tags::AFFECTED_SOP_CLASS_UID, VR::UI, US_MF);
    put_u16(&mut cmd, tags::COMMAND_FIELD, &[0x0001]);
    put_u16(&mut cmd, tags::MESSAGE_ID, &[7]);
    put_u16(&mut cmd, tags::PRIORITY, &[0]);
    put_u16(&mut cmd, tags::COMMAND_DATA_SET_TYPE, &[0]);
    put_str(&mut cmd, tags::AFFECTED_SOP_INSTANCE_UID, VR::UI, uid);
    dimse::encode_command(cmd).unwrap()
}

fn pdv(pc: u8, kind: PDataValueType, data: Vec<u8>) -> Pdu {
    Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            value_type: kind,
            is_last: true,
            data,
        }],
    }
}

fn status_of(pdu: Pdu) -> u16 {
    let Pdu::PData { data } = pdu else {
        panic!("expected P-DATA, got {pdu:?}")
    };
    let cmd = InMemDicomObject::read_dataset_with_ts(
        data[0].data.as_slice(),
        &dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased(),
    )
    .unwrap();
    cmd.element(tags::STATUS).unwrap().to_int::<u16>().unwrap()
}

#[test]
fn malformed_input_gets_a_failure_status_or_an_abort_never_a_crash() {
    let data = tempfile::tempdir().unwrap();
    let running = start(data.path(), None);
    let pc_store = |a: &dicom_ul::association::client::ClientAssociation<TcpStream>| {
        a.presentation_contexts()
            .iter()
            .find(|p| p.abstract_syntax == US_MF)
            .unwrap()
            .id
    };

    // 1. A data set that does not parse: failure status, and the association goes on to a
    //    clean release.
    let mut a = raw_association(&running);
    let pc = pc_store(&a);
    a.send(&pdv(pc, PDataValueType::Command, store_rq("2.25.501")))
        .unwrap();
    a.send(&pdv(
        pc,
        PDataValueType::Data,
        vec![0x08, 0x00, 0x16, 0x00, 0xFF, 0xFF, 0xFF, 0x7F, 1, 2, 3],
    ))
    .unwrap();
    assert_eq!(
        status_of(a.receive().unwrap()),
        dimse::status::CANNOT_UNDERSTAND
    );
    // 2. A data set whose UID disagrees with the command: failure status.
    let good = encode(&cine(50));
    let obj = bedside_dicom::read::read_bytes(&good).unwrap();
    let mut body = Vec::new();
    obj.write_dataset_with_ts(
        &mut body,
        &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
    )
    .unwrap();
    a.send(&pdv(pc, PDataValueType::Command, store_rq("2.25.502")))
        .unwrap();
    a.send(&pdv(pc, PDataValueType::Data, body)).unwrap();
    assert_eq!(
        status_of(a.receive().unwrap()),
        dimse::status::DATASET_MISMATCH
    );
    a.release().unwrap();

    // 3. An unreadable command set: the service aborts the association.
    let mut a = raw_association(&running);
    let pc = pc_store(&a);
    a.send(&pdv(
        pc,
        PDataValueType::Command,
        vec![0xDE, 0xAD, 0xBE, 0xEF, 0xFF, 0xFF, 0xFF, 0xFF],
    ))
    .unwrap();
    assert!(matches!(a.receive(), Ok(Pdu::AbortRQ { .. }) | Err(_)));

    // 4. Data without a command: abort.
    let mut a = raw_association(&running);
    let pc = pc_store(&a);
    a.send(&pdv(pc, PDataValueType::Data, vec![1, 2, 3, 4]))
        .unwrap();
    assert!(matches!(a.receive(), Ok(Pdu::AbortRQ { .. }) | Err(_)));

    // 5. Garbage bytes instead of an association request; a calling AE not allowed in.
    let mut s = TcpStream::connect(running.dicom_addr).unwrap();
    s.write_all(&[0x01, 0x00, 0x00, 0x00, 0x00, 0x04, 0xDE, 0xAD, 0xBE, 0xEF])
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 64];
    let _ = s.read(&mut buf);
    let refused = ClientAssociationOptions::new()
        .calling_ae_title("STRANGER")
        .called_ae_title("BEDSIDE")
        .with_abstract_syntax(dimse::VERIFICATION)
        .establish(running.dicom_addr);
    assert!(refused.is_err());

    // The service still works: C-ECHO succeeds and nothing was queued.
    let mut a = raw_association(&running);
    let pc = a
        .presentation_contexts()
        .iter()
        .find(|p| p.abstract_syntax == dimse::VERIFICATION)
        .unwrap()
        .id;
    let mut echo = InMemDicomObject::new_empty();
    put_str(
        &mut echo,
        tags::AFFECTED_SOP_CLASS_UID,
        VR::UI,
        dimse::VERIFICATION,
    );
    put_u16(&mut echo, tags::COMMAND_FIELD, &[0x0030]);
    put_u16(&mut echo, tags::MESSAGE_ID, &[1]);
    put_u16(&mut echo, tags::COMMAND_DATA_SET_TYPE, &[0x0101]);
    a.send(&pdv(
        pc,
        PDataValueType::Command,
        dimse::encode_command(echo).unwrap(),
    ))
    .unwrap();
    assert_eq!(status_of(a.receive().unwrap()), dimse::status::SUCCESS);
    a.release().unwrap();
    assert!(running.store.counts().unwrap().is_empty());
    running.stop();
}

/// `GET path` over plain HTTP/1.1; returns the status code and the body.
fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "this helper reads whole bodies only"
    );
    (code, raw[split + 4..].to_vec())
}

fn start_explaining(data: &Path, explain: Option<ExplainRoute>) -> Running {
    let mut c = config(data, None);
    for r in &mut c.route {
        r.explain = explain.clone();
    }
    bedside_serve::start(c, vec![model()], Device::flex()).unwrap()
}

fn u16_of(obj: &dicom_object::DefaultDicomObject, tag: dicom_core::Tag) -> u16 {
    obj.element(tag).unwrap().to_int::<u16>().unwrap()
}

fn str_of(obj: &dicom_object::DefaultDicomObject, tag: dicom_core::Tag) -> String {
    obj.element(tag)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_string()
}

#[test]
fn an_explanation_secondary_capture_travels_with_the_report() {
    let c = cine(77);
    let source = encode(&c);
    let pacs_data = tempfile::tempdir().unwrap();
    let pacs = start(pacs_data.path(), None);
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path(), Some(dest(&pacs)));
    for r in &mut cfg.route {
        r.explain = Some(ExplainRoute::default());
    }
    let running = bedside_serve::start(cfg, vec![model()], Device::flex()).unwrap();
    send(&running, std::slice::from_ref(&source)).unwrap();
    let r = wait_done(&running.store, std::slice::from_ref(&c.uid));
    assert_eq!(r[0]["status"], "result", "{}", r[0]);
    let sc_uid = r[0]["explanation_sop_instance_uid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(r[0]["timings_s"].to_string().contains("explain"));
    let bytes = std::fs::read(running.store.object_path(&sc_uid)).unwrap();

    // Over REST, the same object; an unknown instance is a 404.
    let (code, body) = http_get(
        running.http_addr,
        &format!("/api/v1/instances/{}/explanation", c.uid),
    );
    assert_eq!((code, body.len()), (200, bytes.len()));
    assert_eq!(body, bytes);
    assert_eq!(
        http_get(running.http_addr, "/api/v1/instances/2.25.999/explanation").0,
        404
    );

    // What the object says.
    let sc = bedside_dicom::read::read_bytes(&bytes).unwrap();
    assert_eq!(
        str_of(&sc, tags::SOP_CLASS_UID),
        bedside_dicom::sc::MULTIFRAME_TRUE_COLOR_SC
    );
    assert_eq!(
        str_of(&sc, tags::STUDY_INSTANCE_UID),
        format!("{}.1", c.uid)
    );
    assert_eq!(str_of(&sc, tags::PATIENT_ID), "P1");
    assert_ne!(
        str_of(&sc, tags::SERIES_INSTANCE_UID),
        format!("{}.2", c.uid)
    );
    let source_item = &sc
        .element(tags::SOURCE_IMAGE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()[0];
    assert_eq!(
        source_item
            .element(tags::REFERENCED_SOP_INSTANCE_UID)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0'),
        c.uid
    );
    // The tiny bundle: 4-frame clips of 16x16, every second frame of a 33.3 ms cine.
    let frames: usize = str_of(&sc, tags::NUMBER_OF_FRAMES).parse().unwrap();
    let (rows, cols) = (u16_of(&sc, tags::ROWS), u16_of(&sc, tags::COLUMNS));
    assert_eq!((frames, rows, cols), (4, 16, 16));
    let frame_time: f64 = str_of(&sc, tags::FRAME_TIME).parse().unwrap();
    assert!((frame_time - 66.6).abs() < 0.01, "{frame_time}");
    let pixels = sc.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    assert_eq!(pixels.len(), 4 * 16 * 16 * 3);
    // A map was drawn: some pixels are coloured (not grey), and not all alike.
    let coloured = pixels
        .chunks_exact(3)
        .filter(|p| p[0] != p[1] || p[1] != p[2])
        .count();
    let distinct: std::collections::BTreeSet<&[u8]> = pixels.chunks_exact(3).collect();
    assert!(
        coloured > 0 && distinct.len() > 10,
        "{coloured} coloured, {} distinct",
        distinct.len()
    );

    // The destination got the report and the capture.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !running.store.entry(&c.uid).unwrap().unwrap().sent {
        assert!(Instant::now() < deadline, "not delivered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let report_uid = r[0]["report_sop_instance_uid"]
        .as_str()
        .unwrap()
        .to_string();
    let got = wait_done(&pacs.store, &[report_uid, sc_uid.clone()]);
    assert_eq!(got.len(), 2);
    assert_eq!(
        std::fs::read(pacs.store.object_path(&sc_uid)).unwrap(),
        bytes
    );

    // DICOM validity by an independent validator.
    // dciodvfy prints its usage and exits non-zero without arguments; only a missing program
    // fails to spawn.
    if std::process::Command::new("dciodvfy").output().is_ok() {
        let file = data.path().join("sc.dcm");
        std::fs::write(&file, &bytes).unwrap();
        let out = std::process::Command::new("dciodvfy")
            .arg(&file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("Error")).collect();
        assert!(errors.is_empty(), "dciodvfy: {errors:#?}");
        assert!(text.contains("MultiframeTrueColorSCImage"), "{text}");
        eprintln!("dciodvfy on the capture:\n{text}");
    } else {
        assert!(
            !std::env::var("BEDSIDE_REQUIRE_PEERS").is_ok_and(|v| v == "1"),
            "required peer missing: dciodvfy (Debian dicom3tools)"
        );
        eprintln!("skipped: dciodvfy (Debian dicom3tools) is not installed");
    }
    running.stop();
    pacs.stop();

    // Processing the same instance again (a fresh service) gives the same capture; without
    // `[route.explain]` there is none.
    for explain in [Some(ExplainRoute::default()), None] {
        let again = tempfile::tempdir().unwrap();
        let running = start_explaining(again.path(), explain.clone());
        send(&running, std::slice::from_ref(&source)).unwrap();
        let r = wait_done(&running.store, std::slice::from_ref(&c.uid));
        match explain {
            Some(_) => {
                assert_eq!(r[0]["explanation_sop_instance_uid"], sc_uid.as_str());
                let other = bedside_dicom::read::read_bytes(
                    &std::fs::read(running.store.object_path(&sc_uid)).unwrap(),
                )
                .unwrap();
                assert_eq!(
                    other.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap(),
                    pixels
                );
            }
            None => {
                assert!(r[0]["explanation_sop_instance_uid"].is_null());
                let (code, _) = http_get(
                    running.http_addr,
                    &format!("/api/v1/instances/{}/explanation", c.uid),
                );
                assert_eq!(code, 404);
            }
        }
        running.stop();
    }
}
