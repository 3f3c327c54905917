"""Captum's Integrated Gradients on PyTorch CPU: the peer of `bedside-explain`'s `bench_ig`.

Called by `cargo run --release -p bedside-explain --example bench_ig`; needs torch, torchvision,
captum and safetensors (`.venv-torch`). Builds torchvision's R(2+1)D-18 at `--width` with one block
per stage (seeded random weights, eval mode), saves its state_dict to `--weights` so the Rust side
explains the same network, and times `IntegratedGradients.attribute` (Gauss-Legendre, zero
baseline, `internal_batch_size=--batch`) on one clip: best of `--repeats` runs after a warm-up.
Prints `RESULT seconds=… cpu=… peak_mib=… delta=…` (cpu: user + system seconds of the process).
"""
import argparse
import pathlib
import resource
import sys
import time

import torch
from captum.attr import IntegratedGradients
from safetensors.torch import save_file
from torchvision.models.video.resnet import Conv2Plus1D

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from make_parity_fixture import SmallVideoResNet  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--weights", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(20261128)
    model = SmallVideoResNet([Conv2Plus1D] * 4, [1, 1, 1, 1], True, a.width, num_classes=2).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, a.weights)
    x = torch.randn(1, 3, a.frames, a.size, a.size)
    ig = IntegratedGradients(model)
    best = best_cpu = float("inf")
    delta = float("nan")
    for run in range(a.repeats + 1):
        start, cpu = time.perf_counter(), time.process_time()
        _, d = ig.attribute(x, target=1, n_steps=a.steps, method="gausslegendre",
                            internal_batch_size=a.batch, return_convergence_delta=True)
        seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
        delta = float(d.abs().max())
        if run > 0:
            best = min(best, seconds)
            best_cpu = min(best_cpu, cpu_s)
    import captum
    print(f"CAPTUM {captum.__version__}")
    print(f"TORCH {torch.__version__}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"RESULT seconds={best:.3f} cpu={best_cpu:.2f} peak_mib={peak:.0f} delta={delta:.3e}")


if __name__ == "__main__":
    main()
