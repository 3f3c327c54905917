#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Frames per second of WADO-RS frame retrieval, the way a viewer plays a cine: one
//! `GET …/frames/{n}` per frame with `Accept: multipart/related; type=application/octet-stream;
//! transfer-syntax=*`, over keep-alive HTTP/1.1 connections on loopback.
//!
//! ```sh
//! cargo run --release -p bedside-annotate --example bench_frames                 # 600x800x64, native
//! cargo run --release -p bedside-annotate --example bench_frames -- --jpeg
//! # Same file in a peer server (e.g. Orthanc + DICOMweb plugin), side by side:
//! cargo run --release -p bedside-annotate --example bench_frames -- \
//!     --peer http://127.0.0.1:8043/dicom-web --keep bench.dcm
//! ```
//!
//! A peer Orthanc (Debian `orthanc` + `orthanc-dicomweb`) for this comparison needs only a small
//! configuration file: `"HttpPort": 8043`, `"RemoteAccessAllowed": false`,
//! `"AuthenticationEnabled": false`, `"Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"]`,
//! `"DicomWeb": {"Enable": true, "Root": "/dicom-web/"}` (no `"Host"`, so URLs keep the port),
//! plus storage and index folders; start it with `Orthanc config.json`.
//!
//! The cine is a phantom study (`bedside synth phantom` with one patient). With `--keep FILE`
//! it is also written to FILE so it can be uploaded to the peer first (the bench uploads it by
//! STOW-RS itself when `--peer` is given). Prints frames/s and MB/s per server and the ratio.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bedside_annotate::{import, server, store::DiskStore};
use dicom_dictionary_std::tags;

const ACCEPT: &str = "multipart/related; type=application/octet-stream; transfer-syntax=*";

struct Args {
    jpeg: bool,
    rounds: usize,
    connections: usize,
    peer: Option<String>,
    keep: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        jpeg: false,
        rounds: 20,
        connections: 4,
        peer: None,
        keep: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--jpeg" => a.jpeg = true,
            "--rounds" => a.rounds = it.next().unwrap().parse().unwrap(),
            "--connections" => a.connections = it.next().unwrap().parse().unwrap(),
            "--peer" => a.peer = Some(it.next().unwrap()),
            "--keep" => a.keep = Some(PathBuf::from(it.next().unwrap())),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// host:port and path prefix of an http:// URL.
fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("http:// URL");
    match rest.split_once('/') {
        Some((host, path)) => (host.to_string(), format!("/{}", path.trim_end_matches('/'))),
        None => (rest.to_string(), String::new()),
    }
}

/// The session cookie of our server (peers ignore it).
static COOKIE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// One keep-alive GET; returns the body length.
fn get(reader: &mut BufReader<TcpStream>, host: &str, path: &str) -> usize {
    let cookie = COOKIE
        .get()
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: {ACCEPT}\r\n{cookie}Connection: keep-alive\r\n\r\n"
    );
    reader.get_mut().write_all(request.as_bytes()).unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains(" 200 "), "{path}: {line}");
    let mut length = None;
    let mut chunked = false;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = Some(v.trim().parse::<usize>().unwrap());
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        let mut total = 0;
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap(), 16).unwrap();
            let mut buf = vec![0u8; size + 2];
            reader.read_exact(&mut buf).unwrap();
            total += size;
            if size == 0 {
                break;
            }
        }
        total
    } else {
        let n = length.expect("Content-Length or chunked");
        let mut buf = vec![0u8; n];
        reader.read_exact(&mut buf).unwrap();
        n
    }
}

/// Fetches every frame `rounds` times over `connections` parallel keep-alive connections.
fn measure(
    base: &str,
    instance_path: &str,
    frames: usize,
    rounds: usize,
    connections: usize,
) -> (f64, f64) {
    let (host, prefix) = split_url(base);
    // Warm-up: the first request parses the file into the server's cache.
    {
        let mut r = BufReader::new(TcpStream::connect(&host).unwrap());
        get(&mut r, &host, &format!("{prefix}{instance_path}/frames/1"));
    }
    let start = Instant::now();
    let handles: Vec<_> = (0..connections)
        .map(|c| {
            let host = host.clone();
            let path = format!("{prefix}{instance_path}");
            std::thread::spawn(move || {
                let stream = TcpStream::connect(&host).unwrap();
                stream.set_nodelay(true).unwrap();
                let mut r = BufReader::with_capacity(1 << 20, stream);
                let mut bytes = 0usize;
                let mut count = 0usize;
                for round in 0..rounds {
                    for f in (0..frames).filter(|f| (f + round) % connections == c) {
                        bytes += get(&mut r, &host, &format!("{path}/frames/{}", f + 1));
                        count += 1;
                    }
                }
                (count, bytes)
            })
        })
        .collect();
    let (mut count, mut bytes) = (0, 0);
    for h in handles {
        let (c, b) = h.join().unwrap();
        count += c;
        bytes += b;
    }
    let secs = start.elapsed().as_secs_f64();
    (count as f64 / secs, bytes as f64 / secs / 1e6)
}

fn stow(base: &str, file: &[u8]) {
    let (host, prefix) = split_url(base);
    let boundary = "benchboundary7d3f";
    let mut body = format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let mut s = TcpStream::connect(&host).unwrap();
    let head = format!(
        "POST {prefix}/studies HTTP/1.1\r\nHost: {host}\r\nAccept: application/dicom+json\r\nContent-Type: multipart/related; type=\"application/dicom\"; boundary={boundary}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    let status = reply.lines().next().unwrap_or("").to_string();
    assert!(
        status.contains(" 200 ") || status.contains(" 202 "),
        "STOW to peer: {status}"
    );
}

fn main() {
    let a = args();
    let dir = tempfile::tempdir().unwrap();
    let config = bedside_phantom::PhantomConfig {
        // Different seeds give the two encodings different UIDs, so a peer stores both.
        seed: if a.jpeg { 2 } else { 1 },
        patients: 1,
        sites: 1,
        studies_per_patient: [1, 1],
        rows: 600,
        columns: 800,
        frames: [64, 64],
        rgb_fraction: 0.0,
        mono_jpeg_fraction: if a.jpeg { 1.0 } else { 0.0 },
        in_sector_text_fraction: 0.0,
        write_masks: false,
        ..Default::default()
    };
    bedside_phantom::generate(&config, dir.path(), true, &|| {}).unwrap();
    let file = walk(&dir.path().join("dicom")).pop().unwrap();
    let bytes = std::fs::read(&file).unwrap();
    if let Some(keep) = &a.keep {
        std::fs::write(keep, &bytes).unwrap();
    }
    let obj = dicom_object::OpenFileOptions::new()
        .open_file(&file)
        .unwrap();
    let text = |t| {
        obj.element(t)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string()
    };
    let frames: usize = text(tags::NUMBER_OF_FRAMES).parse().unwrap();
    let instance_path = format!(
        "/studies/{}/series/{}/instances/{}",
        text(tags::STUDY_INSTANCE_UID),
        text(tags::SERIES_INSTANCE_UID),
        text(tags::SOP_INSTANCE_UID)
    );

    let data = tempfile::tempdir().unwrap();
    let store = DiskStore::open(data.path()).unwrap();
    import::import_path(&store, &file, |_, _| {}).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let db = Arc::new(bedside_annotate::db::AnnotateDb::open(data.path()).unwrap());
    db.add_user("bench", "bench-password", true).unwrap();
    let (_, token) = db.login("bench", "bench-password", 3600).unwrap().unwrap();
    COOKIE
        .set(format!(
            "{}={token}",
            bedside_annotate::auth::SESSION_COOKIE
        ))
        .unwrap();
    let app = server::app(Arc::new(store), db, Default::default(), Default::default());
    runtime.spawn(async move { axum::serve(listener, app).await });
    let ours = format!("http://{addr}{}", server::DICOMWEB_PREFIX);

    println!(
        "cine: {} x {} x {frames} frames, {}, {:.1} MB; {} rounds, {} keep-alive connections",
        text(tags::ROWS),
        text(tags::COLUMNS),
        if a.jpeg {
            "JPEG baseline"
        } else {
            "native 8-bit"
        },
        bytes.len() as f64 / 1e6,
        a.rounds,
        a.connections
    );
    let (fps, mbps) = measure(&ours, &instance_path, frames, a.rounds, a.connections);
    println!(
        "{:<28} {:>10.0} frames/s {:>9.0} MB/s",
        "bedside annotate", fps, mbps
    );
    if let Some(peer) = &a.peer {
        stow(peer, &bytes);
        let (pfps, pmbps) = measure(peer, &instance_path, frames, a.rounds.min(2), a.connections);
        println!("{:<28} {:>10.1} frames/s {:>9.1} MB/s", "peer", pfps, pmbps);
        println!("ratio bedside / peer: {:.1}x", fps / pfps);
    }
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
