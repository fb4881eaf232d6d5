"""Loss functions of the five papers, as pure functions of tensors.

Shapes: B = batch, C = identities, D = embedding size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .portable_ops import sqrt


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0
                  ) -> torch.Tensor:
    """Identity loss (B,C),(B,) -> scalar; `label_smoothing` eps as in Szegedy et al. 2016 (li2019 Eq. 9)."""
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def pairwise_distances(x: torch.Tensor, y: torch.Tensor | None = None, squared: bool = False
                       ) -> torch.Tensor:
    """Euclidean distances (N,D),(M,D) -> (N,M), clamped before the square root for stable grads
    (a correctly rounded root: `portable_ops.sqrt`)."""
    y = x if y is None else y
    d2 = (x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1).unsqueeze(0) - 2.0 * x @ y.t()).clamp_min(0)
    return d2 if squared else sqrt(d2.clamp_min(1e-12))


def hardest_distances(feat: torch.Tensor, pids: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per anchor, the distance to its farthest positive and to its nearest negative in the
    batch (the triplet batch-hard mining picks; Hermans et al. 2017)."""
    dist = pairwise_distances(feat)
    same = pids.unsqueeze(0) == pids.unsqueeze(1)
    d_ap = dist.masked_fill(~same, float("-inf")).amax(1)
    d_an = dist.masked_fill(same, float("inf")).amin(1)
    return d_ap, d_an


def batch_hard_triplet(feat: torch.Tensor, pids: torch.Tensor, margin: float | None = 0.3
                       ) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017, Eq. 5); li2019 Sec. 3.3.

    For each anchor: the farthest positive and the nearest negative in the batch (P x K sampling).
    `margin=None` uses the soft margin log(1 + exp(d_ap - d_an)).
    """
    same = pids.unsqueeze(0) == pids.unsqueeze(1)
    if not (same.sum(1) > 1).all() or same.all():
        raise ValueError("batch-hard triplet needs >= 2 images per identity and >= 2 identities")
    d_ap, d_an = hardest_distances(feat, pids)
    if margin is None:
        return F.softplus(d_ap - d_an).mean()
    return F.relu(d_ap - d_an + margin).mean()


def triplet_margin(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                   margin: float = 1.0, p: float = 2.0) -> torch.Tensor:
    """Plain triplet loss on given triplets, max(d(a,p) - d(a,n) + m, 0) (the lakshmi tutorial)."""
    return F.triplet_margin_loss(anchor, positive, negative, margin=margin, p=p)


def verification(pair_logits: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Binary same/different identity loss on (B,2) pair logits (jeong2020 Eq. 7, jamal2020, zheng2019)."""
    return F.cross_entropy(pair_logits, same.long())


UNIFORMITY_FORMS = ("text", "printed")
UNIFORMITY_REDUCTIONS = ("sum", "mean")


def uniformity(s_q: torch.Tensor, s_p: torch.Tensor, s_n: torch.Tensor, margin: float = 1.0,
               form: str = "text", reduce: str = "sum") -> torch.Tensor:
    """Attention uniformity loss (jeong2020 Eq. 8) on attention scores (B,1,H,W) -> scalar.

    d is the L1 distance between flattened scores, averaged over the B triplets. `reduce="sum"`
    sums |s_q - s_p| over the H x W cells, as Eq. 8 is written; its scale (and so the weight of
    a given margin) then grows with the map: 32 cells at the paper's 8 x 4, 8 at a 128 x 64
    input. `reduce="mean"` averages over the cells instead, so d is in [0, 1] for sigmoid scores
    whatever the map size and the margin is a per-cell margin (m_mean = m_sum / (H W)).
    `form="text"`: max(d(q,p) - d(q,n) + m, 0), a triplet loss that pulls the
    same person's attention together, as Sec. 3.3 says the loss should (the default).
    `form="printed"`: Eq. 8 as typeset, max(d(q,n) - d(q,p) + m, 0), which rewards dissimilar
    attention for the same person. The paper gives no margin; 1.0 is the default here.
    """
    if form not in UNIFORMITY_FORMS:
        raise ValueError(f"uniformity: form={form!r}; choose from {UNIFORMITY_FORMS}")
    if reduce not in UNIFORMITY_REDUCTIONS:
        raise ValueError(f"uniformity: reduce={reduce!r}; choose from {UNIFORMITY_REDUCTIONS}")
    d_qp = (s_q - s_p).flatten(1).abs()
    d_qn = (s_q - s_n).flatten(1).abs()
    d_qp, d_qn = (d_qp.sum(1), d_qn.sum(1)) if reduce == "sum" else (d_qp.mean(1), d_qn.mean(1))
    gap = d_qp - d_qn if form == "text" else d_qn - d_qp
    return F.relu(gap + margin).mean()


LABEL_SMOOTHING_FORMS = ("target", "printed")


def label_smoothing_ce(logits: torch.Tensor, targets: torch.Tensor, eps: float = 0.1,
                       form: str = "target") -> torch.Tensor:
    """Label-smoothed identity loss (B,C),(B,) -> scalar, in the two readings of li2019 Eq. 9.

    `form="target"`: smoothing of the target (Szegedy et al. 2016, li2019's ref. [32]): cross
    entropy against q = (1 - eps) onehot + eps / C; this is `cross_entropy(..., eps)`.
    `form="printed"`: Eq. 9 as typeset, which puts the mixture inside the log on the predicted
    probability of the true class: -mean log((1 - eps) p_y + eps / C), p = softmax(logits).
    That loss is bounded by -log(eps / C) and its gradient fades on confidently wrong samples.
    Both equal plain cross entropy at eps = 0. Sec. 3.3 uses eps = 0.1, C = identities.
    """
    if form not in LABEL_SMOOTHING_FORMS:
        raise ValueError(f"label_smoothing_ce: form={form!r}; choose from "
                         f"{LABEL_SMOOTHING_FORMS}")
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"label_smoothing_ce: eps must be in [0, 1), got {eps}")
    if form == "target":
        return cross_entropy(logits, targets, label_smoothing=eps)
    log_p = F.log_softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)
    if eps == 0.0:
        return -log_p.mean()
    mixed = torch.logaddexp(log_p + math.log1p(-eps),
                            torch.full_like(log_p, math.log(eps / logits.shape[1])))
    return -mixed.mean()
