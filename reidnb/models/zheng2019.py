"""The consistent attentive Siamese network (CASN) of zheng2019 (Zheng, Karanam, Wu and Radke,
"Re-Identification with Consistent Attentive Siamese Networks", CVPR 2019): the model and the
differentiable attention its two losses are built from.

What the paper specifies (Secs. 3.1-3.3):
- A trunk (ImageNet ResNet-50 conv1-conv5) gives f; an IDE classifier of two fully connected
  layers predicts the identity, L_ide = cross entropy (Sec. 3.1.1, Fig. 3, Eq. 1). The trunk may
  be PCB's instead (Sun et al. 2018; Table 3 runs both).
- Identification attention (Sec. 3.1.2, Eq. 2, after GAIN, Li et al. 2018): M = Grad-CAM of the
  true class y_c; soft mask S(M) = sigmoid(alpha (M - beta)); the masked image
  I_bar = I * (1 - S(M)) goes through the same network and its own-class score is the loss,
  L_ia = y_bar_c, so the map must cover everything that identifies the person.
- Siamese module (Sec. 3.2): f^- = f1 - f2 feeds a "BCE" classifier of two FC layers giving
  z in R^2, z_1 = "same" (Eq. 3). For a positive pair, alpha_i = 1[dz_1/df^-_i > 0] (Eq. 4),
  s_j = <alpha, f_j>, M_j = Grad-CAM of s_j at the last convolutional layer; the row-wise max of
  M_j is a vertical profile, cut from its first to its last entry above t and resized (M*_j);
  L_sa = L_bce + alpha ||M*_1 - M*_2||_2 (Eq. 5); L = L_ide + l1 L_ia + l2 L_sa (Eq. 6).

What we read where the paper is silent or ambiguous (one argument each, first choice default):
- `head` ("ide" | "pcb"). "ide": f = global average of conv5; the IDE classifier is
  Linear(D, `hidden`) + BatchNorm1d + ReLU + Dropout + Linear(hidden, C) (Sec. 3.1.1 says only
  "two fully-connected layers"; widths 2048 -> 512 -> C). "pcb" (Sun et al. 2018 Sec. 3.1, no
  RPP as in Table 3): conv5 cut into `parts` horizontal stripes, each averaged, one shared 1x1
  convolution to `part_dim` + BatchNorm + ReLU (PCB's text names one such layer), a classifier
  per stripe (not shared); f = the stripes' reduced vectors concatenated (parts x part_dim), the
  image's logits = the SUM of the stripe logits (what Grad-CAM of "the true class" reads for
  L_ia), extras["part_logits"] (B, parts, C) for PCB's identity loss, the sum of the stripes'
  cross entropies (SiameseObjective applies it). A conv5 height not divisible by `parts` is an
  error (384x128 with last stride 1 gives 24 rows, 4 per stripe).
- The BCE head (Sec. 3.2.1, "structurally similar to the IDE classifier"): Linear(D_f,
  `bce_hidden`) + ReLU + Linear(bce_hidden, 2), no BatchNorm, so each pair's logits depend on
  that pair alone and dz/df^- has the closed form of `CASN.same_gradient`. Index 1 = "same"
  (Eq. 3's c_p = 1), the convention of `losses.verification` and SiameseObjective.
- `diff` ("signed" | "abs" | "square"): the head's input d(f1, f2). "signed" is f1 - f2 as
  printed; it makes z depend on the pair's order. "abs" |f1 - f2| and "square" (f1 - f2)^2 are
  symmetric. Eq. 4's f^- is read as the head's input whichever `diff` (so alpha is read there).
- Grad-CAM (Selvaraju et al. 2017; Eq. 2 names no layer, Sec. 3.2.2 "the last convolutional
  layer"): on conv5, the trunk's output, kept in extras["fmap"] and differentiated in place
  (`grad_cam_from`, no second forward): channel weights = spatial mean of the gradient of the
  summed scores, M = ReLU(sum_k w_k A_k). In train mode BatchNorm after conv5 (the IDE
  classifier's, PCB's) mixes a batch's images, so one image's weights also see the others, as in
  `reidnb.cam.grad_cam`.
- Soft mask (Sec. 3.1.2): M is divided by its per-image maximum (the paper's beta is a fixed
  threshold, so M must have a known scale), upsampled bilinearly to the image and passed through
  sigmoid(alpha (M - beta)) with alpha = 10, beta = 0.5 (GAIN's omega, sigma). Masking happens on
  the normalised image, so a masked pixel becomes 0, the normalisation's mean colour.
- `score` ("prob" | "logit"): y_bar_c of Eq. 2 is read as the softmax probability of the own
  class (bounded in [0, 1]) or the raw logit (unbounded below, so minimising it may
  diverge). Eq. 2 is per image; L_ia is the batch mean.
- `cam_grad` ("full" | "detached"): whether L_ia's gradient also flows through the Grad-CAM
  channel weights (the double backward); "detached" keeps them constant (the map still depends
  on A). The masked image goes through the same model in its current mode; in train mode it
  updates BatchNorm's running statistics too.
- `sign` ("shared" | "own"): Sec. 3.2.2 uses one alpha for both images, though
  dz_1/df_2 = -dz_1/df^- for "signed": "own" gives the second image 1[-dz_1/df^- > 0].
  Eq. 4's index range 0..dim(f^-) is one entry too many: read as all D_f entries.
- For the IDE head f = GAP(A), so ds_j/dA^k = alpha_k/(hw) everywhere and
  M_j = ReLU(sum_k alpha_k A_j^k)/(hw) (`pooled_siamese_maps`): the Siamese Grad-CAM is a
  weighted channel sum and its double backward touches only the head.
- The profile (`aligned_profile`): the row max, divided by its own maximum so t = 0.3 is
  relative (on raw maps the loss could fall by shrinking the features); kept from the first to
  the last entry above t (none above t: all kept); the kept segment resized linearly to the map
  height, its ends on the ends (align_corners); the crop positions carry no gradient, the values
  do. `crop=False` is the control without the cut.
- Eq. 5's norm (`consistency`): ||.||_2 plain, with eps under the root so the gradient stays
  finite at 0, or squared. It is applied to positive pairs only (Sec. 3.2.2) and averaged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import portable_ops
from .backbones import build_backbone
from .heads import ReIDOutput

HEADS = ("ide", "pcb")
DIFFS = ("signed", "abs", "square")
IA_SCORES = ("prob", "logit")
CAM_GRADS = ("full", "detached")
SA_NORMS = ("plain", "squared")
SA_SIGNS = ("shared", "own")


def check_choice(owner: str, option: str, value, choices: tuple) -> None:
    """ValueError naming the option, the value and the valid choices when `value` is not one."""
    if value not in choices or isinstance(value, bool):
        raise ValueError(f"{owner}: {option}={value!r}; choose from {choices}")


def _kaiming_linear(in_dim: int, out_dim: int) -> nn.Linear:
    linear = nn.Linear(in_dim, out_dim)
    nn.init.kaiming_normal_(linear.weight, a=0, mode="fan_out")
    nn.init.zeros_(linear.bias)
    return linear


def _classifier(in_dim: int, num_classes: int) -> nn.Linear:
    linear = nn.Linear(in_dim, num_classes)
    nn.init.normal_(linear.weight, std=0.001)
    nn.init.zeros_(linear.bias)
    return linear


class CASN(nn.Module):
    """Trunk, IDE or PCB identity head and the BCE pair head (Secs. 3.1-3.2); options in the
    module docstring. Returns `ReIDOutput(logits, f, f, extras)` in train and eval mode.

    extras: "fmap" (B, K, h, w), conv5 with its graph; "part_logits" (B, parts, C) for PCB;
    with `pairs=(i1, i2)` (index tensors into the batch) "pair_diff" (P, D_f), the pair head's
    input, and "pair_logits" (P, 2), index 1 = "same".
    """

    def __init__(self, num_classes: int, backbone: str = "resnet50", pretrained="auto",
                 last_stride: int = 1, head: str = "ide", parts: int = 6, part_dim: int = 256,
                 hidden: int = 512, bce_hidden: int = 512, diff: str = "signed",
                 dropout: float = 0.0):
        super().__init__()
        check_choice("CASN", "head", head, HEADS)
        check_choice("CASN", "diff", diff, DIFFS)
        if head == "pcb" and (not isinstance(parts, int) or isinstance(parts, bool)
                              or parts < 1):
            raise ValueError(f"CASN: parts={parts!r}; give a positive number of stripes (6)")
        self.backbone = build_backbone(backbone, pretrained=pretrained, last_stride=last_stride)
        self.head, self.diff, self.parts = head, diff, parts
        channels = self.backbone.out_channels
        drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if head == "ide":
            self.classifier = nn.Sequential(_kaiming_linear(channels, hidden),
                                            nn.BatchNorm1d(hidden), nn.ReLU(), drop,
                                            _classifier(hidden, num_classes))
            self.feat_dim = channels
        else:
            conv = nn.Conv2d(channels, part_dim, 1, bias=False)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out")
            self.reduce = nn.Sequential(conv, nn.BatchNorm2d(part_dim), nn.ReLU())
            self.dropout = drop
            self.part_classifiers = nn.ModuleList(_classifier(part_dim, num_classes)
                                                  for _ in range(parts))
            self.feat_dim = parts * part_dim
        self.bce = nn.Sequential(_kaiming_linear(self.feat_dim, bce_hidden), nn.ReLU(),
                                 _classifier(bce_hidden, 2))

    @property
    def weights_init(self) -> dict:
        return self.backbone.weights.as_dict()

    def forward_head(self, fmap: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(f, logits, part_logits) from conv5 (part_logits None for the IDE head)."""
        if self.head == "ide":
            f = fmap.mean(dim=(2, 3))
            return f, self.classifier(f), None
        b, k, h, w = fmap.shape
        if h % self.parts:
            raise ValueError(f"CASN: conv5 height {h} is not divisible by parts={self.parts}; "
                             f"pick an input height giving a multiple of {self.parts} rows "
                             "(e.g. 384 with last stride 1: 24 rows)")
        stripes = fmap.reshape(b, k, self.parts, h // self.parts, w).mean(dim=(3, 4))
        g = self.reduce(stripes[..., None])[..., 0]                 # (B, part_dim, parts)
        part_logits = torch.stack([cls(self.dropout(g[:, :, s]))
                                   for s, cls in enumerate(self.part_classifiers)], dim=1)
        f = g.transpose(1, 2).reshape(b, -1)                        # stripe-major
        return f, part_logits.sum(dim=1), part_logits

    def difference(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        """The pair head's input d(f1, f2) per `diff` (Sec. 3.2.1's f^- for "signed")."""
        d = f1 - f2
        if self.diff == "abs":
            return d.abs()
        return d * d if self.diff == "square" else d

    def pair_logits(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        """z (P, 2) of feature pairs (Eq. 3); index 1 = "same"."""
        return self.bce(self.difference(f1, f2))

    def same_gradient(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        """dz_same/d(head input) (P, D_f) in closed form, W1^T (1[W1 d + b1 > 0] * W2[1]), the
        gradient Eq. 4 thresholds."""
        first, _, last = self.bce
        active = (first(self.difference(f1, f2)) > 0).to(f1.dtype)
        return (active * last.weight[1]) @ first.weight

    def forward(self, x: torch.Tensor,
                pairs: tuple[torch.Tensor, torch.Tensor] | None = None) -> ReIDOutput:
        fmap = self.backbone(x)
        f, logits, part_logits = self.forward_head(fmap)
        extras = {"fmap": fmap}
        if part_logits is not None:
            extras["part_logits"] = part_logits
        if pairs is not None:
            i1, i2 = pairs
            d = self.difference(f[i1], f[i2])
            extras["pair_diff"] = d
            extras["pair_logits"] = self.bce(d)
        return ReIDOutput(logits, f, f, extras)


# --- Grad-CAM inside the loss ------------------------------------------------------------------

def grad_cam_from(scores: torch.Tensor, fmap: torch.Tensor, create_graph: bool = True
                  ) -> torch.Tensor:
    """Grad-CAM (B, h, w) of `scores` (any shape, summed) on the map `fmap` (B, K, h, w) that
    produced them: w = spatial mean of d sum(scores)/dA, M = ReLU(sum_k w_k A_k) (Selvaraju et
    al. 2017 Eqs. 1-2; CASN Eq. 2, Sec. 3.2.2). `create_graph=False` keeps w constant; M still
    depends on `fmap` (detach it for a picture). The forward graph is kept for the loss."""
    if fmap.dim() != 4:
        raise ValueError(f"grad_cam_from: fmap must be (B, K, h, w), got {tuple(fmap.shape)}")
    if not (scores.requires_grad and fmap.requires_grad):
        raise ValueError("grad_cam_from: scores and fmap carry no graph (computed under "
                         "torch.no_grad?); Grad-CAM needs the forward's graph")
    (grads,) = torch.autograd.grad(scores.sum(), fmap, create_graph=create_graph,
                                   retain_graph=True, allow_unused=True)
    if grads is None:
        raise ValueError("grad_cam_from: the scores do not depend on fmap")
    weights = grads.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * fmap).sum(dim=1))


def soft_mask(maps: torch.Tensor, size, alpha: float = 10.0, beta: float = 0.5,
              eps: float = 1e-8) -> torch.Tensor:
    """S(M) (B, 1, H, W) = sigmoid(alpha (M' - beta)), M' the map over its per-image maximum,
    upsampled bilinearly to `size` (H, W) (Sec. 3.1.2)."""
    if maps.dim() != 3:
        raise ValueError(f"soft_mask: maps must be (B, h, w), got {tuple(maps.shape)}")
    top = maps.flatten(1).amax(dim=1)[:, None, None]
    m = (maps / (top + eps))[:, None]
    hw = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if tuple(m.shape[-2:]) != hw:
        m = F.interpolate(m, size=hw, mode="bilinear", align_corners=False)
    return torch.sigmoid(alpha * (m - beta))


def identification_attention(model: nn.Module, out, images: torch.Tensor, pids: torch.Tensor,
                             alpha: float = 10.0, beta: float = 0.5, score: str = "prob",
                             cam_grad: str = "full") -> tuple[torch.Tensor, dict]:
    """L_ia (Eq. 2), the batch mean of the masked images' own-class score, and its parts
    {"maps" (B,h,w), "mask" (B,1,H,W), "masked" (B,3,H,W), "masked_score" (B,)}. `out` is
    model(images) with extras["fmap"]; the masked images run through `model` once more."""
    check_choice("identification_attention", "score", score, IA_SCORES)
    check_choice("identification_attention", "cam_grad", cam_grad, CAM_GRADS)
    pids = pids.long().reshape(-1, 1)
    true = out.logits.gather(1, pids).squeeze(1)
    maps = grad_cam_from(true, out.extras["fmap"], create_graph=cam_grad == "full")
    mask = soft_mask(maps, images.shape[-2:], alpha, beta)
    masked = images * (1 - mask)
    logits = model(masked).logits
    if score == "prob":
        logits = torch.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), 1)
    masked_score = logits.gather(1, pids).squeeze(1)
    parts = {"maps": maps, "mask": mask, "masked": masked, "masked_score": masked_score}
    return masked_score.mean(), parts


# --- Siamese attention (Sec. 3.2.2) -------------------------------------------------------------

def pair_indicator(grad_same: torch.Tensor) -> torch.Tensor:
    """alpha = 1[dz_1/df^- > 0] (Eq. 4), float, without gradient."""
    return (grad_same.detach() > 0).to(grad_same.dtype)


def _distinct(rows: torch.Tensor, name: str) -> None:
    if len(torch.unique(rows)) != len(rows):
        raise ValueError(f"siamese_maps: {name} repeats batch rows ({rows.tolist()}); each "
                         "image may appear once per side, or the Grad-CAM of the summed "
                         "scores mixes its pairs")


def siamese_maps(out, i1: torch.Tensor, i2: torch.Tensor, alpha: torch.Tensor,
                 sign: str = "shared", create_graph: bool = True,
                 alpha2: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(M1, M2), each (P, h, w): Grad-CAM on extras["fmap"] of s_j = <alpha, f_j>, f = out.feat,
    for the pairs (i1[p], i2[p]) (Sec. 3.2.2). sign="own": the second image's indicator is
    `alpha2` (give pair_indicator(-grad)); without it 1 - alpha, which differs only where the
    gradient is exactly 0."""
    check_choice("siamese_maps", "sign", sign, SA_SIGNS)
    _distinct(i1, "i1")
    _distinct(i2, "i2")
    f, fmap = out.feat, out.extras["fmap"]
    alpha = alpha.detach()
    if sign == "shared":
        alpha2 = alpha
    else:
        alpha2 = (1 - alpha) if alpha2 is None else alpha2.detach()
    m1 = grad_cam_from((alpha * f[i1]).sum(dim=1), fmap, create_graph)[i1]
    m2 = grad_cam_from((alpha2 * f[i2]).sum(dim=1), fmap, create_graph)[i2]
    return m1, m2


def pooled_siamese_maps(fmap1: torch.Tensor, fmap2: torch.Tensor, alpha: torch.Tensor,
                        alpha2: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The same maps in closed form for the IDE head (f = GAP(A)):
    M_j = ReLU(sum_k alpha_k A_j^k) / (h w); `alpha2` (default alpha) for the second image."""
    alpha2 = alpha if alpha2 is None else alpha2
    hw = fmap1.shape[-2] * fmap1.shape[-1]

    def cam(a, fm):
        return F.relu(torch.einsum("pk,pkhw->phw", a.detach().to(fm.dtype), fm)) / hw

    return cam(alpha, fmap1), cam(alpha2, fmap2)


def vertical_profile(maps: torch.Tensor) -> torch.Tensor:
    """M_m (P, h): the highest response of each row of the maps (Sec. 3.2.2)."""
    if maps.dim() != 3:
        raise ValueError(f"vertical_profile: maps must be (P, h, w), got {tuple(maps.shape)}")
    return maps.amax(dim=2)


def aligned_profile(profile: torch.Tensor, t: float = 0.3, crop: bool = True,
                    size: int | None = None, eps: float = 1e-8
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """M* (P, size or h), start (P,), end (P,): the profile over its maximum, kept from its first
    to its last entry above `t` (none above t: all of it), resized linearly with its ends on the
    ends (Sec. 3.2.2). start/end carry no gradient, the values do. crop=False: no cut."""
    if profile.dim() != 2:
        raise ValueError(f"aligned_profile: profile must be (P, h), got {tuple(profile.shape)}")
    n, h = profile.shape
    size = h if size is None else int(size)
    p = profile / (profile.amax(dim=1, keepdim=True) + eps)
    rows = torch.arange(h, device=p.device)
    start = torch.zeros(n, dtype=torch.long, device=p.device)
    end = torch.full((n,), h - 1, dtype=torch.long, device=p.device)
    if crop:
        above = p.detach() > t
        hit = above.any(dim=1)
        first = torch.where(above, rows, h).amin(dim=1)
        last = torch.where(above, rows, -1).amax(dim=1)
        start, end = torch.where(hit, first, start), torch.where(hit, last, end)
    step = (end - start).to(p.dtype) / max(size - 1, 1)
    pos = start[:, None].to(p.dtype) + step[:, None] * torch.arange(size, device=p.device,
                                                                     dtype=p.dtype)
    lo = torch.minimum(torch.maximum(pos.floor().long(), start[:, None]), end[:, None])
    hi = torch.minimum(lo + 1, end[:, None])          # never read outside the kept segment
    frac = pos - lo.to(p.dtype)
    aligned = p.gather(1, lo) * (1 - frac) + p.gather(1, hi) * frac
    return aligned, start, end


def consistency(p1: torch.Tensor, p2: torch.Tensor, norm: str = "plain",
                eps: float = 1e-8) -> torch.Tensor:
    """||M*_1 - M*_2|| per pair (P,) (Eq. 5): sqrt(sum (p1 - p2)^2 + eps) or the squared sum."""
    check_choice("consistency", "norm", norm, SA_NORMS)
    sq = (p1 - p2).pow(2).sum(dim=1)
    return portable_ops.sqrt(sq + eps) if norm == "plain" else sq
