#!/usr/bin/env python3
"""End-to-end latency of `bedside serve`, from C-STORE to the SR stored in a real PACS.

A phantom cohort of 64-frame 480x640 ultrasound cines is sent with DCMTK `storescu` to a
running `bedside serve`, which sends each result (a Comprehensive SR) by C-STORE to a local
Orthanc. Senders run closed-loop: each sends a study, waits until the service reports the SR
acknowledged by Orthanc, then sends the next. For 1 and 4 concurrent senders it prints p50/p95/
p99 of the end-to-end latency, split into stages, and the throughput; then runs the same bundle
over the same studies with plain `bedside predict` (after `bedside curate`) as the floor.

Times come from one clock: the sender's wall clock before `storescu` starts, and the service's
own records (received_at, per-stage timings, processed_at, sent_at; REST /api/v1/instances).

    python3 tools/bench/serve_latency.py --bundle bedside-demo/bundles/reduced-ef
    python3 tools/bench/serve_latency.py --bundle B --studies 40 --senders 1,4,8
    python3 tools/bench/serve_latency.py --bundle B --senders 1 --explain gradcam   # + secondary capture

Needs: a release `bedside` (target/release/bedside or --bedside), DCMTK storescu, Orthanc.
Standard library only.
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

US_MF = "1.2.840.10008.5.1.4.1.1.3.1"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, json.loads(resp.read() or b"null")


def wait_http(url, proc, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def tool(name):
    path = shutil.which(name)
    if not path:
        raise SystemExit(f"`{name}` not found: install it (apt-get install dcmtk orthanc)")
    return path


def pct(values, q):
    """Percentile with linear interpolation (NumPy's default)."""
    v = sorted(values)
    if not v:
        return float("nan")
    pos = q / 100 * (len(v) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def header_value(dcmdump, path, tag):
    out = subprocess.run([dcmdump, "-Un", "+P", tag, "-q", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return out.split("[", 1)[1].split("]", 1)[0].rstrip("\0 ")


JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def start_orthanc(exe, work, serve_port):
    http, dicom = free_port(), free_port()
    config = {
        "Name": "bedside-bench-pacs", "StorageDirectory": str(work / "orthanc"),
        "IndexDirectory": str(work / "orthanc"), "HttpPort": http, "DicomPort": dicom,
        "DicomAet": "ORTHANC", "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomModalities": {"bedside": ["BEDSIDE", "127.0.0.1", serve_port]}, "Plugins": [],
    }
    (work / "orthanc.json").write_text(json.dumps(config))
    proc = subprocess.Popen([exe, str(work / "orthanc.json")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    root = f"http://127.0.0.1:{http}"
    wait_http(root + "/system", proc)
    return proc, root, dicom


def start_serve(bedside, bundle, name, work, dicom_port, orthanc_dicom, clips, tag, explain=None):
    http = free_port()
    data = work / f"serve-{tag}"
    text = (
        f'ae_title = "BEDSIDE"\nallowed_calling_aes = ["BENCH"]\ndata_dir = "{data}"\n'
        f'[listen]\ndicom = "127.0.0.1:{dicom_port}"\nhttp = "127.0.0.1:{http}"\n'
        f'[worker]\npoll_ms = 20\nmax_clips = {clips}\n'
        f'[[route]]\nbundle = "{name}"\nmodality = ["US"]\nsop_class = ["{US_MF}"]\n'
        '[route.qc]\nmin_fps = 5.0\nmax_fps = 200.0\nrequire_calibration = true\n'
        f'[destination]\nhost = "127.0.0.1"\nport = {orthanc_dicom}\nae_title = "ORTHANC"\n'
    )
    if explain:
        text += f'[route.explain]\nmethod = "{explain}"\n'
    (work / f"serve-{tag}.toml").write_text(text)
    proc = subprocess.Popen([str(bedside), "serve", "--bundle", str(bundle), "--config",
                             str(work / f"serve-{tag}.toml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    root = f"http://127.0.0.1:{http}"
    wait_http(root + "/healthz", proc)
    return proc, root


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def one_study(storescu, port, root, path, uid, extra, timeout=600):
    t0 = time.time()
    r = subprocess.run([storescu, *extra, "-aet", "BENCH", "-aec", "BEDSIDE", "127.0.0.1", str(port), str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"storescu failed: {r.stderr[-500:]}")
    acked = time.time()
    deadline = t0 + timeout
    while time.time() < deadline:
        try:
            _, status = get_json(f"{root}/api/v1/instances/{uid}")
        except urllib.error.HTTPError:
            status = None
        if status and status.get("sent_at"):
            _, result = get_json(f"{root}/api/v1/instances/{uid}/result")
            if result.get("status") not in ("result", "indeterminate"):
                raise RuntimeError(f"study was not analysed: {result.get('status')} {result.get('qc')}")
            stages = dict(result.get("timings_s", []))
            return {
                "t0": t0,
                "acked": acked - t0,
                "e2e": status["sent_at"] - t0,
                "receive": status["received_at"] - t0,
                "queue": status["processed_at"] - status["received_at"] - stages.get("total", 0.0),
                "qc": stages.get("qc", 0.0),
                "decode": stages.get("decode", 0.0),
                "inference": stages.get("inference", 0.0),
                "explain": stages.get("explain", 0.0),
                "report": stages.get("report", 0.0),
                "send": status["sent_at"] - status["processed_at"],
            }
        time.sleep(0.005)
    raise RuntimeError(f"no result for {uid} within {timeout} s")


def run_load(storescu, port, root, files, senders):
    rows, errors = [], []
    lock = threading.Lock()
    queue = list(files)

    def sender():
        while True:
            with lock:
                if not queue:
                    return
                path, uid, extra = queue.pop(0)
            try:
                row = one_study(storescu, port, root, path, uid, extra)
                with lock:
                    rows.append(row)
            except Exception as e:  # reported below; the other senders go on
                with lock:
                    errors.append(str(e))

    start = time.time()
    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return rows, errors, time.time() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True, type=Path, help="bundle folder (bedside export)")
    ap.add_argument("--bedside", type=Path, default=Path("target/release/bedside"))
    ap.add_argument("--studies", type=int, default=16, help="studies per sender setting")
    ap.add_argument("--senders", default="1,4", help="comma-separated sender counts")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--rows", type=int, default=480)
    ap.add_argument("--columns", type=int, default=640)
    ap.add_argument("--clips", type=int, default=4, help="clips per study (serve and predict)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--explain", metavar="METHOD",
                    help="also make the explanation secondary capture ([route.explain] method, e.g. gradcam)")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    bedside = args.bedside.resolve()
    if not bedside.is_file():
        raise SystemExit(f"{bedside} not found: cargo build --release -p bedside-cli")
    storescu, dcmdump, orthanc_exe = tool("storescu"), tool("dcmdump"), tool("Orthanc")
    name = json.loads((args.bundle / "bundle.json").read_text())["name"]
    senders = [int(s) for s in args.senders.split(",") if s.strip()]
    total = args.warmup + args.studies * len(senders)

    with tempfile.TemporaryDirectory(prefix="bedside-bench-serve-") as tmp:
        work = Path(tmp)
        print(f"synthesising {total} studies ({args.frames} frames, {args.rows}x{args.columns}) ...", flush=True)
        subprocess.run([str(bedside), "-q", "synth", "phantom", str(work / "cohort"), "--patients", str(total),
                        "--rows", str(args.rows), "--columns", str(args.columns),
                        "--frames", f"{args.frames}:{args.frames}", "--no-masks"], check=True)
        files = sorted((work / "cohort" / "dicom").rglob("*.dcm"))[:total]
        # storescu has no JPEG codec: JPEG files go over a JPEG Baseline context (-xy).
        pairs = [(f, header_value(dcmdump, f, "0008,0018"),
                  ["-xy"] if header_value(dcmdump, f, "0002,0010") == JPEG_BASELINE else [])
                 for f in files]
        serve_port = free_port()
        orthanc, orthanc_root, orthanc_dicom = start_orthanc(orthanc_exe, work, serve_port)
        results = {}
        try:
            proc, root = start_serve(bedside, args.bundle.resolve(), name, work, serve_port, orthanc_dicom,
                                     args.clips, "bench", args.explain)
            try:
                if args.warmup:
                    run_load(storescu, serve_port, root, pairs[:args.warmup], 1)
                at = args.warmup
                for n in senders:
                    batch = pairs[at:at + args.studies]
                    at += args.studies
                    rows, errors, wall = run_load(storescu, serve_port, root, batch, n)
                    if errors:
                        print(f"  {len(errors)} errors with {n} senders; first: {errors[0]}", file=sys.stderr)
                    results[n] = (rows, wall)
            finally:
                stop(proc)
        finally:
            stop(orthanc)

        # The floor: the same bundle over the same studies with plain `bedside predict`.
        subprocess.run([str(bedside), "-q", "curate", str(work / "cohort" / "dicom"), "--out", str(work / "curated"),
                        "--resize", str(json.loads((args.bundle / "bundle.json").read_text())["model"]["input"]
                                        .get("resized_copy") or 112)], check=True)
        t = time.time()
        subprocess.run([str(bedside), "-q", "predict", "--bundle", str(args.bundle), "--manifest",
                        str(work / "curated" / "metadata.csv"), "--study", "sop_instance_uid",
                        "--max-clips", str(args.clips), "--out", str(work / "predict.csv")], check=True)
        predict_per_study = (time.time() - t) / len(files)

    stages = ["receive", "queue", "qc", "decode", "inference", "explain", "report", "send"]
    report = {"bundle": name, "frames": args.frames, "rows": args.rows, "columns": args.columns,
              "clips": args.clips, "predict_s_per_study": predict_per_study, "settings": {}}
    print()
    print(f"bundle {name}; {args.frames}-frame {args.rows}x{args.columns} cines; {args.clips} clips per study")
    print(f"floor: bedside predict {predict_per_study * 1000:.0f} ms per study (curated arrays, same clips)")
    for n, (rows, wall) in results.items():
        if not rows:
            continue
        e2e = [r["e2e"] for r in rows]
        inf = [r["inference"] for r in rows]
        p50, p95, p99 = pct(e2e, 50), pct(e2e, 95), pct(e2e, 99)
        # The explanation is work the user asked for, not service overhead.
        overhead = (p50 - pct([r["explain"] for r in rows], 50)) / pct(inf, 50) - 1
        # With more senders than the worker can keep up with, studies wait in the queue: that is
        # capacity, not per-study work, so it is also shown without the wait.
        work = pct([r["e2e"] - r["queue"] - r["explain"] for r in rows], 50) / pct(inf, 50) - 1
        per_min = len(rows) / wall * 60
        print()
        print(f"{n} sender(s), {len(rows)} studies, {per_min:.1f} studies/min")
        print(f"  end to end  p50 {p50 * 1000:7.0f} ms  p95 {p95 * 1000:7.0f} ms  p99 {p99 * 1000:7.0f} ms")
        for s in stages:
            v = [r[s] for r in rows]
            print(f"  {s:<10}  p50 {pct(v, 50) * 1000:7.0f} ms  p95 {pct(v, 95) * 1000:7.0f} ms")
        print(f"  service overhead beyond inference at p50: {overhead * 100:.1f} %  (goal <= 10 %)")
        print(f"  the same without the queue wait: {work * 100:.1f} %")
        print(f"  end to end / predict floor at p50: {p50 / predict_per_study:.2f}x")
        report["settings"][str(n)] = {
            "studies": len(rows), "studies_per_min": per_min, "p50_s": p50, "p95_s": p95, "p99_s": p99,
            "overhead_p50": overhead, "overhead_without_queue_p50": work, "ratio_to_predict_p50": p50 / predict_per_study,
            "stages_p50_s": {s: pct([r[s] for r in rows], 50) for s in stages},
        }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
