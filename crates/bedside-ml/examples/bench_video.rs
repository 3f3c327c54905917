//! Throughput of a torchvision video ResNet on the compiled-in burn backends beside PyTorch
//! running the same architecture: inference and training-step clips per second, and the time
//! ratios to PyTorch, per thread count.
//!
//! ```text
//! cargo run --release -p bedside-ml --example bench_video [--features tch] -- [options]
//!   --arch r2plus1d_18   --frames 16   --size 112   --batch 4   --iters 3
//!   --threads 1,2        thread counts to measure (each run in a fresh process)
//!   --backends flex,tch  default: every compiled-in backend
//!   --python PATH        interpreter with torch + torchvision (default .venv-torch/bin/python,
//!                        then python3); `--python none` skips PyTorch
//!   --profile            instead: time forward and forward+backward of every convolution
//!                        module of the network at its real input shape (first backend and
//!                        thread count), to find where a backend spends its time
//! ```
//!
//! Each (backend, thread count) runs in a child process because the thread pools of rayon
//! (flex) and libtorch are sized once per process, from `RAYON_NUM_THREADS` and
//! `OMP_NUM_THREADS`. PyTorch runs `tools/python/bench_video_torch.py` with the same shapes,
//! loss and optimiser and `torch.set_num_threads`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use bedside_core::rng::Rng;
use bedside_ml::backend::BackendKind;
use bedside_ml::loss::classification::cross_entropy;
use bedside_ml::video::{VideoArch, VideoResNet, VideoResNetConfig};
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor, TensorData};

type BoxError = Box<dyn std::error::Error>;

#[derive(Debug, Clone)]
struct Options {
    arch: VideoArch,
    frames: usize,
    size: usize,
    batch: usize,
    iters: usize,
    threads: Vec<usize>,
    backends: Vec<BackendKind>,
    python: Option<PathBuf>,
    worker: bool,
    profile: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, BoxError> {
        let mut options = Options {
            arch: VideoArch::R2Plus1d18,
            frames: 16,
            size: 112,
            batch: 4,
            iters: 3,
            threads: vec![1, 2],
            backends: BackendKind::available(),
            python: default_python(),
            worker: false,
            profile: false,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            if flag == "--worker" || flag == "--profile" {
                options.worker |= flag == "--worker";
                options.profile |= flag == "--profile";
                continue;
            }
            let value = args
                .next()
                .ok_or_else(|| format!("option {flag} needs a value"))?;
            match flag.as_str() {
                "--arch" => options.arch = VideoArch::from_torchvision_name(value)?,
                "--frames" => options.frames = value.parse()?,
                "--size" => options.size = value.parse()?,
                "--batch" => options.batch = value.parse()?,
                "--iters" => options.iters = value.parse()?,
                "--threads" => {
                    options.threads = value.split(',').map(str::parse).collect::<Result<_, _>>()?
                }
                "--backends" => {
                    options.backends = value
                        .split(',')
                        .map(BackendKind::parse)
                        .collect::<Result<_, _>>()?
                }
                "--python" => {
                    options.python = (value != "none").then(|| PathBuf::from(value));
                }
                other => return Err(format!("unknown option {other}").into()),
            }
        }
        if options.batch == 0 || options.iters == 0 || options.threads.contains(&0) {
            return Err("--batch, --iters and --threads must be at least 1".into());
        }
        Ok(options)
    }

    fn shape(&self) -> [usize; 5] {
        [self.batch, 3, self.frames, self.size, self.size]
    }

    fn common_args(&self) -> Vec<String> {
        vec![
            "--arch".into(),
            self.arch.torchvision_name().into(),
            "--frames".into(),
            self.frames.to_string(),
            "--size".into(),
            self.size.to_string(),
            "--batch".into(),
            self.batch.to_string(),
            "--iters".into(),
            self.iters.to_string(),
        ]
    }
}

fn default_python() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv-torch/bin/python");
    Some(if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    })
}

fn clip(shape: [usize; 5], device: &Device) -> Tensor<5> {
    let mut rng = Rng::seed_from(1);
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Seconds per batch for inference and for one SGD training step, after one warm-up each.
fn measure(options: &Options, backend: BackendKind) -> Result<(f64, f64), BoxError> {
    let shape = options.shape();
    let device = backend.device()?;
    let model = VideoResNetConfig::new(options.arch).init(&device)?;
    let x = clip(shape, &device);
    let _ = model.forward(x.clone()).into_data();
    let start = Instant::now();
    for _ in 0..options.iters {
        let _ = model.forward(x.clone()).into_data();
    }
    let forward = start.elapsed().as_secs_f64() / options.iters as f64;

    let train_device = device.autodiff();
    let mut model = VideoResNetConfig::new(options.arch).init(&train_device)?;
    let x = clip(shape, &train_device);
    let labels: Vec<usize> = (0..options.batch).map(|i| i % 400).collect();
    let mut optim = SgdConfig::new().init();
    let mut step = |model: VideoResNet| -> Result<VideoResNet, BoxError> {
        let loss = cross_entropy(model.forward(x.clone()), &labels)?;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = optim.step(1e-3, model, grads);
        // Reading a parameter back waits for lazy or asynchronous backends to finish.
        let _ = model.fc.weight.val().sum().into_data();
        Ok(model)
    };
    model = step(model)?;
    let start = Instant::now();
    for _ in 0..options.iters {
        model = step(model)?;
    }
    let train = start.elapsed().as_secs_f64() / options.iters as f64;
    Ok((forward, train))
}

/// CPU seconds used by this process (all threads), from `/proc/self/stat` (Linux; 0 elsewhere).
/// Profiles report CPU time because wall time on a shared machine measures the neighbours too.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: f64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// CPU seconds for a forward pass and for forward + backward of `f` at input `x` (training mode).
fn time_module(x: &Tensor<5>, f: impl Fn(Tensor<5>) -> Tensor<5>) -> (f64, f64) {
    let x = x.clone().detach().require_grad();
    let start = cpu_seconds();
    let _ = f(x.clone()).sum().into_data();
    let forward = cpu_seconds() - start;
    let start = cpu_seconds();
    let grads = f(x.clone()).sum().backward();
    let _ = x.grad(&grads).map(|g| g.sum().into_data());
    (forward, cpu_seconds() - start)
}

/// Per-module forward and forward+backward times of the whole network, in training mode.
fn profile(options: &Options, backend: BackendKind) -> Result<(), BoxError> {
    let device = backend.device()?.autodiff();
    let model = VideoResNetConfig::new(options.arch).init(&device)?;
    let mut x = clip(options.shape(), &device);
    let mut rows: Vec<(String, [usize; 5], f64, f64)> = Vec::new();
    let mut record = |name: String, x: &Tensor<5>, f: &dyn Fn(Tensor<5>) -> Tensor<5>| {
        let (forward, train) = time_module(x, f);
        rows.push((name, x.dims(), forward, train));
    };
    record("stem.conv1".into(), &x, &|x| model.stem.conv1.forward(x));
    record("stem".into(), &x, &|x| model.stem.forward(x));
    x = model.stem.forward(x).detach();
    let layers = [&model.layer1, &model.layer2, &model.layer3, &model.layer4];
    for (i, layer) in layers.iter().enumerate() {
        for (j, block) in layer.iter().enumerate() {
            let name = format!("layer{}.{j}", i + 1);
            record(format!("{name}.conv1"), &x, &|x| {
                block.conv1.conv.forward(x)
            });
            let conv = &block.conv1.conv;
            if let (Some(spatial), Some(bn), Some(temporal)) =
                (&conv.spatial, &conv.spatial_bn, &conv.temporal)
            {
                // The (2+1)D halves on their own: spatial 1×3×3, then temporal 3×1×1.
                record(format!("{name}.conv1.spatial"), &x, &|x| spatial.forward(x));
                let mid = relu(bn.forward(spatial.forward(x.clone()))).detach();
                record(format!("{name}.conv1.temporal"), &mid, &|x| {
                    temporal.forward(x)
                });
            }
            let mid = relu(block.conv1.bn.forward(block.conv1.conv.forward(x.clone()))).detach();
            record(format!("{name}.conv2"), &mid, &|x| {
                block.conv2.conv.forward(x)
            });
            if let Some(ds) = &block.downsample {
                record(format!("{name}.downsample"), &x, &|x| ds.conv.forward(x));
            }
            record(name, &x, &|x| block.forward(x));
            x = block.forward(x).detach();
        }
    }
    println!(
        "{:<24} {:<24} {:>9} {:>14}",
        "module", "input", "fwd CPU s", "fwd+bwd CPU s"
    );
    for (name, dims, forward, train) in &rows {
        println!(
            "{name:<24} {:<24} {forward:>9.3} {train:>14.3}",
            format!("{dims:?}")
        );
    }
    let blocks: f64 = rows
        .iter()
        .filter(|(name, ..)| {
            name == "stem" || (name.starts_with("layer") && name.matches('.').count() == 1)
        })
        .map(|r| r.3)
        .sum();
    println!("sum over stem and blocks: {blocks:.3} CPU s fwd+bwd");
    Ok(())
}

/// Parse the `RESULT <label> <inference s> <train s>` line of a child's output.
fn parse_result(stdout: &str) -> Option<(String, f64, f64)> {
    let line = stdout.lines().rev().find(|l| l.starts_with("RESULT "))?;
    let mut parts = line.split_whitespace().skip(1);
    let label = parts.next()?.to_string();
    let forward = parts.next()?.parse().ok()?;
    let train = parts.next()?.parse().ok()?;
    Some((label, forward, train))
}

fn run_child(mut command: Command, threads: usize) -> Result<(String, f64, f64), BoxError> {
    let n = threads.to_string();
    command
        .env("RAYON_NUM_THREADS", &n)
        .env("OMP_NUM_THREADS", &n)
        .env("MKL_NUM_THREADS", &n);
    let output = command.output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!("exited with {}: {}", output.status, tail.join(" | ")).into());
    }
    parse_result(&stdout).ok_or_else(|| "no RESULT line in its output".into())
}

struct Row {
    threads: usize,
    name: String,
    forward: f64,
    train: f64,
}

fn main() -> Result<(), BoxError> {
    bedside_core::alloc::retain_large_allocations();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = Options::parse(&args)?;
    if options.profile && !options.worker {
        // Sized like the worker processes: the thread pools read these once.
        let threads = options.threads.first().copied().unwrap_or(1);
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(&args)
            .arg("--worker")
            .env("RAYON_NUM_THREADS", threads.to_string())
            .env("OMP_NUM_THREADS", threads.to_string());
        let status = command.status()?;
        return if status.success() {
            Ok(())
        } else {
            Err(format!("profile run exited with {status}").into())
        };
    }
    if options.profile {
        let backend = options
            .backends
            .first()
            .copied()
            .unwrap_or(BackendKind::Flex);
        println!(
            "{} backend={} threads={}",
            options.arch.torchvision_name(),
            backend.name(),
            options.threads.first().copied().unwrap_or(1)
        );
        return profile(&options, backend);
    }
    if options.worker {
        let backend = options
            .backends
            .first()
            .copied()
            .unwrap_or(BackendKind::Flex);
        let (forward, train) = measure(&options, backend)?;
        println!("RESULT {} {forward:.6} {train:.6}", backend.name());
        return Ok(());
    }

    let shape = options.shape();
    println!(
        "{} input {:?} (batch, channels, frames, height, width); {} timed iterations after one warm-up; {} CPU(s) present",
        options.arch.torchvision_name(),
        shape,
        options.iters,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let exe = std::env::current_exe()?;
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/python/bench_video_torch.py");
    let mut rows: Vec<Row> = Vec::new();
    for &threads in &options.threads {
        if let Some(python) = &options.python {
            let mut command = Command::new(python);
            command.arg(&script).args([
                options.arch.torchvision_name().to_string(),
                options.frames.to_string(),
                options.size.to_string(),
                options.batch.to_string(),
                options.iters.to_string(),
                threads.to_string(),
            ]);
            match run_child(command, threads) {
                Ok((version, forward, train)) => rows.push(Row {
                    threads,
                    name: format!("pytorch {version}"),
                    forward,
                    train,
                }),
                Err(err) => eprintln!("PyTorch ({}) skipped: {err}", python.display()),
            }
        }
        for &backend in &options.backends {
            let mut command = Command::new(&exe);
            command
                .arg("--worker")
                .args(options.common_args())
                .args(["--backends", backend.name()]);
            match run_child(command, threads) {
                Ok((_, forward, train)) => rows.push(Row {
                    threads,
                    name: format!("burn {}", backend.name()),
                    forward,
                    train,
                }),
                Err(err) => eprintln!("burn {} skipped: {err}", backend.name()),
            }
        }
    }

    println!(
        "\n{:>7}  {:<14} {:>12} {:>12} {:>12} {:>12}  time / PyTorch (inference, train)",
        "threads", "runtime", "infer s/b", "infer clip/s", "train s/b", "train clip/s"
    );
    for row in &rows {
        let peer = rows
            .iter()
            .find(|r| r.threads == row.threads && r.name.starts_with("pytorch"));
        let ratio = match peer {
            Some(p) if !std::ptr::eq(p, row) => format!(
                "{:.2}x, {:.2}x",
                row.forward / p.forward,
                row.train / p.train
            ),
            Some(_) => "1 (reference)".into(),
            None => "n/a".into(),
        };
        let batch = options.batch as f64;
        println!(
            "{:>7}  {:<14} {:>12.3} {:>12.2} {:>12.3} {:>12.2}  {ratio}",
            row.threads,
            row.name,
            row.forward,
            batch / row.forward,
            row.train,
            batch / row.train
        );
    }
    Ok(())
}
