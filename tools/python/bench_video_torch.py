"""PyTorch side of the `bedside-ml` `bench_video` example: inference and training-step clips per
second of a torchvision video ResNet on CPU with the same shapes.

    python tools/python/bench_video_torch.py [arch] [frames] [size] [batch] [iters] [threads]
    # defaults: r2plus1d_18 16 112 4 3 2

Needs torch and torchvision (not part of tools/python/requirements.txt).
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
    print(f"{arch} torch {torch.__version__} input={[batch, 3, frames, size, size]} threads={threads}")
    print(f"inference: {forward:.3f} s/batch, {batch / forward:.2f} clips/s")
    print(f"train step: {train:.3f} s/batch, {batch / train:.2f} clips/s")


if __name__ == "__main__":
    main()
