"""Training objectives: which batches an epoch draws and how a step turns a batch into losses.

Each objective returns a dict of named scalar tensors with the total under "loss"; the engine logs
every entry per epoch. `validation_losses(model, cache, device)` scores held-out identities with the
objective's own metric loss on batches fixed once (no augmentation), for best-model selection.

An objective's own terms (identification, verification, triplet) are weighted by its fields; a
paper's further losses are extra terms: a `Term` is a name, a weight and a function
`fn(out, ctx, **params) -> scalar` of the model's output and the batch (`BatchContext`). Each term
is logged as "loss_<name>" and enters the total as weight x value; a term of weight <= 0 is still
computed and logged, detached, and left out of the total. Term functions live in the `TERMS`
registry below (jeong2020's uniformity, Eq. 8; zheng2019's "casn_ia" and "casn_sa", Eqs. 2
and 5); an objective takes them as `extra_terms`, each a `Term` or a spec `{"term": <registry
name>, "weight": w, **params}` (plain data, so it can sit in an experiment's objective_kwargs).
A term that reads a model output names it through `require_extra`, so a model without it fails
with a message naming the model class.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .. import losses
from ..data.cache import ImageCache
from ..data.samplers import (identity_batches, identity_triplet_batches, shuffled_batches,
                             triplet_indices)
from ..data.transforms import BatchAugment, normalize
from ..models import zheng2019


def _batch(cache: ImageCache, idx, augment: BatchAugment, gen: torch.Generator,
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
    images = augment(cache.images[idx.to(cache.images.device)], gen).to(device)
    return images, cache.pids[idx.to(cache.pids.device)].to(device)


def row_entropy(scores: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of the rows of (B, L, L) attention scores, each row first divided by
    its sum (sigmoid rows do not sum to 1): log L for uniform rows, 0 for one-hot rows."""
    p = scores.float() / scores.float().sum(dim=-1, keepdim=True)
    return -(p * p.clamp_min(1e-12).log()).sum(dim=-1).mean()


def monitor_values(out) -> dict[str, torch.Tensor]:
    """Diagnostics logged each epoch beside the losses, never added to them, when the model
    returns them: "alpha" (a self-attention block's scalar, li2019 Eq. 6) and
    "attention_entropy" (`row_entropy` of its scores, li2019 Eq. 4)."""
    extras = getattr(out, "extras", None) or {}
    result = {}
    if "alpha" in extras:
        result["alpha"] = extras["alpha"].detach().float().mean()
    if "scores" in extras:
        result["attention_entropy"] = row_entropy(extras["scores"].detach())
    return result


# --- extra loss terms -----------------------------------------------------------------------


class MissingOutputError(KeyError):
    """A loss term needs a model output (an `extras` entry) that the model does not return."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


@dataclass(frozen=True)
class BatchContext:
    """What a term sees besides the model's output.

    model: the module the step called (possibly wrapped in DistributedDataParallel).
    images: the (B,3,H,W) batch as the model saw it.
    pids: (B,) identity labels, or None on held-out identities (validation).
    apn: the batch is anchors, then positives, then negatives (a third each), as
      SiameseObjective and TripletObjective draw it.
    """

    model: nn.Module
    images: torch.Tensor
    pids: torch.Tensor | None
    apn: bool = False


def model_name(model: nn.Module) -> str:
    """Class name of a model, through DistributedDataParallel and torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return type(model).__name__


def require_extra(out, ctx: BatchContext, key: str, term: str, what: str,
                  provided_by: str) -> torch.Tensor:
    """`out.extras[key]`, or a `MissingOutputError` naming the term, what it needs, which model
    provides it and that this one does not."""
    extras = out.extras or {}
    if key not in extras:
        raise MissingOutputError(
            f"{term} needs the model's extras[{key!r}] ({what}); {provided_by} provides it, "
            f"{model_name(ctx.model)} does not (its extras: {sorted(extras) or 'none'})")
    return extras[key]


def uniformity_term(out, ctx: BatchContext, margin: float = 1.0, form: str = "text",
                    reduce: str = "sum") -> torch.Tensor:
    """jeong2020's uniformity loss (Eq. 8, `losses.uniformity`) on the attention scores of the
    anchors, positives and negatives of an APN batch."""
    if not ctx.apn:
        raise ValueError("uniformity term needs anchor / positive / negative batches "
                         "(SiameseObjective or TripletObjective)")
    scores = require_extra(out, ctx, "score", "uniformity term",
                           "an attention score map, (B,1,H,W)", "Jeong2020").float()
    return losses.uniformity(*scores.chunk(3), margin=margin, form=form, reduce=reduce)


def ia_term(out, ctx: BatchContext, alpha: float = 10.0, beta: float = 0.5, score: str = "prob",
            cam_grad: str = "full") -> torch.Tensor | None:
    """zheng2019's identification-attention loss L_ia (Eq. 2,
    `models.zheng2019.identification_attention`) on every image of the batch: the Grad-CAM of
    the true identity masks the image, which runs through `ctx.model` again. None without
    labels (validation)."""
    if ctx.pids is None:
        return None
    require_extra(out, ctx, "fmap", "casn_ia term", "the last convolutional map with its "
                  "graph, (B,K,h,w)", "CASN (zheng2019)")
    if out.logits is None:
        raise ValueError(f"casn_ia term needs identity logits; {model_name(ctx.model)} has none")
    loss, _ = zheng2019.identification_attention(ctx.model, out, ctx.images, ctx.pids, alpha,
                                                 beta, score=score, cam_grad=cam_grad)
    return loss


def sa_term(out, ctx: BatchContext, t: float = 0.3, norm: str = "plain", crop: bool = True,
            sign: str = "shared") -> torch.Tensor | None:
    """zheng2019's attention consistency (Eq. 5 without L_bce, which is the objective's own
    verification loss): the mean over the (anchor, positive) pairs of an APN batch of
    ||M*_1 - M*_2||, M_j the Grad-CAM of s_j = <alpha, f_j> with alpha = 1[dz_same/d(pair head
    input) > 0] (Eq. 4), taken by autograd on extras["pair_logits"] / extras["pair_diff"]. The
    positive pairs are the first third of the batch against the second, the first half of the
    pair rows, as SiameseObjective passes them. None on an output without a graph during
    validation (torch.no_grad): Grad-CAM needs one."""
    zheng2019.check_choice("casn_sa term", "norm", norm, zheng2019.SA_NORMS)
    zheng2019.check_choice("casn_sa term", "sign", sign, zheng2019.SA_SIGNS)
    if not ctx.apn:
        raise ValueError("casn_sa term needs anchor / positive / negative batches "
                         "(SiameseObjective): it compares each anchor's map with its "
                         "positive's")
    what, by = "CASN (zheng2019)", "from model(images, pairs=...)"
    require_extra(out, ctx, "fmap", "casn_sa term", "the last convolutional map with its "
                  "graph, (B,K,h,w)", what)
    diff = require_extra(out, ctx, "pair_diff", "casn_sa term",
                         f"the pair head's input, (P,D) {by}", what)
    logits = require_extra(out, ctx, "pair_logits", "casn_sa term",
                           f"the pair head's logits, (P,2) {by}", what)
    num = len(ctx.images) // 3
    if len(logits) != 2 * num:
        raise ValueError(f"casn_sa term: expected the {num} (anchor, positive) then {num} "
                         f"(anchor, negative) pairs of a {3 * num}-image batch, got "
                         f"{len(logits)} pairs")
    if not diff.requires_grad:
        if ctx.pids is None:
            return None
        raise ValueError("casn_sa term needs the forward's graph (the batch ran under "
                         "torch.no_grad)")
    (grad,) = torch.autograd.grad(logits[:num, 1].sum(), diff, retain_graph=True)
    grad = grad[:num]
    anchors = torch.arange(num, device=diff.device)
    m1, m2 = zheng2019.siamese_maps(
        out, anchors, anchors + num, zheng2019.pair_indicator(grad), sign=sign,
        alpha2=zheng2019.pair_indicator(-grad) if sign == "own" else None)
    p1, _, _ = zheng2019.aligned_profile(zheng2019.vertical_profile(m1), t, crop)
    p2, _, _ = zheng2019.aligned_profile(zheng2019.vertical_profile(m2), t, crop)
    return zheng2019.consistency(p1, p2, norm).mean()


#: Term functions by name, `fn(out, ctx, **params) -> scalar tensor` (or None where it cannot be
#: scored: a term needing `ctx.pids` during validation). Later papers add theirs here.
TERMS: dict[str, Callable[..., torch.Tensor | None]] = {"unif": uniformity_term,
                                                       "casn_ia": ia_term,
                                                       "casn_sa": sa_term}


def register_term(name: str, fn: Callable[..., torch.Tensor | None]) -> None:
    """Add a term function to `TERMS`; a name already there is refused."""
    if name in TERMS:
        raise ValueError(f"term {name!r} is already registered ({TERMS[name].__name__})")
    TERMS[name] = fn


@dataclass(frozen=True)
class Term:
    """One named, weighted loss term: logged as "loss_<name>", added to the total as
    weight x value when weight > 0 (else logged only, detached)."""

    name: str
    weight: float
    fn: Callable[..., torch.Tensor | None]
    params: dict = field(default_factory=dict)

    def __call__(self, out, ctx: BatchContext) -> torch.Tensor | None:
        value = self.fn(out, ctx, **self.params)
        if value is None:
            if ctx.pids is not None:
                raise TypeError(f"term {self.name!r} returned None on a training batch")
            return None
        return value if self.weight > 0 else value.detach()


def build_term(spec: Term | dict) -> Term:
    """A `Term` from a spec `{"term": <TERMS name>, "weight": w, "name": <log name, default the
    term>, **params}`; a `Term` is returned as is."""
    if isinstance(spec, Term):
        return spec
    if not isinstance(spec, dict) or "term" not in spec or "weight" not in spec:
        raise ValueError(f"extra term {spec!r}: give a Term or a dict with 'term' and 'weight'")
    spec = dict(spec)
    key, weight = spec.pop("term"), float(spec.pop("weight"))
    name = spec.pop("name", key)
    if key not in TERMS:
        close = difflib.get_close_matches(str(key), TERMS, n=1)
        raise ValueError(f"unknown term {key!r}; registered: {sorted(TERMS)}"
                         + (f" (did you mean {close[0]!r}?)" if close else ""))
    try:
        inspect.signature(TERMS[key]).bind(None, None, **spec)
    except TypeError as e:
        raise ValueError(f"term {key!r}: parameters {sorted(spec)} do not fit "
                         f"{TERMS[key].__name__}{inspect.signature(TERMS[key])}: {e}") from None
    return Term(name, weight, TERMS[key], spec)


def build_terms(specs, reserved: tuple[str, ...] = ()) -> list[Term]:
    """`build_term` of each spec; names must be unique and differ from the objective's own."""
    if isinstance(specs, (dict, Term)):
        raise ValueError(f"extra_terms takes a list of terms, got one: {specs!r}; wrap it in [...]")
    terms = [build_term(s) for s in specs]
    names = [t.name for t in terms]
    clash = sorted({n for n in names if names.count(n) > 1 or n in reserved})
    if clash:
        raise ValueError(f"extra terms: names {clash} repeat or clash with the objective's own "
                         f"terms {list(reserved)}; give each a distinct 'name'")
    return terms


def _term_losses(terms: list[Term], out, ctx: BatchContext) -> dict[str, torch.Tensor]:
    """{"loss_<name>": value} of each term, in order (terms that cannot be scored left out)."""
    result = {}
    for t in terms:
        value = t(out, ctx)
        if value is not None:
            result[f"loss_{t.name}"] = value
    return result


def _add_weighted(total, terms: list[Term], result: dict[str, torch.Tensor]):
    """total + weight x value of each term of positive weight."""
    for t in terms:
        if t.weight > 0:
            total = total + t.weight * result[f"loss_{t.name}"]
    return total


@dataclass
class IdentityObjective:
    """Identity classification (IDE), optionally with batch-hard triplet (li2019 Eq. 8).

    sampler="random": shuffled batches of `batch_size`; sampler="pk": P identities x K images.
    `id_weight=0` with `triplet_weight>0` is batch-hard triplet alone (Hermans et al. 2017), for a
    model without a classifier. `label_smoothing_form`: "target" (the default: cross entropy
    against the smoothed target, Szegedy et al. 2016) or "printed" (li2019 Eq. 9 as typeset,
    the mixture inside the log; `losses.label_smoothing_ce`). `extra_terms` (see the module
    docstring) are logged after these, under their own names.
    """

    cache: ImageCache
    augment: BatchAugment = field(default_factory=BatchAugment)
    sampler: str = "random"
    batch_size: int = 32
    num_identities: int = 8
    num_instances: int = 4
    label_smoothing: float = 0.0
    triplet_weight: float = 0.0
    triplet_margin: float | None = 0.3
    id_weight: float = 1.0
    extra_terms: Sequence[Term | dict] = ()
    label_smoothing_form: str = "target"
    _terms: list[Term] = field(init=False, repr=False)

    def __post_init__(self):
        if self.id_weight <= 0 and self.triplet_weight <= 0:
            raise ValueError("IdentityObjective needs id_weight > 0 or triplet_weight > 0")
        if self.label_smoothing_form not in losses.LABEL_SMOOTHING_FORMS:
            raise ValueError(f"IdentityObjective: label_smoothing_form="
                             f"{self.label_smoothing_form!r}; choose from "
                             f"{losses.LABEL_SMOOTHING_FORMS}")
        self._terms = build_terms(self.extra_terms, reserved=("id", "triplet"))

    def epoch_batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        if self.sampler == "random":
            return shuffled_batches(len(self.cache), self.batch_size, rng)
        if self.sampler == "pk":
            return identity_batches(self.cache.pids.cpu().numpy(), self.num_identities,
                                    self.num_instances, rng)
        raise ValueError(f"unknown sampler {self.sampler!r}; choose 'random' or 'pk'")

    def step(self, model: nn.Module, batch, gen: torch.Generator, device: torch.device
             ) -> dict[str, torch.Tensor]:
        images, pids = _batch(self.cache, batch, self.augment, gen, device)
        out = model(images)
        result = {}
        total = 0.0
        if self.id_weight > 0:
            if self.label_smoothing_form == "target":
                loss_id = losses.cross_entropy(out.logits.float(), pids, self.label_smoothing)
            else:
                loss_id = losses.label_smoothing_ce(out.logits.float(), pids,
                                                    self.label_smoothing, form="printed")
            result["loss_id"] = loss_id
            total = self.id_weight * loss_id
            result["acc"] = (out.logits.argmax(1) == pids).float().mean().detach()
        if self.triplet_weight > 0:
            loss_tri = losses.batch_hard_triplet(out.feat.float(), pids, self.triplet_margin)
            result["loss_triplet"] = loss_tri
            total = total + self.triplet_weight * loss_tri
        if self._terms:
            result.update(_term_losses(self._terms, out, BatchContext(model, images, pids)))
            total = _add_weighted(total, self._terms, result)
        result.update(monitor_values(out))
        result["loss"] = total
        return result

    def validation_losses(self, model: nn.Module, cache: ImageCache, device: torch.device,
                          seed: int = 0) -> dict[str, float]:
        """Batch-hard triplet loss on P x K batches of held-out identities (identities unseen in
        training, so the identity loss cannot be scored)."""
        if self.triplet_weight <= 0:
            raise ValueError("validation needs a metric loss: set triplet_weight > 0")
        batches = identity_batches(cache.pids.cpu().numpy(), min(self.num_identities,
                                   len(cache.pids.unique())), self.num_instances,
                                   np.random.default_rng(seed))
        vals = [losses.batch_hard_triplet(_embed(model, cache, b, device), cache.pids[b].to(device),
                                          self.triplet_margin) for b in batches]
        return {"val_loss": float(torch.stack(vals).mean())}


@dataclass
class TripletObjective:
    """Anchor / positive / negative triplets drawn at random (the lakshmi tutorial's APN set);
    `extra_terms` (see the module docstring) are logged after the triplet loss. Anchors are drawn
    uniformly, or, with `num_identities` = P, as batches of P anchors of P distinct identities
    (`samplers.identity_triplet_batches`; `batch_size` is then unused)."""

    cache: ImageCache
    augment: BatchAugment = field(default_factory=BatchAugment)
    batch_size: int = 32
    margin: float = 1.0
    cross_camera: bool = True
    triplets_per_epoch: int | None = None   # None: every image is an anchor once per epoch
    num_identities: int | None = None       # P anchors of P identities a batch; None: uniform
    extra_terms: Sequence[Term | dict] = ()
    _terms: list[Term] = field(init=False, repr=False)

    def __post_init__(self):
        self._terms = build_terms(self.extra_terms, reserved=("triplet",))

    def epoch_batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        n = len(self.cache)
        if self.num_identities is not None:
            return identity_triplet_batches(
                self.cache.pids.cpu().numpy(), self.cache.camids.cpu().numpy(),
                self.num_identities, self.triplets_per_epoch or n, rng, self.cross_camera)
        anchors = None
        if self.triplets_per_epoch is not None and self.triplets_per_epoch < n:
            anchors = np.sort(rng.choice(n, size=self.triplets_per_epoch, replace=False))
        trip = triplet_indices(self.cache.pids.cpu().numpy(), self.cache.camids.cpu().numpy(), rng,
                               anchors=anchors, cross_camera=self.cross_camera)
        order = rng.permutation(len(trip))
        stop = (len(trip) // self.batch_size) * self.batch_size
        return [trip[order[i:i + self.batch_size]] for i in range(0, stop, self.batch_size)]

    def step(self, model: nn.Module, batch, gen: torch.Generator, device: torch.device
             ) -> dict[str, torch.Tensor]:
        flat = np.asarray(batch).T.reshape(-1)  # anchors, then positives, then negatives
        images, pids = _batch(self.cache, flat, self.augment, gen, device)
        out = model(images)
        a, p, n = out.feat.float().chunk(3)
        loss = losses.triplet_margin(a, p, n, self.margin)
        result = {"loss_triplet": loss}
        if self._terms:
            result.update(_term_losses(self._terms, out,
                                       BatchContext(model, images, pids, apn=True)))
            loss = _add_weighted(loss, self._terms, result)
        result["loss"] = loss
        return result

    def validation_losses(self, model: nn.Module, cache: ImageCache, device: torch.device,
                          seed: int = 0) -> dict[str, float]:
        """Triplet loss on one fixed APN triplet per held-out image (drawn with `seed`)."""
        trip = triplet_indices(cache.pids.cpu().numpy(), cache.camids.cpu().numpy(),
                               np.random.default_rng(seed), cross_camera=self.cross_camera)
        vals = []
        for i in range(0, len(trip), 128):
            a, p, n = (_embed(model, cache, trip[i:i + 128, j], device) for j in range(3))
            vals.append(losses.triplet_margin(a, p, n, self.margin) * len(a))
        return {"val_loss": float(torch.stack(vals).sum() / len(trip))}


def _embed(model: nn.Module, cache: ImageCache, idx, device: torch.device) -> torch.Tensor:
    """Embeddings (`feat`) of cached images without augmentation."""
    idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
    return model(normalize(cache.images[idx].to(device))).feat.float()


@dataclass
class SiameseObjective:
    """jeong2020's training (Sec. 4.2, Eq. 9): L = w_id L_id + w_ver L_ver + w_unif L_unif.

    A batch is P anchors of P different identities (`num_identities`), each with a positive
    (another image of its identity, from another camera when there is one) and a negative (an
    image of another identity): 3P images. L_id is cross-entropy on all 3P images; L_ver is the
    two-way verification loss on the P (anchor, positive) pairs labelled "same" and the P
    (anchor, negative) pairs labelled "different" (the model's verification head, Eqs. 6-7,
    asked for through `model(images, pairs=...)`); L_unif is the
    uniformity loss on the attention scores extras["score"] (Eq. 8, `losses.uniformity`), the
    first of the objective's terms: `Term("unif", unif_weight, uniformity_term,
    {"margin": unif_margin, "form": unif_form, "reduce": unif_reduce})`, followed by `extra_terms` (see the module
    docstring); they are logged between the verification and the identification losses.
    An epoch draws `anchors_per_epoch` anchors (default: as many as training images), every
    identity once per round. `unif_weight=0` gives Table 5's "+AM" and baseline rows; the
    uniformity loss is then still reported, without gradient. `uniformity=False` leaves that
    term out altogether (neither computed nor logged), for a model without attention scores:
    jamal2020's L = ID + alpha V (Eq. 13) is `uniformity=False, ver_weight=alpha`.
    A model that returns extras["part_logits"] (B, parts, C), PCB's stripe classifiers (Sun et
    al. 2018; zheng2019's PCB head), gets L_id = the SUM over the stripes of each stripe's
    cross entropy (same label smoothing); "acc" still reads out.logits. zheng2019's
    L = L_ide + l1 L_ia + l2 (L_bce + a ||M*_1 - M*_2||) (Eq. 6) is `uniformity=False,
    ver_weight=l2` with the extra terms "casn_ia" (weight l1) and "casn_sa" (weight l2 a).
    """

    cache: ImageCache
    augment: BatchAugment = field(default_factory=BatchAugment)
    num_identities: int = 16
    anchors_per_epoch: int | None = None
    cross_camera: bool = True
    id_weight: float = 1.0
    ver_weight: float = 1.0
    unif_weight: float = 1.0
    unif_margin: float = 1.0
    unif_form: str = "text"
    unif_reduce: str = "sum"
    label_smoothing: float = 0.0
    val_triplets: int = 512
    extra_terms: Sequence[Term | dict] = ()
    _terms: list[Term] = field(init=False, repr=False)
    uniformity: bool = True

    def __post_init__(self):
        if self.unif_form not in losses.UNIFORMITY_FORMS:
            raise ValueError(f"SiameseObjective: unif_form={self.unif_form!r}; choose from "
                             f"{losses.UNIFORMITY_FORMS}")
        unif = Term("unif", self.unif_weight, uniformity_term,
                    {"margin": self.unif_margin, "form": self.unif_form,
                     "reduce": self.unif_reduce})
        own = [unif] if self.uniformity else []
        self._terms = build_terms([*own, *self.extra_terms], reserved=("id", "ver"))

    def epoch_batches(self, rng: np.random.Generator) -> list[np.ndarray]:
        """(P, 3) anchor / positive / negative index arrays, P distinct identities each."""
        pids = self.cache.pids.cpu().numpy()
        return identity_triplet_batches(pids, self.cache.camids.cpu().numpy(),
                                        self.num_identities, self.anchors_per_epoch or len(pids),
                                        rng, self.cross_camera)

    @staticmethod
    def _pairs(num_triplets: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch positions of the (anchor, positive) then (anchor, negative) pairs."""
        a = torch.arange(num_triplets, device=device)
        return torch.cat([a, a]), torch.cat([a + num_triplets, a + 2 * num_triplets])

    def _losses(self, out, ctx: BatchContext) -> dict[str, torch.Tensor]:
        pair_logits = require_extra(
            out, ctx, "pair_logits", "verification term",
            "same/different logits of the (anchor, positive) then (anchor, negative) pairs, "
            "from model(images, pairs=...)", "Jeong2020").float()
        num = len(pair_logits) // 2
        same = torch.cat([torch.ones(num), torch.zeros(num)]).long().to(pair_logits.device)
        result = {"loss_ver": losses.verification(pair_logits, same),
                  "acc_ver": (pair_logits.argmax(1) == same).float().mean().detach()}
        result.update(_term_losses(self._terms, out, ctx))
        pids = ctx.pids
        if pids is not None:
            parts = (out.extras or {}).get("part_logits")
            if parts is None:
                result["loss_id"] = losses.cross_entropy(out.logits.float(), pids,
                                                         self.label_smoothing)
            else:   # PCB: one classifier per stripe, their losses summed
                result["loss_id"] = sum(losses.cross_entropy(parts[:, s].float(), pids,
                                                             self.label_smoothing)
                                        for s in range(parts.shape[1]))
            result["acc"] = (out.logits.argmax(1) == pids).float().mean().detach()
        return result

    def step(self, model: nn.Module, batch, gen: torch.Generator, device: torch.device
             ) -> dict[str, torch.Tensor]:
        flat = np.asarray(batch).T.reshape(-1)  # anchors, then positives, then negatives
        images, pids = _batch(self.cache, flat, self.augment, gen, device)
        out = model(images, pairs=self._pairs(len(flat) // 3, images.device))
        result = self._losses(out, BatchContext(model, images, pids, apn=True))
        total = self.id_weight * result["loss_id"] + self.ver_weight * result["loss_ver"]
        result["loss"] = _add_weighted(total, self._terms, result)
        return result

    def validation_losses(self, model: nn.Module, cache: ImageCache, device: torch.device,
                          seed: int = 0) -> dict[str, float]:
        """Verification (+ weighted uniformity and extra terms) loss on up to `val_triplets`
        fixed triplets of held-out identities (their identity loss cannot be scored): "val_ver",
        "val_<term>" for each term that can be scored without labels, and their weighted sum
        "val_loss" (a term of weight <= 0 counts 0)."""
        rng = np.random.default_rng(seed)
        n = len(cache)
        anchors = np.sort(rng.choice(n, size=min(n, self.val_triplets), replace=False))
        trip = triplet_indices(cache.pids.cpu().numpy(), cache.camids.cpu().numpy(), rng,
                               anchors=anchors, cross_camera=self.cross_camera)
        sums, count = {"val_ver": 0.0}, 0
        for i in range(0, len(trip), 128):
            chunk = trip[i:i + 128]
            idx = torch.as_tensor(chunk.T.reshape(-1))
            images = normalize(cache.images[idx].to(device))
            out = model(images, pairs=self._pairs(len(chunk), device))
            part = self._losses(out, BatchContext(model, images, None, apn=True))
            for k, v in part.items():   # loss_ver, then loss_<term> of the terms scored
                if k.startswith("loss_"):
                    key = "val_" + k[len("loss_"):]
                    sums[key] = sums.get(key, 0.0) + float(v) * len(chunk)
            count += len(chunk)
        result = {k: v / count for k, v in sums.items()}
        val_loss = self.ver_weight * result["val_ver"]
        for t in self._terms:
            if f"val_{t.name}" in result:
                val_loss = val_loss + max(t.weight, 0.0) * result[f"val_{t.name}"]
        result["val_loss"] = val_loss
        return result
