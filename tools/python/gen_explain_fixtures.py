"""Regenerate the Captum parity fixtures of the `bedside-explain` crate.

Needs torch, torchvision, captum and safetensors only when regenerating (the Rust test reads the
small files this script writes). Run from the repository root with the torch environment:

    .venv-torch/bin/pip install captum==0.9.0 safetensors==0.8.0
    .venv-torch/bin/python tools/python/gen_explain_fixtures.py

The network is torchvision's R(2+1)D-18 structure at width 1/8 with one block per stage (the
`SmallVideoResNet` of `make_parity_fixture.py`), random weights and BatchNorm statistics, in
`eval()` mode. Writes into crates/bedside-explain/tests/fixtures/:

* `r2plus1d_w8_d1.safetensors` - the state_dict;
* `input.npy` - one clip [1, 3, 8, 32, 32] (float32);
* `<case>.npy` - Captum's attribution for each case of `explain_cases.json` (float32);
* `explain_cases.json` - the method, its parameters, the target and the model's logits.
"""
import json
import pathlib
import sys

import numpy as np
import torch
import torch.nn as nn
from captum.attr import (IntegratedGradients, InputXGradient, LayerAttribution, LayerGradCam,
                         Occlusion, Saliency)
from safetensors.torch import save_file
from torchvision.models.video.resnet import Conv2Plus1D

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from make_parity_fixture import SmallVideoResNet, randomise_bn  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "crates" / "bedside-explain" / "tests" / "fixtures"
SHAPE = (1, 3, 8, 32, 32)
TARGET = 1


def main():
    torch.set_num_threads(2)
    OUT.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(20261128)
    torch.manual_seed(7)
    model = SmallVideoResNet([Conv2Plus1D] * 4, [1, 1, 1, 1], True, 0.125, num_classes=3)
    for mod in model.modules():
        if isinstance(mod, nn.Conv3d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu", generator=gen)
    nn.init.normal_(model.fc.weight, 0.0, 0.3, generator=gen)
    randomise_bn(model, gen)
    model.eval()
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, OUT / "r2plus1d_w8_d1.safetensors")

    x = torch.randn(SHAPE, generator=gen, dtype=torch.float32)
    np.save(OUT / "input.npy", x.numpy())
    with torch.no_grad():
        logits = model(x)[0].tolist()

    cases = {}

    def keep(name, attr, **params):
        arr = attr.detach().to(torch.float32).numpy()
        np.save(OUT / f"{name}.npy", arr)
        cases[name] = dict(file=f"{name}.npy", shape=list(arr.shape), **params)
        print(f"{name}: shape {arr.shape}, |max| {np.abs(arr).max():.4g}")

    keep("saliency", Saliency(model).attribute(x, target=TARGET, abs=True), method="saliency", abs=True)
    keep("input_x_gradient", InputXGradient(model).attribute(x, target=TARGET), method="input_x_gradient")
    ig = IntegratedGradients(model)
    keep("ig_gausslegendre", ig.attribute(x, target=TARGET, n_steps=16, method="gausslegendre",
                                          internal_batch_size=5),
         method="integrated_gradients", steps=16, rule="gausslegendre", baseline=0.0, internal_batch_size=5)
    keep("ig_trapezoid", ig.attribute(x, baselines=-0.5, target=TARGET, n_steps=8, method="riemann_trapezoid"),
         method="integrated_gradients", steps=8, rule="riemann_trapezoid", baseline=-0.5)
    for layer, relu in [("layer4", False), ("layer3", True), ("layer2", False)]:
        cam = LayerGradCam(model, getattr(model, layer)).attribute(x, target=TARGET, relu_attributions=relu)
        up = LayerAttribution.interpolate(cam, SHAPE[2:], interpolate_mode="trilinear")
        keep(f"gradcam_{layer}", up, method="gradcam", layer=layer, relu=relu, map_shape=list(cam.shape))
    window, strides = (3, 4, 8, 8), (3, 2, 5, 5)
    keep("occlusion", Occlusion(model).attribute(x, sliding_window_shapes=window, strides=strides,
                                                  baselines=0.0, target=TARGET),
         method="occlusion", window=list(window), strides=list(strides), baseline=0.0)

    meta = dict(
        generator="tools/python/gen_explain_fixtures.py",
        versions=dict(torch=torch.__version__, captum=__import__("captum").__version__,
                      torchvision=__import__("torchvision").__version__),
        model=dict(file="r2plus1d_w8_d1.safetensors", arch="r2plus1d_18", width=0.125, layers=[1, 1, 1, 1],
                   num_classes=3),
        input=dict(file="input.npy", shape=list(SHAPE)),
        target=TARGET,
        logits=logits,
        cases=cases,
    )
    (OUT / "explain_cases.json").write_text(json.dumps(meta, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"fixtures: {total / 1024:.0f} KiB in {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
