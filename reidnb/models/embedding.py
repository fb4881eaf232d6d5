"""A plain embedding network: trunk -> global average pooling -> linear projection.

The model of the hands-on Siamese tutorial (lakshmi, "Create Model"): one network embeds anchor,
positive and negative alike (shared weights), and retrieval compares embeddings by Euclidean
distance. There is no identity classifier, so `logits` is None; `feat_bn` is the same vector as
`feat` (optionally L2-normalised), so evaluation code treats it like any other reidnb model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import build_backbone
from .heads import ReIDOutput


class EmbeddingNet(nn.Module):
    """Trunk -> GAP -> Linear(C, embed_dim). `num_classes` is accepted and ignored (registry shape)."""

    def __init__(self, num_classes: int = 0, backbone: str = "resnet18", pretrained="auto",
                 last_stride: int = 2, embed_dim: int = 128, l2_normalize: bool = False):
        super().__init__()
        self.backbone = build_backbone(backbone, pretrained=pretrained, last_stride=last_stride)
        self.project = nn.Linear(self.backbone.out_channels, embed_dim)
        self.feat_dim = embed_dim
        self.l2_normalize = l2_normalize

    @property
    def weights_init(self) -> dict:
        return self.backbone.weights.as_dict()

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        fmap = self.backbone(x)
        feat = self.project(fmap.mean(dim=(2, 3)))
        if self.l2_normalize:
            feat = F.normalize(feat, dim=1)
        return ReIDOutput(None, feat, feat, {"fmap": fmap})
