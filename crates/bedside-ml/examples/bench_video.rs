//! Throughput of a torchvision video ResNet on a burn backend: inference and training-step
//! clips per second, to print beside `tools/python/bench_video_torch.py` (PyTorch, same
//! architecture and shapes).
//!
//! ```text
//! cargo run -p bedside-ml --release --example bench_video -- [arch] [frames] [size] [batch] [iters] [backend]
//! # defaults: r2plus1d_18 16 112 4 3 flex
//! ```

use std::time::Instant;

use bedside_core::rng::Rng;
use bedside_ml::backend::BackendKind;
use bedside_ml::loss::classification::cross_entropy;
use bedside_ml::video::{VideoArch, VideoResNet, VideoResNetConfig};
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};

fn clip(shape: [usize; 5], device: &Device) -> Tensor<5> {
    let mut rng = Rng::seed_from(1);
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let arch = VideoArch::from_torchvision_name(&arg(0, "r2plus1d_18"))?;
    let frames: usize = arg(1, "16").parse()?;
    let size: usize = arg(2, "112").parse()?;
    let batch: usize = arg(3, "4").parse()?;
    let iters: usize = arg(4, "3").parse()?;
    let backend = BackendKind::parse(&arg(5, "flex"))?;
    let shape = [batch, 3, frames, size, size];

    let device = backend.device()?;
    let model = VideoResNetConfig::new(arch).init(&device)?;
    let x = clip(shape, &device);
    let _ = model.forward(x.clone()).into_data(); // warm-up
    let start = Instant::now();
    for _ in 0..iters {
        let _ = model.forward(x.clone()).into_data();
    }
    let forward = start.elapsed().as_secs_f64() / iters as f64;

    let train_device = device.autodiff();
    let mut model = VideoResNetConfig::new(arch).init(&train_device)?;
    let x = clip(shape, &train_device);
    let labels: Vec<usize> = (0..batch).map(|i| i % 400).collect();
    let mut optim = SgdConfig::new().init();
    let mut step = |model: VideoResNet| -> Result<VideoResNet, Box<dyn std::error::Error>> {
        let loss = cross_entropy(model.forward(x.clone()), &labels)?;
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        Ok(optim.step(1e-3, model, grads))
    };
    model = step(model)?; // warm-up
    let start = Instant::now();
    for _ in 0..iters {
        model = step(model)?;
    }
    let train = start.elapsed().as_secs_f64() / iters as f64;
    drop(model);

    println!(
        "{} backend={} input={:?} threads={}",
        arch.torchvision_name(),
        backend.name(),
        shape,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "inference: {forward:.3} s/batch, {:.2} clips/s",
        batch as f64 / forward
    );
    println!(
        "train step: {train:.3} s/batch, {:.2} clips/s",
        batch as f64 / train
    );
    Ok(())
}
