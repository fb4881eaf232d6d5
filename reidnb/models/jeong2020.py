"""The uniformity attentive Siamese network of jeong2020 (Jeong et al. 2020, Sensors 20(18):5264).

One branch of the Siamese network (the branches share all weights), Table 1 and Fig. 4:

    stem -> layer1 -> ... -> stage -> [attention module, Eq. 3] -> ... -> layer4 = f
    f -> 1x1 conv -> sigmoid -> s (1 x H x W, the attention score of Sec. 3.3, for Eq. 8)
    f -> GAP -> Linear(C, 512) -> BN = z -> Linear(512, identities) = logits (Eqs. 4-5)
    verify(z1, z2) = Linear(512, 2)(z1 * z2) = pair logits (L_ver, Eqs. 6-7)

Table 5's rows are one model with switches: `attention=False` is the baseline (the same network
without the module; its identification and verification losses are the objective's), and the
uniformity loss is an objective weight (`SiameseObjective.unif_weight`).

Choices where the paper leaves room (each an argument):
- `last_stride=2`: Table 1 has layer4 at 8 x 4 for a 256 x 128 input.
- `classifier_hidden=None`: Sec. 3.1.3 speaks of a two-layer identification classifier and
  Sec. 4.2 of a 512-d linear block followed by one fully connected layer; we read the two layers
  as Linear(C, 512) -> Linear(512, identities). An int adds a hidden layer with ReLU.
- `embed_bn=True`: Sec. 4.2 appends "linear blocks" of size 512; in the verification-
  identification code the paper builds on ([34]) such a block is Linear + BatchNorm. No ReLU
  (Sec. 3.4). Without the BN, z1 * z2 grows quadratically with z's scale and training from
  random weights at lr 0.04 diverged within two epochs on SynthReID.
- `score_activation="sigmoid"`: the paper does not say whether s is squashed. Raw scores let
  the network change the L1 distances of Eq. 8 by rescaling alone; on SynthReID from random
  weights they grew, and the trunk's output died (all scores equal, zero gradient) within the
  first epoch. "identity" keeps them raw.
- Retrieval uses z (Sec. 4.2: the test phase keeps only the embedding network), so `feat` and
  `feat_bn` are the same tensor (z is already batch-normalised when `embed_bn`).
- `verify` multiplies z1 and z2 elementwise, so it is symmetric: verify(a, b) == verify(b, a).
- `encoder_convs=None` picks the paper's setting: 3 after layer1-3, 2 after layer4 (Sec. 4.4.2).
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import UniformityAttention, encoder_kernels_for
from .backbones import build_backbone
from .heads import ReIDOutput


class Jeong2020(nn.Module):
    """Trunk with the attention module after `stage`; returns `ReIDOutput` in train and eval.

    extras: "fmap" (layer4 output f), "score" (s, B x 1 x H x W), and with attention on
    "channel_att" (B x C x 1 x 1) and "ed_att" (B x 1 x h x w at the module's stage).
    """

    def __init__(self, num_classes: int, backbone: str = "resnet50", pretrained="auto",
                 last_stride: int = 2, attention: bool = True, stage: str = "layer3",
                 reduction: int = 16, mid_channels: int = 256, encoder_convs: int | None = None,
                 encoder_padding: bool = False, mask_activation: str = "sigmoid",
                 score_activation: str = "sigmoid", embed_dim: int = 512, embed_bn: bool = True,
                 classifier_hidden: int | None = None):
        super().__init__()
        self.backbone = build_backbone(backbone, pretrained=pretrained, last_stride=last_stride)
        if stage not in self.backbone.stage_names:
            raise ValueError(f"stage={stage!r}; {backbone} has {self.backbone.stage_names}")
        self.stage = stage
        self.attention = None
        if attention:
            if encoder_convs is None:
                encoder_convs = 2 if stage == "layer4" else 3
            info = next(f for f in self.backbone.feature_info if f["module"] == stage)
            self.attention = UniformityAttention(
                info["num_chs"], reduction, mid_channels, encoder_kernels_for(encoder_convs),
                encoder_padding, mask_activation, stage=stage, stride=info["reduction"])
        channels = self.backbone.out_channels
        if score_activation not in ("sigmoid", "identity"):
            raise ValueError(f"score_activation={score_activation!r}; choose 'sigmoid' or "
                             "'identity'")
        self.score = nn.Sequential(nn.Conv2d(channels, 1, kernel_size=1),
                                   nn.Sigmoid() if score_activation == "sigmoid" else nn.Identity())
        self.embed = nn.Sequential(nn.Linear(channels, embed_dim),
                                   nn.BatchNorm1d(embed_dim) if embed_bn else nn.Identity())
        if classifier_hidden:
            self.classifier = nn.Sequential(nn.Linear(embed_dim, classifier_hidden),
                                            nn.ReLU(inplace=True),
                                            nn.Linear(classifier_hidden, num_classes))
        else:
            self.classifier = nn.Linear(embed_dim, num_classes)
        self.verifier = nn.Linear(embed_dim, 2)
        self.feat_dim = embed_dim

    @property
    def weights_init(self) -> dict:
        return self.backbone.weights.as_dict()

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """layer4's output f and the attention maps (empty without the module)."""
        maps: dict[str, torch.Tensor] = {}
        x = self.backbone.stem(x)
        for name in self.backbone.stage_names:
            x = getattr(self.backbone, name)(x)
            if self.attention is not None and name == self.stage:
                x, maps = self.attention(x)
        return x, maps

    def forward(self, x: torch.Tensor,
                pairs: tuple[torch.Tensor, torch.Tensor] | None = None) -> ReIDOutput:
        """`pairs` (two index tensors into the batch) adds extras["pair_logits"], the
        verification logits of those image pairs; computing them inside forward keeps the
        verification head trainable under DistributedDataParallel."""
        fmap, maps = self.forward_features(x)
        z = self.embed(fmap.mean(dim=(2, 3)))
        logits = self.classifier(z)
        extras = {"fmap": fmap, "score": self.score(fmap), **maps}
        if pairs is not None:
            extras["pair_logits"] = self.verify(z[pairs[0]], z[pairs[1]])
        return ReIDOutput(logits, z, z, extras)

    def verify(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Same/different logits (B, 2) of embedding pairs (Eq. 6); index 1 means "same"."""
        return self.verifier(z1 * z2)


@torch.no_grad()
def score_distances(model: nn.Module, images: torch.Tensor, pids: torch.Tensor,
                    camids: torch.Tensor, batch_size: int = 128) -> dict[str, float]:
    """Mean L1 distance between the attention scores s (Sec. 3.3) of image pairs: same person
    seen by different cameras, and different people. Eq. 8 (in the text's form) should make the
    first small against the second; `images` are normalised (N,3,H,W). The ratio is NaN when
    every image gets the same score map (a collapsed score head)."""
    model.eval()
    scores = torch.cat([model(images[i:i + batch_size]).extras["score"].flatten(1).float()
                        for i in range(0, len(images), batch_size)])
    dist = torch.cdist(scores, scores, p=1)
    same = pids[:, None] == pids[None, :]
    cross_cam = camids[:, None] != camids[None, :]
    upper = torch.ones_like(same).triu(1)
    pos, neg = same & cross_cam & upper, ~same & upper
    if not pos.any() or not neg.any():
        raise ValueError("score_distances needs a person seen by two cameras and two people")
    d_pos, d_neg = float(dist[pos].mean()), float(dist[neg].mean())
    ratio = d_pos / d_neg if d_neg > 0 else float("nan")
    return {"same person": d_pos, "different people": d_neg, "ratio": ratio}
