"""Heads shared by the models: the output type, a BN-neck embedding and an identity classifier."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class ReIDOutput(NamedTuple):
    """What every reidnb model returns, in train and eval mode alike.

    logits:  (B, num_classes) identity logits, or None for a model without a classifier.
    feat:    (B, D) embedding before the BN neck (used by metric losses).
    feat_bn: (B, D) embedding after the BN neck (used for retrieval at test time).
    extras:  named extra tensors (attention maps, stage features) for losses and plots.
    """

    logits: torch.Tensor | None
    feat: torch.Tensor
    feat_bn: torch.Tensor
    extras: dict


class BNNeckClassifier(nn.Module):
    """Global feature -> BatchNorm1d (shift frozen) -> bias-free linear classifier.

    The BN neck of Luo et al. 2019 ("Bag of tricks"); with `bnneck=False` the classifier reads the
    raw feature, which is the plain IDE head (Zheng et al. 2016).
    """

    def __init__(self, in_dim: int, num_classes: int, bnneck: bool = True, dropout: float = 0.0):
        super().__init__()
        self.bnneck = bnneck
        self.bn = nn.BatchNorm1d(in_dim) if bnneck else nn.Identity()
        if bnneck:
            self.bn.bias.requires_grad_(False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(in_dim, num_classes, bias=not bnneck) if num_classes > 0 else None
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)
            if self.classifier.bias is not None:
                nn.init.zeros_(self.classifier.bias)

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        feat_bn = self.bn(feat)
        logits = None
        if self.classifier is not None:
            logits = self.classifier(self.dropout(feat_bn))
        return logits, feat_bn
