"""CNN trunks with named stages: ResNet-50 / ResNet-18 (He et al. 2016) and VGG16 (Simonyan & Zisserman 2015).

Every trunk exposes `stem` and `layer1..layer4` as submodules, so an attention block or a Grad-CAM
hook is placed by stage name, and `feature_info` lists each stage's channels and stride.

ImageNet weights are read from the local torch cache (`torch.hub.get_dir()/checkpoints`) when the
file is there; otherwise the trunk keeps its random init, a warning is shown and `weights` says so,
for the run record. Nothing is ever downloaded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

# torchvision's ImageNet checkpoints, by the file names the torch cache stores them under.
IMAGENET_FILES = {
    "resnet50": ["resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth", "resnet50-19c8e357.pth"],
    "resnet18": ["resnet18-f37072fd.pth", "resnet18-5c106cde.pth"],
    "vgg16": ["vgg16-397923af.pth"],
}


@dataclass(frozen=True)
class WeightsInit:
    """Where a trunk's initial weights came from: 'imagenet' (with the file) or 'random' (why)."""

    source: str
    detail: str

    def as_dict(self) -> dict:
        return {"source": self.source, "detail": self.detail}


def find_imagenet_weights(arch: str, cache_dir: str | Path | None = None) -> Path | None:
    """Path of a cached ImageNet checkpoint for `arch`, or None. Never downloads."""
    root = Path(cache_dir) if cache_dir else Path(torch.hub.get_dir()) / "checkpoints"
    for name in IMAGENET_FILES.get(arch, []):
        if (root / name).is_file():
            return root / name
    return None


def _load_imagenet(net: nn.Module, arch: str, pretrained: bool | str,
                   cache_dir: str | Path | None) -> WeightsInit:
    if pretrained is False:
        return WeightsInit("random", "pretrained=False")
    path = find_imagenet_weights(arch, cache_dir)
    if path is None:
        where = Path(cache_dir) if cache_dir else Path(torch.hub.get_dir()) / "checkpoints"
        msg = (f"no ImageNet weights for {arch} in {where} (looked for "
               f"{', '.join(IMAGENET_FILES[arch])}); using random init. Results will be far below "
               "the papers' (which start from ImageNet); this is recorded in the run record.")
        if pretrained is True:
            raise FileNotFoundError(msg.replace("; using random init", ""))
        warnings.warn(msg, stacklevel=3)
        return WeightsInit("random", f"no cached ImageNet checkpoint in {where}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith(("fc.", "classifier.")) for k in missing):
        raise RuntimeError(f"ImageNet checkpoint {path} does not fit {arch}: "
                           f"missing={missing[:5]}, unexpected={unexpected[:5]}")
    return WeightsInit("imagenet", str(path))


class Trunk(nn.Module):
    """stem -> layer1 -> layer2 -> layer3 -> layer4, with per-stage channels and strides."""

    def __init__(self, stem: nn.Module, layers: list[nn.Module], channels: list[int],
                 strides: list[int], arch: str, weights: WeightsInit):
        super().__init__()
        self.stem = stem
        for i, layer in enumerate(layers, start=1):
            self.add_module(f"layer{i}", layer)
        self.arch = arch
        self.weights = weights
        self.feature_info = [
            {"module": f"layer{i}", "num_chs": c, "reduction": s}
            for i, (c, s) in enumerate(zip(channels, strides), start=1)
        ]

    @property
    def stage_names(self) -> list[str]:
        return [f["module"] for f in self.feature_info]

    @property
    def out_channels(self) -> int:
        return self.feature_info[-1]["num_chs"]

    def stage_channels(self, stage: str) -> int:
        for f in self.feature_info:
            if f["module"] == stage:
                return f["num_chs"]
        raise ValueError(f"unknown stage {stage!r}; {self.arch} has {self.stage_names}")

    def forward(self, x: torch.Tensor, hooks: dict[str, nn.Module] | None = None) -> torch.Tensor:
        """Run the stages; `hooks` maps a stage name to a module applied right after that stage."""
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if hooks and name in hooks:
                x = hooks[name](x)
        return x


def _resnet(arch: str, pretrained, last_stride: int, cache_dir) -> Trunk:
    net = getattr(torchvision.models, arch)(weights=None)
    weights = _load_imagenet(net, arch, pretrained, cache_dir)
    if last_stride == 1:  # PCB (Sun et al. 2018) and Luo et al. 2019's strong baseline
        block = net.layer4[0]
        strided = block.conv2 if hasattr(block, "conv3") else block.conv1  # bottleneck vs basic
        strided.stride = (1, 1)
        block.downsample[0].stride = (1, 1)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    wide = 4 if arch == "resnet50" else 1
    channels = [64 * wide, 128 * wide, 256 * wide, 512 * wide]
    strides = [4, 8, 16, 32 if last_stride == 2 else 16]
    return Trunk(stem, [net.layer1, net.layer2, net.layer3, net.layer4], channels, strides,
                 arch, weights)


def _vgg16(pretrained, last_stride: int, cache_dir) -> Trunk:
    """VGG16 features split at its pooling layers: stem = block1, layer1..4 = blocks 2..5.

    The stem is conv block 1 + pool; `layer4` ends without the last max-pool when last_stride=1.
    """
    net = torchvision.models.vgg16(weights=None)
    weights = _load_imagenet(net, "vgg16", pretrained, cache_dir)
    f = net.features
    cuts = [0, 5, 10, 17, 24, 31]  # after each MaxPool2d
    parts = [f[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
    if last_stride == 1:
        parts[-1] = parts[-1][:-1]
    channels = [128, 256, 512, 512]
    strides = [4, 8, 16, 32 if last_stride == 2 else 16]
    return Trunk(parts[0], parts[1:], channels, strides, "vgg16", weights)


BACKBONES = ("resnet50", "resnet18", "vgg16")


def build_backbone(arch: str = "resnet50", pretrained: bool | str = "auto", last_stride: int = 1,
                   cache_dir: str | Path | None = None) -> Trunk:
    """A trunk by name. `pretrained`: "auto" (cache if present, else random + warning), True
    (cache required), False (random)."""
    if arch in ("resnet50", "resnet18"):
        return _resnet(arch, pretrained, last_stride, cache_dir)
    if arch == "vgg16":
        return _vgg16(pretrained, last_stride, cache_dir)
    raise ValueError(f"unknown backbone {arch!r}; choose from {list(BACKBONES)}")
