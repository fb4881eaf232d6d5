"""The IDE baseline: a CNN trunk, global average pooling and an identity classifier.

Zheng et al. 2016 ("Person Re-identification: Past, Present and Future", Sec. 5) fine-tune an
ImageNet CNN as an identity classifier and use its pooled feature for retrieval. zheng2019 builds
on it (Table 3 "IDE"); the other papers' baselines differ: jeong2020's adds a verification loss
(Table 5), li2019's a triplet loss, and jamal2020 does not say which losses its baseline used.

Options beyond the 2016 recipe (last stride 2), each one argument: `last_stride=1` (the PCB
paper, Sun et al. 2018, and Luo et al. 2019's strong baseline) and
`bnneck=True` (a BatchNorm before a bias-free classifier, Luo et al. 2019).
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import build_backbone
from .heads import BNNeckClassifier, ReIDOutput


class IDE(nn.Module):
    """Trunk -> GAP -> (BN neck) -> classifier. Returns `ReIDOutput` in train and eval mode."""

    def __init__(self, num_classes: int, backbone: str = "resnet50", pretrained="auto",
                 last_stride: int = 1, bnneck: bool = False, dropout: float = 0.0):
        super().__init__()
        self.backbone = build_backbone(backbone, pretrained=pretrained, last_stride=last_stride)
        self.feat_dim = self.backbone.out_channels
        self.head = BNNeckClassifier(self.feat_dim, num_classes, bnneck=bnneck, dropout=dropout)

    @property
    def weights_init(self) -> dict:
        return self.backbone.weights.as_dict()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        fmap = self.forward_features(x)
        feat = fmap.mean(dim=(2, 3))
        logits, feat_bn = self.head(feat)
        return ReIDOutput(logits, feat, feat_bn, {"fmap": fmap})
