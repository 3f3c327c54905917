//! Integrated Gradients on one clip of the compact R(2+1)D, beside Captum on PyTorch.
//!
//! ```sh
//! cargo run --release -p bedside-explain --example bench_ig -- --threads 2
//! #   --steps 32 --frames 32 --size 112 --width 0.25 --batch 8 --repeats 2
//! #   --python PATH|none   (default .venv-torch/bin/python; needs torch, torchvision, captum)
//! ```
//!
//! The network is torchvision's R(2+1)D-18 at width 0.25 with one block per stage, random
//! weights (the same for both: the Python side saves its state_dict and this program loads
//! it), BatchNorm in inference mode. Each runtime computes Integrated Gradients with the
//! Gauss–Legendre rule, zero baseline and the same internal batch size; the time is the best of
//! `--repeats` runs after a warm-up, the memory the process's peak resident set (`VmHWM`, Python:
//! `ru_maxrss`). Every measurement runs in a fresh process so that the thread pools are sized
//! from `RAYON_NUM_THREADS` / `torch.set_num_threads`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use bedside_explain::gradient::{Baseline, IgOptions, Quadrature, integrated_gradients};
use bedside_explain::{Explainee, Target};
use bedside_ml::data::clips::VideoArray;
use bedside_ml::video::{VideoArch, VideoResNet, VideoResNetConfig};
use bedside_ml::weights::{LoadMode, WeightSource, load_torchvision_video};
use burn::tensor::Device;

#[derive(Debug, Clone)]
struct Options {
    threads: usize,
    steps: usize,
    frames: usize,
    size: usize,
    width: f64,
    batch: usize,
    repeats: usize,
    python: Option<PathBuf>,
    weights: Option<PathBuf>,
    child: bool,
}

fn parse() -> Result<Options, String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-torch/bin/python");
    let mut o = Options {
        threads: 2,
        steps: 32,
        frames: 32,
        size: 112,
        width: 0.25,
        batch: 8,
        repeats: 2,
        python: venv.exists().then_some(venv),
        weights: None,
        child: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--child" {
            o.child = true;
            continue;
        }
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--threads" => o.threads = number(&value)?,
            "--steps" => o.steps = number(&value)?,
            "--frames" => o.frames = number(&value)?,
            "--size" => o.size = number(&value)?,
            "--batch" => o.batch = number(&value)?,
            "--repeats" => o.repeats = number(&value)?.max(1),
            "--width" => o.width = value.parse().map_err(|e| format!("--width: {e}"))?,
            "--python" => o.python = (value != "none").then(|| PathBuf::from(value)),
            "--weights" => o.weights = Some(PathBuf::from(value)),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(o)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU seconds (user + system) of this process so far, from `/proc/self/stat` (100 Hz ticks):
/// on a shared machine the wall time depends on the other load, the CPU time much less.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(f64::NAN)
}

fn network(o: &Options, device: &Device) -> VideoResNet {
    device.seed(20_261_128);
    let model = VideoResNetConfig::new(VideoArch::R2Plus1d18)
        .with_width(o.width)
        .with_layers([1, 1, 1, 1])
        .with_num_classes(2)
        .init(device)
        .expect("valid network");
    match &o.weights {
        // The state_dict PyTorch measured with, so both runtimes explain the same function.
        Some(path) => {
            load_torchvision_video(model, &WeightSource::File(path.clone()), LoadMode::Strict)
                .expect("the benchmark weights load")
                .0
        }
        None => model,
    }
}

fn clip(o: &Options) -> VideoArray {
    let mut rng = bedside_core::rng::Rng::seed_from(7);
    let n = 3 * o.frames * o.size * o.size;
    VideoArray {
        channels: 3,
        frames: o.frames,
        height: o.size,
        width: o.size,
        data: (0..n).map(|_| rng.normal() as f32).collect(),
    }
}

/// Measure in this process (rayon's pool is already sized by the parent).
fn child(o: &Options) {
    let device = Device::flex();
    let model = Explainee::from_backbone(network(o, &device), &device);
    let x = clip(o);
    let options = IgOptions {
        steps: o.steps,
        quadrature: Quadrature::GaussLegendre,
        baseline: Baseline::Zeros,
        internal_batch_size: o.batch,
    };
    let target = Target::Output(1);
    let (mut best, mut best_cpu) = (f64::INFINITY, f64::INFINITY);
    let mut delta = 0.0;
    for run in 0..=o.repeats {
        let (start, cpu) = (Instant::now(), cpu_seconds());
        let r = integrated_gradients(&model, &target, &x, &options).expect("IG runs");
        let (s, c) = (start.elapsed().as_secs_f64(), cpu_seconds() - cpu);
        delta = r.delta;
        if run > 0 {
            best = best.min(s);
            best_cpu = best_cpu.min(c);
        }
    }
    println!(
        "RESULT seconds={best:.3} cpu={best_cpu:.2} peak_mib={:.0} delta={delta:.3e}",
        peak_rss_mib()
    );
}

fn result_field(out: &str, key: &str) -> Option<f64> {
    out.lines()
        .find(|l| l.starts_with("RESULT"))?
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))?
        .parse()
        .ok()
}

fn main() {
    bedside_core::alloc::retain_large_allocations();
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench_ig: {e}");
            std::process::exit(2);
        }
    };
    if o.child {
        child(&o);
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    let args: Vec<String> = std::env::args().skip(1).collect();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "IG, {} Gauss–Legendre steps, internal batch {}, one clip 3×{}×{}×{}, R(2+1)D width {} layers [1,1,1,1], {} threads; load average {}",
        o.steps,
        o.batch,
        o.frames,
        o.size,
        o.size,
        o.width,
        o.threads,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let dir = std::env::temp_dir().join(format!("bench_ig_{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let weights = dir.join("weights.safetensors");
    let mut captum = None;
    if let Some(python) = &o.python {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/python/bench_ig_captum.py");
        let result = Command::new(python)
            .arg(&script)
            .args(["--weights", &weights.display().to_string()])
            .args(["--threads", &o.threads.to_string()])
            .args(["--steps", &o.steps.to_string()])
            .args(["--frames", &o.frames.to_string()])
            .args(["--size", &o.size.to_string()])
            .args(["--width", &o.width.to_string()])
            .args(["--batch", &o.batch.to_string()])
            .args(["--repeats", &o.repeats.to_string()])
            .output();
        match result {
            Ok(out) if out.status.success() => {
                captum = Some(String::from_utf8_lossy(&out.stdout).to_string());
            }
            Ok(out) => eprintln!(
                "Captum failed: {}",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            ),
            Err(e) => eprintln!("Captum skipped ({}): {e}", python.display()),
        }
    }
    let mut command = Command::new(&exe);
    command
        .args(&args)
        .arg("--child")
        .env("RAYON_NUM_THREADS", o.threads.to_string());
    if captum.is_some() {
        command.args(["--weights", &weights.display().to_string()]);
    }
    let output = command.output().expect("run the measurement");
    let _ = std::fs::remove_dir_all(&dir);
    let ours = String::from_utf8_lossy(&output.stdout).to_string();
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        std::process::exit(1);
    }
    let (s, m) = (
        result_field(&ours, "seconds").unwrap_or(f64::NAN),
        result_field(&ours, "peak_mib").unwrap_or(f64::NAN),
    );
    println!(
        "| runtime | wall s | CPU s | peak RSS MiB | completeness delta |\n|---|---|---|---|---|\n| bedside (burn flex) | {s:.2} | {:.2} | {m:.0} | {:.2e} |",
        result_field(&ours, "cpu").unwrap_or(f64::NAN),
        result_field(&ours, "delta").unwrap_or(f64::NAN)
    );
    if let Some(text) = captum {
        let ps = result_field(&text, "seconds").unwrap_or(f64::NAN);
        let pm = result_field(&text, "peak_mib").unwrap_or(f64::NAN);
        println!(
            "| Captum {} on PyTorch {} (CPU) | {ps:.2} | {:.2} | {pm:.0} | {:.2e} |",
            text.lines()
                .find_map(|l| l.strip_prefix("CAPTUM "))
                .unwrap_or("?"),
            text.lines()
                .find_map(|l| l.strip_prefix("TORCH "))
                .unwrap_or("?"),
            result_field(&text, "cpu").unwrap_or(f64::NAN),
            result_field(&text, "delta").unwrap_or(f64::NAN)
        );
        println!(
            "ratio bedside / Captum: wall {:.2}×, CPU {:.2}×",
            s / ps,
            result_field(&ours, "cpu").unwrap_or(f64::NAN)
                / result_field(&text, "cpu").unwrap_or(f64::NAN)
        );
    }
}
