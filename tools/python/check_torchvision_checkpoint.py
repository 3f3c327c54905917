"""Load real full-size torchvision checkpoints into Bedside and compare logits with torchvision.

Needs torch and torchvision (`.venv-torch`, see scripts/setup-torch.sh). For each architecture
(r3d_18, mc3_18, r2plus1d_18) this builds torchvision's model with its default 400 Kinetics
classes, draws random weights and BatchNorm statistics from a fixed seed, saves the state_dict
with `torch.save` exactly as torchvision's published `.pth` files are saved (and, with
--safetensors, also as SafeTensors), then runs the `load_checkpoint` example of bedside-ml, which
loads it strictly, and compares its logits on one fixed clip with torchvision's.

    python tools/python/check_torchvision_checkpoint.py \
        --bin target/release/examples/load_checkpoint [--frames 16 --size 112] [--safetensors]

Prints one line per checkpoint and exits 1 if any key is not applied or a logit differs by more
than 1e-4 relative to the largest logit.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import torch
from torchvision.models.video import mc3_18, r2plus1d_18, r3d_18


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bin", required=True, help="the load_checkpoint example binary")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--safetensors", action="store_true", help="also check a .safetensors copy")
    a = p.parse_args()
    torch.manual_seed(2026)
    failed = False
    x = torch.randn(1, 3, a.frames, a.size, a.size)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        x.numpy().astype("<f4").tofile(tmp / "clip.f32")
        for name, build in [("r3d_18", r3d_18), ("mc3_18", mc3_18), ("r2plus1d_18", r2plus1d_18)]:
            model = build().eval()
            with torch.no_grad():
                for m in model.modules():
                    if isinstance(m, torch.nn.BatchNorm3d):
                        m.running_mean.uniform_(-0.2, 0.2)
                        m.running_var.uniform_(0.5, 1.5)
                        m.weight.uniform_(0.5, 1.5)
                        m.bias.uniform_(-0.2, 0.2)
                        m.num_batches_tracked.fill_(1234)
                expected = model(x)[0]
            sd = model.state_dict()
            params = sum(v.numel() for k, v in sd.items() if "num_batches" not in k)
            files = [tmp / f"{name}.pth"]
            torch.save(sd, files[0])
            if a.safetensors:
                from safetensors.torch import save_file

                files.append(tmp / f"{name}.safetensors")
                save_file({k: v.contiguous() for k, v in sd.items()}, files[-1])
            for f in files:
                started = time.time()
                out = subprocess.run(
                    [a.bin, "--arch", name, "--weights", str(f), "--input", str(tmp / "clip.f32"),
                     "--frames", str(a.frames), "--size", str(a.size)],
                    capture_output=True, text=True)
                wall = time.time() - started
                if out.returncode != 0:
                    print(f"{name} {f.suffix}: FAILED to load: {out.stderr.strip()[-2000:]}")
                    failed = True
                    continue
                report = next(l for l in out.stdout.splitlines() if l.startswith("REPORT"))
                logits = torch.tensor(json.loads(
                    next(l for l in out.stdout.splitlines() if l.startswith("LOGITS"))[7:]))
                diff = (logits - expected).abs().max().item()
                scale = expected.abs().max().item()
                ok = diff <= 1e-4 * max(scale, 1.0) and " missing=0 unexpected=0 mismatched=0" in report
                failed |= not ok
                print(f"{name} {f.suffix} ({f.stat().st_size / 2**20:.0f} MiB, {params / 1e6:.1f} M "
                      f"parameters, {len(sd)} keys): {report[7:]} total_s={wall:.1f}; "
                      f"max |logit diff| {diff:.2e} (max |logit| {scale:.2f}) {'ok' if ok else 'FAIL'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
