"""PyTorch side of the `bedside-ml` `bench_video` example: inference and training-step clips per
second of a torchvision video ResNet on CPU with the same shapes, the same loss (cross-entropy
on 400 Kinetics classes) and the same optimiser step (plain SGD).

    python tools/python/bench_video_torch.py [arch] [frames] [size] [batch] [iters] [threads]
    # defaults: r2plus1d_18 16 112 4 3 2

The last line is machine-readable (`RESULT <torch version> <inference s/batch> <train s/batch>`);
`bench_video` reads it. Needs torch and torchvision (scripts/setup-torch.sh installs them into
.venv-torch; they are not part of tools/python/requirements.txt).
"""
import sys
import time

import torch
from torchvision.models import video


def main():
    args = sys.argv[1:]
    arg = lambda i, d: args[i] if len(args) > i else d
    arch, frames, size, batch, iters, threads = (arg(0, "r2plus1d_18"), int(arg(1, 16)), int(arg(2, 112)),
                                                 int(arg(3, 4)), int(arg(4, 3)), int(arg(5, 2)))
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    x = torch.randn(batch, 3, frames, size, size)
    model = getattr(video, arch)(weights=None)
    model.eval()
    with torch.no_grad():
        model(x)
        start = time.perf_counter()
        for _ in range(iters):
            model(x)
        forward = (time.perf_counter() - start) / iters
    # burn's BatchNorm uses batch statistics while training, as PyTorch's train mode does.
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    labels = torch.arange(batch) % 400

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    train = (time.perf_counter() - start) / iters
    version = torch.__version__.split("+")[0]
    print(f"{arch} torch {version} input={[batch, 3, frames, size, size]} threads={threads}")
    print(f"inference: {forward:.3f} s/batch, {batch / forward:.2f} clips/s")
    print(f"train step: {train:.3f} s/batch, {batch / train:.2f} clips/s")
    print(f"RESULT {version} {forward:.6f} {train:.6f}")


if __name__ == "__main__":
    main()
