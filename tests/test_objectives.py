"""Tests of reidnb.train.objectives: extra loss terms (named, weighted, logged per term) and the
error a model gets when it lacks an output a term needs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_model import random_cache
from torch import nn

from reidnb.data.transforms import BatchAugment
from reidnb.models.heads import BNNeckClassifier, ReIDOutput
from reidnb.train import objectives
from reidnb.train.engine import TrainConfig, fit
from reidnb.train.objectives import (IdentityObjective, MissingOutputError, SiameseObjective,
                                     Term, TripletObjective, build_term, register_term,
                                     uniformity_term)

CPU = torch.device("cpu")


class PairNet(nn.Module):
    """A tiny Siamese model: identity logits, pair logits and (`score=True`) a 2x2 score map."""

    def __init__(self, num_classes=6, score=True):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = BNNeckClassifier(8, num_classes)
        self.verifier = nn.Linear(8, 2)
        self.score = nn.Conv2d(8, 1, 1) if score else None

    def forward(self, x, pairs=None):
        fmap = torch.relu(self.conv(x))
        f = fmap.mean((2, 3))
        logits, fb = self.head(f)
        extras = {}
        if self.score is not None:
            extras["score"] = torch.sigmoid(nn.functional.adaptive_avg_pool2d(
                self.score(fmap), 2))
        if pairs is not None:
            extras["pair_logits"] = self.verifier(fb[pairs[0]] * fb[pairs[1]])
        return ReIDOutput(logits, f, fb, extras)


class NoPairs(PairNet):
    def forward(self, x, pairs=None):
        return super().forward(x)


def _cache(n_ids=6, per_id=4, seed=0):
    return random_cache(n_ids, per_id, 16, 8, seed)


def _aug():
    return BatchAugment(erasing_p=0.0, pad=1)


def _step(obj, model, seed=0):
    torch.manual_seed(seed)
    batch = obj.epoch_batches(np.random.default_rng(0))[0]
    return obj.step(model, batch, torch.Generator().manual_seed(0), CPU)


def feat_energy(out, ctx, scale=1.0):
    """A dummy term: scale x mean squared embedding."""
    return scale * out.feat.float().pow(2).mean()


@pytest.fixture
def dummy_registered(monkeypatch):
    """TERMS with "dummy" added, restored after the test."""
    monkeypatch.setattr(objectives, "TERMS", dict(objectives.TERMS))
    register_term("dummy", feat_energy)


# --- the uniformity term's missing output ----------------------------------------------------

@pytest.mark.parametrize("unif_weight", [1.0, 0.0])
def test_uniformity_term_names_a_model_without_score(unif_weight):
    # today's behaviour kept: the uniformity loss is computed (and logged) even at weight 0
    obj = SiameseObjective(_cache(), _aug(), num_identities=3, unif_weight=unif_weight)
    with pytest.raises(MissingOutputError,
                       match=r"uniformity term needs the model's extras\['score'\] \(an attention "
                             r"score map.*Jeong2020 provides it, PairNet does not \(its extras: "
                             r"\['pair_logits'\]\)"):
        _step(obj, PairNet(score=False))
    assert issubclass(MissingOutputError, KeyError)   # callers catching KeyError still do


def test_verification_term_names_a_model_without_pair_logits():
    obj = SiameseObjective(_cache(), _aug(), num_identities=3)
    with pytest.raises(MissingOutputError, match=r"verification term needs the model's "
                                                 r"extras\['pair_logits'\].*NoPairs does not"):
        _step(obj, NoPairs())


def test_uniformity_term_refuses_a_batch_that_is_not_anchor_positive_negative():
    obj = IdentityObjective(_cache(), _aug(), batch_size=6,
                            extra_terms=[{"term": "unif", "weight": 1.0}])
    with pytest.raises(ValueError, match="uniformity term needs anchor / positive / negative"):
        _step(obj, PairNet())


# --- the Siamese objective's terms come from its existing kwargs -----------------------------

def test_siamese_uniformity_is_its_first_term_built_from_its_kwargs():
    obj = SiameseObjective(_cache(), unif_weight=0.5, unif_margin=0.7, unif_form="printed",
                           unif_reduce="mean")
    assert obj._terms == [Term("unif", 0.5, uniformity_term, {"margin": 0.7, "form": "printed",
                                                             "reduce": "mean"})]
    assert IdentityObjective(_cache())._terms == [] and TripletObjective(_cache())._terms == []


@pytest.mark.parametrize("unif_weight", [1.0, 0.0])
def test_siamese_step_weights_the_uniformity_term(unif_weight):
    out = _step(SiameseObjective(_cache(), _aug(), num_identities=3, unif_weight=unif_weight),
                PairNet())
    assert list(out) == ["loss_ver", "acc_ver", "loss_unif", "loss_id", "acc", "loss"]
    base = out["loss_id"] + out["loss_ver"]
    if unif_weight > 0:
        assert torch.equal(out["loss"], base + unif_weight * out["loss_unif"])
        assert out["loss_unif"].requires_grad
    else:   # logged, detached, and not in the total
        assert torch.equal(out["loss"], base) and not out["loss_unif"].requires_grad


# --- named extra terms -----------------------------------------------------------------------

def test_extra_term_is_logged_by_name_and_weighted_in_the_total(dummy_registered):
    spec = {"term": "dummy", "weight": 0.5, "scale": 2.0}
    obj = IdentityObjective(_cache(), _aug(), batch_size=6, extra_terms=[spec])
    model = PairNet()
    out = _step(obj, model)
    assert list(out) == ["loss_id", "acc", "loss_dummy", "loss"]
    assert torch.equal(out["loss"], out["loss_id"] + 0.5 * out["loss_dummy"]), (
        f"total {out['loss'].item()}, expected loss_id + 0.5 x loss_dummy = "
        f"{(out['loss_id'] + 0.5 * out['loss_dummy']).item()}")
    # the term is scale x mean squared feat of this batch's images (the model is in train mode:
    # feat is taken before the BN neck, so a second forward pass gives the same value)
    images = _aug()(_cache().images[torch.as_tensor(obj.epoch_batches(
        np.random.default_rng(0))[0])], torch.Generator().manual_seed(0))
    expected = 2.0 * model(images).feat.pow(2).mean()
    assert torch.allclose(out["loss_dummy"], expected), (
        f"loss_dummy {out['loss_dummy'].item()}, expected 2 x mean(feat^2) = {expected.item()}")


def test_extra_term_of_weight_zero_is_logged_detached_and_left_out(dummy_registered):
    obj = IdentityObjective(_cache(), _aug(), batch_size=6,
                            extra_terms=[{"term": "dummy", "weight": 0.0}])
    out = _step(obj, PairNet())
    plain = _step(IdentityObjective(_cache(), _aug(), batch_size=6), PairNet())
    assert not out["loss_dummy"].requires_grad
    assert torch.equal(out["loss"], plain["loss"]) and torch.equal(out["loss"], out["loss_id"])


def test_extra_terms_follow_the_uniformity_term_in_the_siamese_objective(dummy_registered):
    obj = SiameseObjective(_cache(), _aug(), num_identities=3, unif_weight=1.0, val_triplets=8,
                           extra_terms=[{"term": "dummy", "weight": 0.5}])
    out = _step(obj, PairNet())
    assert list(out) == ["loss_ver", "acc_ver", "loss_unif", "loss_dummy", "loss_id", "acc",
                         "loss"]
    expected = out["loss_id"] + out["loss_ver"] + out["loss_unif"] + 0.5 * out["loss_dummy"]
    assert torch.equal(out["loss"], expected)
    with torch.no_grad():
        val = obj.validation_losses(PairNet().eval(), _cache(), CPU, seed=1)
    assert list(val) == ["val_ver", "val_unif", "val_dummy", "val_loss"]
    assert val["val_loss"] == pytest.approx(val["val_ver"] + val["val_unif"]
                                            + 0.5 * val["val_dummy"])


def test_extra_term_on_the_triplet_objective(dummy_registered):
    obj = TripletObjective(_cache(), _aug(), batch_size=4,
                           extra_terms=[{"term": "dummy", "weight": 0.25, "name": "energy"}])
    out = _step(obj, PairNet())
    assert list(out) == ["loss_triplet", "loss_energy", "loss"]
    assert torch.equal(out["loss"], out["loss_triplet"] + 0.25 * out["loss_energy"])


def test_a_term_needing_labels_is_left_out_of_validation(dummy_registered):
    def labelled(out, ctx):
        if ctx.pids is None:
            return None   # held-out identities: cannot be scored
        return out.feat.float().pow(2).mean()

    obj = SiameseObjective(_cache(), _aug(), num_identities=3, val_triplets=8,
                           extra_terms=[Term("labelled", 1.0, labelled)])
    assert "loss_labelled" in _step(obj, PairNet())
    with torch.no_grad():
        val = obj.validation_losses(PairNet().eval(), _cache(), CPU, seed=1)
    assert list(val) == ["val_ver", "val_unif", "val_loss"]


def test_per_term_loss_curves_reach_the_history(dummy_registered):
    obj = IdentityObjective(_cache(), _aug(), batch_size=6,
                            extra_terms=[{"term": "dummy", "weight": 0.5}])
    hist = fit(PairNet(), obj, TrainConfig(epochs=1), progress=False).history
    assert {"loss", "loss_id", "acc", "loss_dummy"} <= set(hist[0])


# --- specs and the registry ------------------------------------------------------------------

def test_term_specs_are_checked(dummy_registered):
    with pytest.raises(ValueError, match=r"unknown term 'unfi'.*did you mean 'unif'"):
        build_term({"term": "unfi", "weight": 1.0})
    with pytest.raises(ValueError, match=r"term 'dummy': parameters \['scael'\] do not fit"):
        build_term({"term": "dummy", "weight": 1.0, "scael": 2.0})
    with pytest.raises(ValueError, match="a dict with 'term' and 'weight'"):
        build_term({"term": "dummy"})
    with pytest.raises(ValueError, match=r"takes a list of terms, got one"):
        IdentityObjective(_cache(), extra_terms={"term": "dummy", "weight": 1.0})
    with pytest.raises(ValueError, match=r"names \['unif'\] repeat or clash"):
        SiameseObjective(_cache(), extra_terms=[{"term": "unif", "weight": 1.0}])
    with pytest.raises(ValueError, match=r"names \['id'\] repeat or clash"):
        IdentityObjective(_cache(), extra_terms=[{"term": "dummy", "weight": 1.0, "name": "id"}])
    assert build_term({"term": "dummy", "weight": 1, "name": "e2", "scale": 3.0}) == Term(
        "e2", 1.0, feat_energy, {"scale": 3.0})


def test_register_term_refuses_a_duplicate_name(dummy_registered):
    with pytest.raises(ValueError, match="term 'unif' is already registered"):
        register_term("unif", feat_energy)
    with pytest.raises(ValueError, match="term 'dummy' is already registered"):
        register_term("dummy", feat_energy)


def test_triplet_objective_with_p_identities_draws_distinct_anchor_identities():
    cache = _cache(n_ids=6, per_id=4)
    pids = cache.pids.numpy()
    batches = TripletObjective(cache, num_identities=3, triplets_per_epoch=12).epoch_batches(
        np.random.default_rng(0))
    assert len(batches) == 4 and all(b.shape == (3, 3) for b in batches)
    for b in batches:
        assert len(set(pids[b[:, 0]])) == 3                    # P distinct anchor identities
        assert (pids[b[:, 0]] == pids[b[:, 1]]).all() and (pids[b[:, 0]] != pids[b[:, 2]]).all()
    # uniform anchors (no num_identities) may repeat an identity within a batch
    uniform = TripletObjective(cache, batch_size=6).epoch_batches(np.random.default_rng(0))
    assert any(len(set(pids[b[:, 0]])) < len(b) for b in uniform)


# --- label smoothing in the identity objective (li2019 Eq. 9) --------------------------------

def _confident_model():
    """PairNet whose classifier gives spread logits (its default start, std 0.001, gives nearly
    uniform predictions, where both smoothing forms are close to log C)."""
    torch.manual_seed(0)
    model = PairNet(num_classes=6, score=False)
    nn.init.normal_(model.head.classifier.weight, std=3.0)
    return model


def _id_objective(**kw):
    return IdentityObjective(_cache(), augment=_aug(), sampler="pk", num_identities=3,
                             num_instances=2, **kw)


def _logits_and_pids(obj, model):
    """The logits and labels of `_step`'s batch, computed again."""
    batch = obj.epoch_batches(np.random.default_rng(0))[0]
    images, pids = objectives._batch(obj.cache, batch, obj.augment,
                                     torch.Generator().manual_seed(0), CPU)
    return model(images).logits.float(), pids


def test_identity_objective_label_smoothing_form_default_keeps_the_old_loss():
    from reidnb import losses

    assert IdentityObjective.__dataclass_fields__["label_smoothing_form"].default == "target"
    default = _step(_id_objective(label_smoothing=0.1), _confident_model())
    target = _step(_id_objective(label_smoothing=0.1, label_smoothing_form="target"),
                   _confident_model())
    assert torch.equal(default["loss_id"], target["loss_id"])
    # the default is the cross entropy with smoothed targets the objective always computed
    logits, pids = _logits_and_pids(_id_objective(), _confident_model())
    assert default["loss_id"].item() == pytest.approx(
        losses.cross_entropy(logits, pids, 0.1).item(), rel=1e-6)


def test_identity_objective_printed_label_smoothing_gives_another_loss():
    from reidnb import losses

    target = _step(_id_objective(label_smoothing=0.1), _confident_model())
    printed = _step(_id_objective(label_smoothing=0.1, label_smoothing_form="printed"),
                    _confident_model())
    assert printed["loss"].requires_grad
    assert abs(printed["loss_id"].item() - target["loss_id"].item()) > 0.05
    # it is losses.label_smoothing_ce(form="printed") of the same logits
    logits, pids = _logits_and_pids(_id_objective(), _confident_model())
    assert printed["loss_id"].item() == pytest.approx(
        losses.label_smoothing_ce(logits, pids, 0.1, "printed").item(), rel=1e-6)
    # both forms are plain cross entropy at eps = 0
    plain_t = _step(_id_objective(), _confident_model())
    plain_p = _step(_id_objective(label_smoothing_form="printed"), _confident_model())
    assert plain_p["loss_id"].item() == pytest.approx(plain_t["loss_id"].item(), rel=1e-5)


def test_identity_objective_refuses_an_unknown_label_smoothing_form():
    with pytest.raises(ValueError, match=r"label_smoothing_form='eq9'.*'target', 'printed'"):
        IdentityObjective(_cache(), label_smoothing_form="eq9")
