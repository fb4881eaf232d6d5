"""zheng2019's CASN (reidnb/models/zheng2019.py) and its two loss terms
(reidnb/train/objectives.py "casn_ia", "casn_sa"): the IDE and PCB heads' shapes, the in-loss
Grad-CAM against the hook-based reference and the pooled closed form, the pair head's gradient
(Eq. 4) in closed form, gradchecks of L_ia (Eq. 2) and of Eq. 5's consistency, the profile's
crop, the soft mask, the terms inside SiameseObjective and PCB's summed stripe loss."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_model import random_cache
from torch import nn

from reidnb import models
from reidnb.cam import feature_score_fn, grad_cam
from reidnb.data.transforms import BatchAugment
from reidnb.models import build_model
from reidnb.models.heads import ReIDOutput
from reidnb.models.zheng2019 import (CASN, aligned_profile, consistency, grad_cam_from,
                                     identification_attention, pair_indicator,
                                     pooled_siamese_maps, siamese_maps, soft_mask,
                                     vertical_profile)
from reidnb.train.objectives import (BatchContext, MissingOutputError, SiameseObjective,
                                     ia_term, sa_term)

CPU = torch.device("cpu")
SIZES = {"ide": (64, 32), "pcb": (96, 32)}    # conv5 4x2 (IDE) and 6x2 (PCB, one row a stripe)


def _small(num_classes=6, **kw):
    torch.manual_seed(0)
    return build_model("zheng2019", num_classes, **{"backbone": "resnet18",
                                                    "pretrained": False, **kw})


def _images(n, head="ide", seed=1):
    return torch.randn(n, 3, *SIZES[head], generator=torch.Generator().manual_seed(seed))


def _close(a, b, tol=1e-5):
    """|a - b| <= tol x the scale of b (maps of an untrained net are tiny in absolute terms)."""
    a, b = a.detach(), b.detach()
    scale = float(b.abs().max())
    assert scale > 0, "degenerate reference (all zero)"
    return float((a - b).abs().max()) <= tol * scale


# --- shapes and options --------------------------------------------------------------------------

def test_registered_as_zheng2019():
    assert isinstance(_small(), CASN) and "CASN" in models.__all__
    assert "zheng2019" in models.list_models()


def test_ide_head_shapes_at_128x64():
    model = _small().eval()
    with torch.no_grad():
        out = model(torch.randn(3, 3, 128, 64), pairs=(torch.tensor([0, 1]), torch.tensor([2, 0])))
    assert out.logits.shape == (3, 6) and out.feat.shape == (3, 512) and out.feat_bn is out.feat
    assert out.extras["fmap"].shape == (3, 512, 8, 4)       # last stride 1: 128/16 x 64/16
    assert torch.allclose(out.feat, out.extras["fmap"].mean(dim=(2, 3)))
    assert out.extras["pair_diff"].shape == (2, 512) and out.extras["pair_logits"].shape == (2, 2)
    assert "part_logits" not in out.extras
    assert len(model.classifier) == 5                        # Linear, BN, ReLU, Dropout, Linear


def test_pcb_head_shapes_and_stripes_by_hand_at_192x64():
    model = _small(head="pcb", part_dim=16).eval()
    x = torch.randn(2, 3, 192, 64)
    with torch.no_grad():
        out = model(x, pairs=(torch.tensor([0]), torch.tensor([1])))
        fmap = out.extras["fmap"]
        assert fmap.shape == (2, 512, 12, 4)                  # 6 stripes of 2 rows
        for s in range(6):
            pooled = fmap[:, :, 2 * s:2 * s + 2].mean(dim=(2, 3))
            h = model.reduce(pooled[..., None, None])[:, :, 0, 0]
            assert torch.allclose(out.feat[:, 16 * s:16 * (s + 1)], h, atol=1e-5)
            assert torch.allclose(out.extras["part_logits"][:, s],
                                  model.part_classifiers[s](h), atol=1e-5)
    assert out.feat.shape == (2, 96) and out.extras["part_logits"].shape == (2, 6, 6)
    assert torch.allclose(out.logits, out.extras["part_logits"].sum(dim=1), atol=1e-6)
    assert out.extras["pair_diff"].shape == (1, 96)


def test_pcb_refuses_a_conv5_height_not_divisible_by_parts():
    model = _small(head="pcb").eval()
    with pytest.raises(ValueError, match="conv5 height 8 is not divisible by parts=6"):
        model(torch.randn(1, 3, 128, 64))                      # 8 rows


@pytest.mark.parametrize("kw,match", [
    ({"head": "rpp"}, r"CASN: head='rpp'; choose from \('ide', 'pcb'\)"),
    ({"diff": "l2"}, r"CASN: diff='l2'; choose from \('signed', 'abs', 'square'\)"),
    ({"head": "pcb", "parts": 0}, r"CASN: parts=0"),
])
def test_a_wrong_option_names_the_valid_choices(kw, match):
    with pytest.raises(ValueError, match=match):
        _small(**kw)


def test_functions_refuse_wrong_choices():
    model = _small().eval()
    x = _images(2)
    out = model(x)
    pids = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"score='max'; choose from \('prob', 'logit'\)"):
        identification_attention(model, out, x, pids, score="max")
    with pytest.raises(ValueError, match=r"cam_grad='none'; choose from \('full', 'detached'\)"):
        identification_attention(model, out, x, pids, cam_grad="none")
    with pytest.raises(ValueError, match=r"sign='neg'; choose from \('shared', 'own'\)"):
        siamese_maps(out, torch.tensor([0]), torch.tensor([1]), torch.ones(1, 512), sign="neg")
    with pytest.raises(ValueError, match=r"norm='l1'; choose from \('plain', 'squared'\)"):
        consistency(torch.zeros(1, 3), torch.zeros(1, 3), norm="l1")
    with pytest.raises(ValueError, match="i1 repeats batch rows"):
        siamese_maps(out, torch.tensor([0, 0]), torch.tensor([1, 0]), torch.ones(2, 512))
    with torch.no_grad():
        plain = model(x)
    with pytest.raises(ValueError, match="no graph"):
        grad_cam_from(plain.logits[:, 0], plain.extras["fmap"])


# --- Grad-CAM in the loss = the hook-based reference ------------------------------------------
# eval mode: in train mode BatchNorm after conv5 (the IDE classifier's, PCB's) takes batch
# statistics, so an image's score depends on the other images and the summed-score gradient
# differs between the batch the output saw and a single reference pass only by design; eval
# mode makes each image's score its own, which is what both computations assume.

@pytest.mark.parametrize("head", ["ide", "pcb"])
def test_grad_cam_from_equals_the_hooked_reference(head):
    model = _small(head=head).eval()
    x, pids = _images(3, head), torch.tensor([0, 3, 5])
    out = model(x)
    maps = grad_cam_from(out.logits.gather(1, pids[:, None]).squeeze(1), out.extras["fmap"])
    ref = grad_cam(model, x, "backbone", target=pids)
    assert maps.shape == ref.shape == (3, *out.extras["fmap"].shape[-2:])
    assert _close(maps, ref)
    assert maps.requires_grad                                  # create_graph: in the loss


@pytest.mark.parametrize("head", ["ide", "pcb"])
@pytest.mark.parametrize("sign", ["shared", "own"])
def test_siamese_maps_equal_the_hooked_reference(head, sign):
    model = _small(head=head).eval()
    x = _images(4, head)
    out = model(x)
    i1, i2 = torch.tensor([0, 1]), torch.tensor([2, 3])
    g = torch.Generator().manual_seed(2)
    alpha = (torch.rand(2, model.feat_dim, generator=g) > 0.5).float()
    alpha2 = (torch.rand(2, model.feat_dim, generator=g) > 0.5).float()
    m1, m2 = siamese_maps(out, i1, i2, alpha, sign=sign, alpha2=alpha2)
    weights = torch.zeros(4, model.feat_dim)
    weights[i1] = alpha
    weights[i2] = alpha if sign == "shared" else alpha2
    ref = grad_cam(model, x, "backbone", use_logits=False, score_fn=feature_score_fn(weights))
    assert _close(m1, ref[i1]) and _close(m2, ref[i2])


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_pooled_closed_form_equals_siamese_maps_for_the_ide_head(mode):
    # f = GAP(A) has no batch statistics between A and f, so the closed form holds in train
    # mode too.
    model = _small()
    model.train(mode == "train")
    x = _images(4)
    out = model(x)
    i1, i2 = torch.tensor([0, 3]), torch.tensor([2, 1])
    alpha = (torch.rand(2, 512, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    m1, m2 = siamese_maps(out, i1, i2, alpha)
    fmap = out.extras["fmap"]
    c1, c2 = pooled_siamese_maps(fmap[i1], fmap[i2], alpha)
    assert _close(m1, c1) and _close(m2, c2)
    own1, own2 = siamese_maps(out, i1, i2, alpha, sign="own")           # alpha2 = 1 - alpha
    p1, p2 = pooled_siamese_maps(fmap[i1], fmap[i2], alpha, 1 - alpha)
    assert _close(own1, p1) and _close(own2, p2) and not _close(own2, c2)


@pytest.mark.parametrize("diff", ["signed", "abs", "square"])
def test_same_gradient_closed_form_equals_autograd(diff):
    model = _small(diff=diff).eval()
    x = _images(4)
    i1, i2 = torch.tensor([0, 1, 2]), torch.tensor([3, 2, 0])
    out = model(x, pairs=(i1, i2))
    z, d = out.extras["pair_logits"], out.extras["pair_diff"]
    (auto,) = torch.autograd.grad(z[:, 1].sum(), d)
    closed = model.same_gradient(out.feat[i1], out.feat[i2])
    assert closed.shape == (3, 512) and _close(closed, auto)
    assert torch.allclose(model.pair_logits(out.feat[i1], out.feat[i2]), z)
    swapped = model.pair_logits(out.feat[i2], out.feat[i1])
    assert torch.allclose(swapped, z, atol=1e-6) == (diff != "signed")   # order matters


def test_pair_indicator_is_a_detached_zero_one_vector():
    g = torch.tensor([[0.3, -0.1, 0.0, 2.0]], requires_grad=True)
    a = pair_indicator(g * 1)
    assert torch.equal(a, torch.tensor([[1.0, 0.0, 0.0, 1.0]])) and not a.requires_grad


# --- gradchecks (float64, a tiny network) --------------------------------------------------------

class TinyTrunk(nn.Module):
    """conv 3->3 (3x3, stride 2) + tanh = A; f = GAP(A); logits = tanh(f W1^T) W2^T, so the
    Grad-CAM weights depend on A and the double backward is not trivial."""

    def __init__(self, conv, fc1, fc2):
        super().__init__()
        self.conv, self.fc1, self.fc2 = conv, fc1, fc2

    def forward(self, x, pairs=None):
        fmap = torch.tanh(F.conv2d(x, self.conv, stride=2, padding=1))
        f = fmap.mean(dim=(2, 3))
        logits = torch.tanh(f @ self.fc1.T) @ self.fc2.T
        return ReIDOutput(logits, f, f, {"fmap": fmap})


def _tiny_inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(2, 3, 8, 4), (3, 3, 3, 3), (5, 3), (4, 5)]
    return [torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_() for s in shapes]


@pytest.mark.parametrize("score,cam_grad", [("prob", "full"), ("logit", "full"),
                                            ("prob", "detached")])
def test_gradcheck_identification_attention(score, cam_grad):
    # "detached" stops the gradient at the Grad-CAM weights on purpose, so its gradient is not
    # the loss's derivative: gradcheck must fail there, and pass for "full".
    pids = torch.tensor([1, 3])

    def loss(images, conv, fc1, fc2):
        model = TinyTrunk(conv, fc1, fc2)
        value, parts = identification_attention(model, model(images), images, pids, score=score,
                                                cam_grad=cam_grad)
        assert parts["maps"].shape == (2, 4, 2) and parts["mask"].shape == (2, 1, 8, 4)
        return value

    inputs = _tiny_inputs()
    tiny = TinyTrunk(*inputs[1:])
    _, parts = identification_attention(tiny, tiny(inputs[0]), inputs[0], pids)
    assert (parts["maps"].flatten(1).amax(1) > 0).all()       # a map, not the all-zero case
    passed = torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-5,
                                      raise_exception=False)
    assert passed == (cam_grad == "full")


@pytest.mark.parametrize("norm,crop", [("plain", True), ("squared", True), ("plain", False)])
def test_gradcheck_eq5_consistency_through_the_siamese_maps(norm, crop):
    g = torch.Generator().manual_seed(4)
    fmap = torch.rand(4, 3, 6, 2, generator=g, dtype=torch.float64).requires_grad_()
    proj = torch.randn(5, 3, generator=g, dtype=torch.float64).requires_grad_()
    alpha = torch.tensor([[1.0, 0, 1, 1, 0], [0, 1, 1, 0, 1]], dtype=torch.float64)
    i1, i2 = torch.tensor([0, 1]), torch.tensor([2, 3])

    def eq5(fmap, proj):
        f = torch.tanh(fmap.mean(dim=(2, 3)) @ proj.T)
        m1, m2 = siamese_maps(ReIDOutput(None, f, f, {"fmap": fmap}), i1, i2, alpha)
        p1, s1, e1 = aligned_profile(vertical_profile(m1), t=0.3, crop=crop)
        p2, s2, e2 = aligned_profile(vertical_profile(m2), t=0.3, crop=crop)
        return consistency(p1, p2, norm).mean()

    assert torch.autograd.gradcheck(eq5, (fmap, proj), eps=1e-6, atol=1e-5)


# --- the profile and its crop --------------------------------------------------------------------

def _bump(shift, h=16):
    p = torch.zeros(1, h, dtype=torch.float64)
    p[0, 3 + shift:9 + shift] = torch.tensor([0.2, 0.5, 1.0, 0.8, 0.4, 0.1], dtype=p.dtype)
    return p


def test_a_shifted_profile_aligns_to_the_same_result_with_the_crop_only():
    base, shifted = _bump(0), _bump(5)
    a, s, e = aligned_profile(base, t=0.3)
    b, s2, e2 = aligned_profile(shifted, t=0.3)
    assert (s.item(), e.item(), s2.item(), e2.item()) == (4, 7, 9, 12)   # 0.5 ... 0.4
    assert torch.allclose(a, b, atol=1e-12) and a.shape == (1, 16)
    assert a[0, 0].item() == pytest.approx(0.5) and a[0, -1].item() == pytest.approx(0.4)
    c, sc, ec = aligned_profile(base, t=0.3, crop=False)
    d, _, _ = aligned_profile(shifted, t=0.3, crop=False)
    assert (sc.item(), ec.item()) == (0, 15) and torch.allclose(c, base, atol=1e-7)
    assert not torch.allclose(c, d)
    assert float(consistency(a, b).squeeze()) < 1e-3 < float(consistency(c, d).squeeze())


def test_the_crop_is_a_linear_resize_of_the_kept_segment():
    p = torch.rand(5, 12, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    for size in (12, 7, 20):
        out, start, end = aligned_profile(p, t=0.6, size=size)
        assert out.shape == (5, size)
        for r in range(5):
            q = p[r] / p[r].max()
            above = torch.nonzero(q > 0.6).flatten()
            assert (start[r].item(), end[r].item()) == (above[0].item(), above[-1].item())
            seg = q[start[r]:end[r] + 1][None, None]
            ref = F.interpolate(seg, size=size, mode="linear", align_corners=True)[0, 0]
            assert torch.allclose(out[r], ref, atol=1e-12)


def test_nothing_above_t_keeps_the_whole_profile():
    p = torch.rand(3, 8, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    out, start, end = aligned_profile(p, t=1.5)
    assert start.tolist() == [0, 0, 0] and end.tolist() == [7, 7, 7]
    assert torch.allclose(out, p / p.amax(dim=1, keepdim=True), atol=1e-7)
    zero, s0, e0 = aligned_profile(torch.zeros(1, 8))
    assert (s0.item(), e0.item()) == (0, 7) and torch.equal(zero, torch.zeros(1, 8))


def test_crop_indices_carry_no_gradient_but_the_values_do():
    p = _bump(2).requires_grad_()
    out, start, end = aligned_profile(p, t=0.3, size=9)
    assert start.dtype == torch.long and not start.requires_grad and not end.requires_grad
    out.pow(2).sum().backward()
    inside = torch.zeros(16, dtype=torch.bool)
    inside[start.item():end.item() + 1] = True
    assert torch.equal(p.grad[0, ~inside], torch.zeros(int((~inside).sum()), dtype=p.dtype))
    assert (p.grad[0, inside] != 0).all()


def test_vertical_profile_is_the_row_max_and_consistency_the_l2_distance():
    m = torch.rand(2, 5, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(vertical_profile(m), m.max(dim=2).values)
    a, b = torch.tensor([[1.0, 2.0, 2.0]]), torch.tensor([[0.0, 0.0, 0.0]])
    assert consistency(a, b, "squared").item() == pytest.approx(9.0)
    assert consistency(a, b, eps=0.0).item() == pytest.approx(3.0)
    same = a.clone().requires_grad_()
    consistency(same, a).sum().backward()                       # eps under the root
    assert torch.isfinite(same.grad).all()


# --- the soft mask (Sec. 3.1.2) -------------------------------------------------------------------

def test_soft_mask_is_the_sigmoid_of_the_max_normalised_map():
    m = F.relu(torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(8)))
    mask = soft_mask(m, (4, 2), alpha=10.0, beta=0.5)
    top = m.flatten(1).amax(1)[:, None, None]
    assert mask.shape == (3, 1, 4, 2)
    assert torch.allclose(mask[:, 0], torch.sigmoid(10.0 * (m / top - 0.5)), atol=1e-6)
    assert torch.allclose(soft_mask(3.0 * m, (4, 2)), mask, atol=1e-6)   # scale-free
    big = soft_mask(m, (64, 32))
    assert big.shape == (3, 1, 64, 32) and (big > 0).all() and (big < 1).all()
    assert torch.allclose(big.amax(dim=(1, 2, 3)), torch.sigmoid(torch.tensor(5.0)), atol=0.02)


# --- the terms and the objective ------------------------------------------------------------------

def _objective(cache, **kw):
    return SiameseObjective(cache, BatchAugment(erasing_p=0.0, pad=0), num_identities=3,
                            **{"uniformity": False, "ver_weight": 0.05, **kw})


CASN_TERMS = [{"term": "casn_ia", "weight": 0.5, "name": "ia"},
              {"term": "casn_sa", "weight": 0.01, "name": "consist"}]


def test_terms_without_labels_or_without_an_apn_batch():
    model = _small().train()
    x = _images(6)
    pairs = (torch.tensor([0, 1, 0, 1]), torch.tensor([2, 3, 4, 5]))
    out = model(x, pairs=pairs)
    assert ia_term(out, BatchContext(model, x, None, apn=True)) is None
    with pytest.raises(ValueError, match="casn_sa term needs anchor / positive / negative"):
        sa_term(out, BatchContext(model, x, torch.arange(6), apn=False))
    with pytest.raises(ValueError, match=r"casn_sa term: sign='both'; choose from"):
        sa_term(out, BatchContext(model, x, torch.arange(6), apn=True), sign="both")
    with torch.no_grad():                                       # validation: no graph
        plain = model(x, pairs=pairs)
    assert sa_term(plain, BatchContext(model, x, None, apn=True)) is None
    with pytest.raises(ValueError, match="needs the forward's graph"):
        sa_term(plain, BatchContext(model, x, torch.arange(6), apn=True))
    with pytest.raises(MissingOutputError, match=r"extras\['pair_diff'\].*CASN"):
        sa_term(model(x), BatchContext(model, x, torch.arange(6), apn=True))


@pytest.mark.parametrize("sign,crop,norm", [("shared", True, "plain"), ("own", False, "squared")])
def test_sa_term_is_eq5_from_the_closed_forms(sign, crop, norm):
    model = _small().eval()
    x = _images(6)
    out = model(x, pairs=SiameseObjective._pairs(2, CPU))
    value = sa_term(out, BatchContext(model, x, torch.arange(6), apn=True), t=0.3, norm=norm,
                    crop=crop, sign=sign)
    a, p = torch.tensor([0, 1]), torch.tensor([2, 3])           # (anchor, positive) pairs
    g = model.same_gradient(out.feat[a], out.feat[p])
    alpha = (g > 0).float()
    fmap = out.extras["fmap"]
    m1, m2 = pooled_siamese_maps(fmap[a], fmap[p], alpha,
                                 alpha if sign == "shared" else (g < 0).float())
    p1, _, _ = aligned_profile(vertical_profile(m1), 0.3, crop)
    p2, _, _ = aligned_profile(vertical_profile(m2), 0.3, crop)
    assert torch.allclose(value, consistency(p1, p2, norm).mean(), rtol=1e-4, atol=1e-6)
    assert value > 0


def test_casn_step_logs_every_term_and_reaches_the_trunk():
    cache = random_cache(6, 4, 64, 32, 0)
    model = _small().train()
    obj = _objective(cache, extra_terms=CASN_TERMS)
    batch = obj.epoch_batches(np.random.default_rng(0))[0]
    out = obj.step(model, batch, torch.Generator().manual_seed(0), CPU)
    assert set(out) == {"loss", "loss_id", "loss_ver", "loss_ia", "loss_consist", "acc",
                        "acc_ver"}
    assert all(torch.isfinite(v) for v in out.values())
    assert 0 < out["loss_ia"] < 1                                # a probability, averaged
    total = out["loss_id"] + 0.05 * out["loss_ver"] + 0.5 * out["loss_ia"] \
        + 0.01 * out["loss_consist"]
    assert torch.allclose(out["loss"], total)
    trunk = [p for p in model.backbone.layer1.parameters()]
    for name in ("loss_ia", "loss_consist"):
        grads = torch.autograd.grad(out[name], trunk, retain_graph=True, allow_unused=True)
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads), name
    out["loss"].backward()
    assert model.backbone.stem[0].weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.bce.parameters())
    with torch.no_grad():                                        # the terms need labels/graph
        val = obj.validation_losses(model.eval(), cache, CPU, seed=1)
    assert set(val) == {"val_ver", "val_loss"}


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_pcb_identity_loss_is_the_sum_of_the_stripes_cross_entropies(label_smoothing):
    cache = random_cache(6, 4, *SIZES["pcb"], 0)
    obj = _objective(cache, label_smoothing=label_smoothing)
    model = _small(head="pcb").train()
    x, pids = _images(6, "pcb"), torch.tensor([0, 1, 0, 1, 2, 3])
    out = model(x, pairs=obj._pairs(2, CPU))
    result = obj._losses(out, BatchContext(model, x, pids, apn=True))
    parts = out.extras["part_logits"]
    manual = sum(F.cross_entropy(parts[:, s], pids, label_smoothing=label_smoothing)
                 for s in range(6))
    assert torch.allclose(result["loss_id"], manual, atol=1e-6)
    assert not torch.allclose(result["loss_id"], F.cross_entropy(out.logits, pids))
    assert result["acc"] == (out.logits.argmax(1) == pids).float().mean()
    ide = _small().train()                                       # no part_logits: plain CE
    out = ide(_images(6), pairs=obj._pairs(2, CPU))
    result = obj._losses(out, BatchContext(ide, x, pids, apn=True))
    assert torch.equal(result["loss_id"], F.cross_entropy(out.logits.float(), pids,
                                                          label_smoothing=label_smoothing))


def test_detached_cam_weights_change_the_gradient_not_the_map():
    # train mode: the IDE classifier's BatchNorm takes batch statistics, so the Grad-CAM
    # weights depend on conv5 and through it on the trunk.
    model = _small().train()
    x, pids = _images(4), torch.tensor([0, 1, 2, 3])
    trunk = list(model.backbone.layer4.parameters())
    results = {}
    for mode in ("full", "detached"):
        loss, parts = identification_attention(model, model(x), x, pids, cam_grad=mode)
        results[mode] = (parts, torch.autograd.grad(loss, trunk))
    (full, g_full), (det, g_det) = results["full"], results["detached"]
    assert torch.allclose(full["maps"], det["maps"], atol=1e-7)
    assert torch.allclose(full["mask"], det["mask"], atol=1e-7)
    assert all(g.abs().sum() > 0 for g in g_det)                # the map still carries A's
    assert not all(torch.allclose(a, b, rtol=1e-3, atol=1e-9) for a, b in zip(g_full, g_det))
