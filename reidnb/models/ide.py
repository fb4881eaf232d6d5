"""The IDE baseline: a CNN trunk, global average pooling and an identity classifier.

Zheng et al. 2016 ("Person Re-identification: Past, Present and Future", Sec. 5) fine-tune an
ImageNet CNN as an identity classifier and use its pooled feature for retrieval. Every paper in the
book reports it (or a close variant) as its first row: jeong2020 Table 5 "baseline", zheng2019
Table 1 "IDE", li2019's and jamal2020's ResNet-50 baselines.

Options beyond the 2016 recipe, each one argument: `last_stride=1` (Luo et al. 2019) and
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
