"""Regenerate the PyTorch parity fixtures of the `bedside-ml` crate.

Needs torch, torchvision and safetensors (only when regenerating; the Rust tests read the
small files this script writes). Run from the repository root:

    python tools/python/make_parity_fixture.py

Writes into crates/bedside-ml/tests/fixtures/:

* `formula_logits.json` - logits of torchvision's full-size r2plus1d_18, r3d_18 and mc3_18 whose
  every parameter, BatchNorm statistic and the input clip are filled from an integer hash
  (`formula_value` below, re-implemented in Rust), so no weights are stored.
* `r2plus1d_w16.safetensors` + entry in `small_models.json` - a width/16 R(2+1)D-18 built from
  torchvision's own blocks, random weights and BatchNorm statistics, saved as a state_dict.
* `r3d_w16_d1.pt` + entry in `small_models.json` - a width/16, one-block-per-stage R3D saved with
  `torch.save` (the `.pt` path).
* `mc3_w16_d1.safetensors` and `mc3_w16_d1_ckpt.pt` - a width/16 MC3, also saved as a
  training checkpoint (`{"epoch": 3, "state_dict": {"model.<key>": ...}}`).
"""
import json
import pathlib

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file
from torchvision.models.video import mc3_18, r2plus1d_18, r3d_18
from torchvision.models.video.resnet import (BasicBlock, Conv2Plus1D, Conv3DNoTemporal,
                                             Conv3DSimple, VideoResNet)

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "bedside-ml" / "tests" / "fixtures"
MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def splitmix64(x):
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return (z ^ (z >> np.uint64(31))) & MASK


def name_seed(name):
    """Deterministic per-tensor seed: sum of (i+1)*byte over the key's UTF-8 bytes."""
    return sum((i + 1) * b for i, b in enumerate(name.encode())) % 1_000_003


def formula_uniform(name, n):
    """n values in [0, 1) from the key name: splitmix64(k + seed * 2^32) >> 11, / 2^53."""
    k = np.arange(n, dtype=np.uint64) + np.uint64(name_seed(name)) * np.uint64(1 << 32)
    return (splitmix64(k) >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def formula_value(name, shape):
    """The value of every tensor of a state_dict, from its key and shape only (float64)."""
    n = int(np.prod(shape)) if len(shape) else 1
    u = formula_uniform(name, n)
    if name.endswith("running_var"):
        v = 0.5 + u
    elif name.endswith("running_mean") or name.endswith(".bias"):
        v = 0.2 * (2 * u - 1)
    elif len(shape) == 1:  # BatchNorm weight
        v = 0.8 + 0.4 * u
    else:  # conv / linear weight: uniform with variance 1/fan_in
        fan_in = int(np.prod(shape[1:]))
        v = (2 * u - 1) * np.sqrt(3.0 / fan_in)
    return v.reshape(shape)


def formula_state_dict(model):
    sd = {}
    for k, t in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            sd[k] = t
        else:
            sd[k] = torch.tensor(formula_value(k, tuple(t.shape)), dtype=torch.float32)
    return sd


def scaled(c, w):
    return max(1, int(round(c * w)))


class SmallVideoResNet(VideoResNet):
    """torchvision's VideoResNet with widths scaled by `w` (same blocks, same key names)."""

    def __init__(self, conv_makers, layers, r2plus1d_stem, w, num_classes):
        nn.Module.__init__(self)
        c = [scaled(b, w) for b in (64, 128, 256, 512)]
        self.inplanes = c[0]
        if r2plus1d_stem:
            mid = scaled(45, w)
            self.stem = nn.Sequential(
                nn.Conv3d(3, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False), nn.BatchNorm3d(mid), nn.ReLU(True),
                nn.Conv3d(mid, c[0], (3, 1, 1), (1, 1, 1), (1, 0, 0), bias=False), nn.BatchNorm3d(c[0]), nn.ReLU(True))
        else:
            self.stem = nn.Sequential(
                nn.Conv3d(3, c[0], (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False), nn.BatchNorm3d(c[0]), nn.ReLU(True))
        self.layer1 = self._make_layer(BasicBlock, conv_makers[0], c[0], layers[0], stride=1)
        self.layer2 = self._make_layer(BasicBlock, conv_makers[1], c[1], layers[1], stride=2)
        self.layer3 = self._make_layer(BasicBlock, conv_makers[2], c[2], layers[2], stride=2)
        self.layer4 = self._make_layer(BasicBlock, conv_makers[3], c[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(c[3], num_classes)


def randomise_bn(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.weight.data = 0.8 + 0.4 * torch.rand(m.weight.shape, generator=gen)
            m.bias.data = 0.2 * torch.randn(m.bias.shape, generator=gen)
            m.running_mean = 0.2 * torch.randn(m.running_mean.shape, generator=gen)
            m.running_var = 0.5 + torch.rand(m.running_var.shape, generator=gen)
    nn.init.normal_(model.fc.bias, 0.0, 0.1, generator=gen)


def main():
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    # ---- full-size torchvision models with formula weights and a formula input
    shape = (1, 3, 8, 32, 32)  # [batch, channels, frames, height, width]
    x = torch.tensor(formula_uniform("input", int(np.prod(shape))).reshape(shape) * 2 - 1, dtype=torch.float32)
    formula = dict(
        input=dict(shape=list(shape), formula="2*u-1 with u = formula_uniform('input', n)"),
        num_classes=400,
        models={},
    )
    for name, ctor in [("r2plus1d_18", r2plus1d_18), ("r3d_18", r3d_18), ("mc3_18", mc3_18)]:
        m = ctor(weights=None).eval()
        m.load_state_dict(formula_state_dict(m))
        with torch.no_grad():
            y = m(x)[0]
            y64 = m.double()(x.double())[0]
        formula["models"][name] = dict(
            logits=[float(v) for v in y],
            float64_vs_float32_max_abs=float((y.double() - y64).abs().max()),
            n_params=sum(p.numel() for p in m.parameters()),
            state_dict=[[k, list(t.shape)] for k, t in m.state_dict().items() if not k.endswith("num_batches_tracked")])
        print(name, "logit range", float(y.min()), float(y.max()), "f32 err", formula["models"][name]["float64_vs_float32_max_abs"])
    (OUT / "formula_logits.json").write_text(json.dumps(formula, indent=1))

    # ---- small models with random weights, stored as real state_dicts
    gen = torch.Generator().manual_seed(20240917)
    small = {}
    small_shape = (2, 3, 4, 24, 24)
    xs = torch.tensor(formula_uniform("small_input", int(np.prod(small_shape))).reshape(small_shape) * 2 - 1,
                      dtype=torch.float32)
    cases = [
        ("r2plus1d_w16", [Conv2Plus1D] * 4, [2, 2, 2, 2], True, "r2plus1d_w16.safetensors"),
        ("r3d_w16_d1", [Conv3DSimple] * 4, [1, 1, 1, 1], False, "r3d_w16_d1.pt"),
        ("mc3_w16_d1", [Conv3DSimple] + [Conv3DNoTemporal] * 3, [1, 1, 1, 1], False, "mc3_w16_d1.safetensors"),
    ]
    for name, makers, layers, r21, fname in cases:
        torch.manual_seed(1)
        m = SmallVideoResNet(makers, layers, r21, 1 / 16, num_classes=5)
        for mod in m.modules():
            if isinstance(mod, nn.Conv3d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu", generator=gen)
        nn.init.normal_(m.fc.weight, 0.0, 0.3, generator=gen)
        randomise_bn(m, gen)
        m.eval()
        sd = {k: v.contiguous() for k, v in m.state_dict().items()}
        if fname.endswith(".pt"):
            torch.save(sd, OUT / fname)
        else:
            save_file(sd, OUT / fname)
        if name == "mc3_w16_d1":
            # A training checkpoint: state_dict under a key, with a module prefix.
            ckpt = dict(epoch=3, state_dict={f"model.{k}": v for k, v in sd.items()})
            torch.save(ckpt, OUT / "mc3_w16_d1_ckpt.pt")
        with torch.no_grad():
            y = m(xs)
        small[name] = dict(file=fname, width=1 / 16, layers=layers, num_classes=5, logits=y.tolist())
        print(name, "params", sum(p.numel() for p in m.parameters()), "logits", y[0].tolist())
    small_json = dict(input=dict(shape=list(small_shape), formula="2*u-1 with u = formula_uniform('small_input', n)"),
                      models=small)
    (OUT / "small_models.json").write_text(json.dumps(small_json, indent=1))


if __name__ == "__main__":
    main()
