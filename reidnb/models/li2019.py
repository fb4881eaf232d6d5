"""The self-attention guided ResNet-50 of li2019 (Li, Jiang and Hwang 2019, Knowledge-Based
Systems, doi:10.1016/j.knosys.2019.07.003): its two attention blocks and its model.

The network (Sec. 3, Fig. 2, Table 1):

    ResNet-50 without its FC layer -> res5c map x (D x H x W = 2048 x 8 x 4 at 256 x 128)
    x -> [self-attention block, Eqs. 2-6] -> y -> global pooling -> 2048-d feature
    feature -> Linear(2048, identities) = logits (cross-entropy with label smoothing, Eq. 9)
    the feature also feeds the batch-hard triplet loss (Eq. 7); L = L_triplet + L'_softmax (Eq. 10)

Blocks (the contract is reidnb/models/attention.py):
- `SelfAttention` ("li2019_self", Sec. 3.2): with L = H W positions and 1x1 convolutions f, g, h,
  e_ij = relu(f(x_i)) . relu(g(x_j)) (Eq. 3), s_ji = softmax over i of e_ij (Eq. 4),
  o_j = sum_i s_ji h(x_i) (Eq. 5), y = alpha o + x with alpha a learnable scalar starting at 0
  (Eq. 6).
- `SpatialAttention` ("li2019_spatial"): the "spatial-attention" row of Table 3 (Sec. 4.3).

What we read where the paper is unclear or contradicts itself (each reading is one argument):
- `last_stride=2`: Table 1 puts res5c at 2048 x 8 x 4 for a 256 x 128 input, so L = 32. (Sec. 3.1
  also calls L "the batch size"; the batch size of Sec. 4.2 happens to be 32 too.)
- Eq. 2 gives W_f, W_g, W_h as D x D, but the next paragraph shrinks the feature space to D/8.
  `reduce=8` reads that as f and g only (queries and keys, D -> D/8), with h kept at D -> D, each
  convolution with a bias: 5,245,441 parameters at D = 2048, alpha included. `reduce=1` is Eq. 2
  as printed (three D x D maps, 12,589,057). `reduce_h=True` also narrows h to D/reduce and adds
  a 1x1 convolution back to D, so h stays a linear map D -> D of rank D/reduce.
- Eq. 3 as printed has x_i in both factors; we pair position i (through f) with position j
  (through g), which the e_ij index calls for. Eq. 4 sums over "i = 1..D"; the sum has to run
  over the L positions for s to be a distribution over where to look, and we take it so: each
  row s_j. sums to 1. Eq. 5's double sum reduces to o_j = sum_i s_ji h(x_i).
- `scale=False`: Eq. 1 (the Transformer's) divides by sqrt(d_k) but Eqs. 3-4 do not; `scale=True`
  divides e by sqrt(D/reduce).
- `kernel_size=1`: Sec. 3.2 speaks of 1x1 convolutions and also of "multi-scale" transformation
  spaces without saying which other sizes; any odd size k gives f, g and h k x k convolutions
  with "same" padding.
- `score="softmax"` (Eq. 4, Table 6's first row). "sigmoid" is Table 6's second row, read as a
  plain elementwise sigmoid of e; since e >= 0 after the ReLUs every score is then >= 0.5.
  "sigmoid_rownorm" divides each sigmoid row by its sum, so rows sum to 1 as with the softmax.
- `uniform_scores=True` is a control, not in the paper: every s_ji = 1/L, so each position gets
  alpha times the mean of h(x) (f and g are kept but unused: the same parameter count).
- `alpha_init=0.0` (Eq. 6). A non-zero start is offered for tests and comparisons.

The model (`Li2019`):
- `pool="avg"`: Sec. 4.2 turns the last map into a 2048-d vector; from a 2048 x 8 x 4 map that
  reads most simply as global pooling (flattening would give 65,536 values, Sec. 3's wording);
  "max" is the other common pooling.
- `bnneck=False`: the paper has no BN neck; `bnneck=True` adds Luo et al.'s (heads.py). `feat` is
  the pooled vector (the triplet loss and, per Sec. 4.2, retrieval); `feat_bn` is the same tensor
  unless the neck is on.
- `attention=None` is Table 3's "resnet-50" row: the same network without the block.

Whatever the scores, global average pooling sees them only through how much attention each
position receives, c_i = sum_j s_ji: GAP(y) = GAP(x) + alpha sum_i (c_i/L) h(x_i), which
`pooled_self_attention` computes. When rows sum to 1 (softmax, "sigmoid_rownorm", uniform) the
c_i sum to L, so for a 1x1 h the term is alpha (W_h sum_i (c_i/L) x_i + b_h).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionBlock
from .backbones import build_backbone
from .heads import BNNeckClassifier, ReIDOutput

SCORES = ("softmax", "sigmoid", "sigmoid_rownorm")
OVER = ("positions", "channels")
POOLS = ("avg", "max")


def _conv(c_in: int, c_out: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=k // 2)


class SelfAttention(AttentionBlock):
    """li2019's self-attention block: y = alpha o + x (Eqs. 2-6); see the module docstring for
    each option. Keeps `maps`: "scores" s (B, L, L), row j = where position j looks;
    "received" c_i = sum_j s_ji (B, 1, H, W); "alpha" (B, 1), the scalar alpha per image."""

    def __init__(self, channels: int, *, reduce: int = 8, reduce_h: bool = False,
                 kernel_size: int = 1, scale: bool = False, score: str = "softmax",
                 uniform_scores: bool = False, alpha_init: float = 0.0):
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"SelfAttention: score={score!r}; choose from {SCORES}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"SelfAttention: kernel_size must be odd, got {kernel_size}")
        if reduce < 1 or channels % reduce:
            raise ValueError(f"SelfAttention: channels={channels} is not divisible by "
                             f"reduce={reduce}")
        inner = channels // reduce
        self.key_dim = inner
        self.scale = scale
        self.score = score
        self.uniform_scores = uniform_scores
        self.f = _conv(channels, inner, kernel_size)
        self.g = _conv(channels, inner, kernel_size)
        if reduce_h:
            self.h = nn.Sequential(_conv(channels, inner, kernel_size),
                                   nn.Conv2d(inner, channels, 1))
        else:
            self.h = _conv(channels, channels, kernel_size)
        self.alpha = nn.Parameter(torch.tensor(float(alpha_init)))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """s (B, L, L) with s[:, j, i] the weight position j gives position i (Eqs. 3-4)."""
        b, _, hgt, wid = x.shape
        n = hgt * wid
        if self.uniform_scores:
            return x.new_full((b, n, n), 1.0 / n)
        q = torch.relu(self.f(x)).flatten(2)           # (B, d, L), index i
        k = torch.relu(self.g(x)).flatten(2)           # (B, d, L), index j
        e = torch.bmm(k.transpose(1, 2), q)            # (B, L_j, L_i): e_ij at [j, i]
        if self.scale:
            e = e / math.sqrt(self.key_dim)
        if self.score == "softmax":
            return torch.softmax(e, dim=-1)
        s = torch.sigmoid(e)
        return s / s.sum(dim=-1, keepdim=True) if self.score == "sigmoid_rownorm" else s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        s = self.scores(x)
        v = self.h(x).flatten(2)                        # (B, D, L), index i
        o = torch.bmm(v, s.transpose(1, 2))             # o[:, :, j] = sum_i s_ji h(x_i)
        y = self.alpha * o.view(b, c, hgt, wid) + x
        self.keep_maps(scores=s, received=s.sum(dim=1).view(b, 1, hgt, wid),
                       alpha=self.alpha.detach().expand(b, 1))
        return y


def pooled_self_attention(x: torch.Tensor, block: SelfAttention) -> torch.Tensor:
    """GAP(block(x)) (B, D) computed another way: GAP(x) + alpha sum_i (c_i / L) h(x_i), with c_i
    = sum_j s_ji the attention position i receives. The L x L scores enter only through c."""
    c = block.scores(x).sum(dim=1)                       # (B, L)
    v = block.h(x).flatten(2)                            # (B, D, L)
    n = v.shape[-1]
    return x.mean(dim=(2, 3)) + block.alpha * torch.einsum("bdl,bl->bd", v, c) / n


class SpatialAttention(AttentionBlock):
    """The "spatial-attention" comparison of Table 3 (Sec. 4.3), read as a softmax-weighted map.

    `over="positions"`: a 1x1 convolution D -> 1 scores each of the L positions, a softmax over
    positions gives a (summing to 1), and y = x * (L a), so a uniform a leaves x unchanged; maps
    "attention" (B, 1, H, W) holds a. `over="channels"` follows Sec. 4.3's wording more closely:
    each feature map is pooled to one value (global average), a 1-D convolution of `kernel_size`
    runs along that channel sequence, a softmax over the D channels gives one weight per map and
    y = x * (D a); maps "attention" (B, D, 1, 1). The paper's last step ("fuse ... with the last
    feature map") is read as this reweighting of the last map itself. The scoring convolutions
    have no bias: a softmax ignores a constant added to all its inputs.
    """

    def __init__(self, channels: int, *, over: str = "positions", kernel_size: int = 3):
        super().__init__()
        if over not in OVER:
            raise ValueError(f"SpatialAttention: over={over!r}; choose from {OVER}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"SpatialAttention: kernel_size must be odd, got {kernel_size}")
        self.over = over
        if over == "positions":
            self.score = nn.Conv2d(channels, 1, 1, bias=False)
        else:
            self.score = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        if self.over == "positions":
            a = torch.softmax(self.score(x).flatten(1), dim=1).view(b, 1, hgt, wid)
            weight = a * (hgt * wid)
        else:
            a = torch.softmax(self.score(x.mean(dim=(2, 3))[:, None, :]).flatten(1), dim=1)
            a = a.view(b, c, 1, 1)
            weight = a * c
        self.keep_maps(attention=a)
        return x * weight


#: This paper's attention blocks by name, merged into `reidnb.models.ATTENTION_BLOCKS`.
ATTENTION_BLOCKS = {"li2019_self": SelfAttention, "li2019_spatial": SpatialAttention}
BLOCKS_BY_OPTION = {"self": SelfAttention, "spatial": SpatialAttention}


class Li2019(nn.Module):
    """Trunk -> block on the last stage -> pooling -> (BN neck) -> classifier (Sec. 3, Fig. 2).

    `attention`: "self" (the paper's model), "spatial" (Table 3 row 2) or None (row 1); the
    remaining keyword arguments go to that block. Returns `ReIDOutput`; extras: "fmap" (the
    last map after the block) and the block's maps.
    """

    def __init__(self, num_classes: int, backbone: str = "resnet50", pretrained="auto",
                 last_stride: int = 2, attention: str | None = "self", pool: str = "avg",
                 bnneck: bool = False, **block_options):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"Li2019: pool={pool!r}; choose from {POOLS}")
        if attention is not None and attention not in BLOCKS_BY_OPTION:
            raise ValueError(f"Li2019: attention={attention!r}; choose from "
                             f"{sorted(BLOCKS_BY_OPTION)} or None")
        if attention is None and block_options:
            raise ValueError(f"Li2019: block options {sorted(block_options)} need an attention "
                             "block")
        self.backbone = build_backbone(backbone, pretrained=pretrained, last_stride=last_stride)
        self.feat_dim = self.backbone.out_channels
        self.attention = (None if attention is None
                          else BLOCKS_BY_OPTION[attention](self.feat_dim, **block_options))
        self.pool = pool
        self.head = BNNeckClassifier(self.feat_dim, num_classes, bnneck=bnneck)

    @property
    def weights_init(self) -> dict:
        return self.backbone.weights.as_dict()

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The last stage's map after the block, and the block's maps (empty without one)."""
        fmap = self.backbone(x)
        if self.attention is None:
            return fmap, {}
        fmap = self.attention(fmap)
        return fmap, dict(self.attention.maps)

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        fmap, maps = self.forward_features(x)
        feat = (fmap.mean(dim=(2, 3)) if self.pool == "avg"
                else F.adaptive_max_pool2d(fmap, 1).flatten(1))
        logits, feat_bn = self.head(feat)
        return ReIDOutput(logits, feat, feat_bn, {"fmap": fmap, **maps})
