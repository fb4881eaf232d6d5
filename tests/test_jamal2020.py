"""jamal2020's mutual-attention block and model (reidnb/models/jamal2020.py): Eqs. 1-8 by hand,
the shapes of Sec. 3 at the paper's and the CPU profiles' sizes, the symmetry of the pair, MU = 0
giving the plain trunk, the parameter count of each reading, the self-paired control, the test
modes, the options' errors, and the objective of Eq. 13."""

import numpy as np
import pytest
import torch
from tiny_model import random_cache

from reidnb.complexity import count_params
from reidnb.data.transforms import BatchAugment
from reidnb.models import build_attention, build_model
from reidnb.models.jamal2020 import MutualAttention, PairOutput, pairwise_rerank
from reidnb.train.objectives import MissingOutputError, SiameseObjective

CPU = torch.device("cpu")


def _small(num_classes=6, **kw):
    torch.manual_seed(0)
    return build_model("jamal2020", num_classes, **{"backbone": "resnet18",
                                                    "pretrained": False, **kw})


def _conv(conv, x):
    """A 1x1 convolution written out: sum over input channels of W x + b."""
    w = conv.weight[:, :, 0, 0]
    return torch.einsum("oc,bchw->bohw", w, x) + conv.bias[None, :, None, None]


# --- the block (Eqs. 1-8) ---------------------------------------------------------------------

@pytest.mark.parametrize("sa_channels", ["C", 1])
@pytest.mark.parametrize("att_act", ["sigmoid", "none"])
def test_block_is_eqs_1_to_8_by_hand(sa_channels, att_act):
    torch.manual_seed(0)
    block = MutualAttention(4, sa_channels=sa_channels, att_act=att_act)
    f1, f2 = torch.randn(2, 4, 3, 2), torch.randn(2, 4, 3, 2)
    act = torch.sigmoid if att_act == "sigmoid" else (lambda t: t)

    def sa(f):
        spa = f.sum(dim=1, keepdim=True) / 4                          # Eq. 1
        q = f.sum(dim=(2, 3), keepdim=True) / 6                        # Eq. 2
        ca = act(_conv(block.ca, q))                                   # Eq. 3
        return act(_conv(block.sa, spa * ca))                          # Eq. 4

    mu = act(_conv(block.mu, sa(f1) * sa(f2)))                         # Eqs. 5-6
    g1, g2 = block.pair(f1, f2)
    width = 4 if sa_channels == "C" else 1
    assert block.maps["mu1"].shape == (2, width, 3, 2)
    assert torch.allclose(g1, f1 * mu + f1, atol=1e-6)                 # Eq. 7
    assert torch.allclose(g2, f2 * mu + f2, atol=1e-6)                 # Eq. 8
    assert torch.allclose(block.maps["ma1"], sa(f1) * sa(f2), atol=1e-6)
    if att_act == "sigmoid":                                           # F between f and 2f
        ratio = g1 / f1
        assert ((ratio > 1) & (ratio < 2)).all()


def test_block_forward_pairs_the_image_with_itself():
    torch.manual_seed(0)
    block = build_attention("jamal2020_mutual", 8)
    x = torch.randn(3, 8, 4, 2)
    same, _ = block.pair(x, x.clone(), partner="mutual")
    assert torch.allclose(block(x), same)
    assert set(block.maps) == {"spa", "ca", "sa", "ma", "mu"}
    assert torch.allclose(block.maps["ma"], block.maps["sa"] ** 2)


@pytest.mark.parametrize("parts,keys,sa_in", [("spatial", {"spa"}, 1), ("channel", {"ca"}, 8),
                                              ("both", {"spa", "ca"}, 8)])
def test_parts_keep_one_or_both_halves_of_the_self_attention_map(parts, keys, sa_in):
    torch.manual_seed(0)
    block = MutualAttention(8, parts=parts)
    x = torch.randn(2, 8, 4, 2)
    maps = block.self_attention(x)
    assert set(maps) == keys | {"sa"} and block.sa.in_channels == sa_in
    assert (block.ca is None) == (parts == "spatial")
    if parts == "channel":   # SA built from CA alone is constant over the map
        assert maps["sa"].shape == (2, 8, 1, 1)
    else:
        assert maps["sa"].shape == (2, 8, 4, 2)


# --- the model: shapes (Sec. 3.1, 5.1) --------------------------------------------------------

def test_resnet50_shapes_at_the_papers_256x188():
    torch.manual_seed(0)
    model = build_model("jamal2020", 751, backbone="resnet50", pretrained=False).eval()
    x = torch.randn(2, 3, 256, 188)
    with torch.no_grad():
        assert model.shared_features(x).shape == (2, 1024, 16, 12)     # layer3
        out = model(x, pairs=(torch.tensor([0]), torch.tensor([1])))
    assert out.logits.shape == (2, 751) and out.feat.shape == (2, 512)
    assert out.feat_bn is out.feat
    assert out.extras["fmap"].shape == (2, 2048, 8, 6)                 # layer4
    assert out.extras["pair_logits"].shape == (1, 2)
    assert out.extras["layer3_sa1"].shape == (1, 1024, 16, 12)
    assert out.extras["layer3_spa1"].shape == (1, 1, 16, 12)
    assert out.extras["layer3_ca1"].shape == (1, 1024, 1, 1)
    assert out.extras["layer4_mu1"].shape == (1, 2048, 8, 6)


@pytest.mark.parametrize("size,layer3,layer4", [((256, 128), (16, 8), (8, 4)),
                                                ((128, 64), (8, 4), (4, 2))])
def test_resnet18_shapes_at_256x128_and_128x64(size, layer3, layer4):
    model = _small().eval()
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        assert model.shared_features(x).shape == (2, 256, *layer3)
        pair = model.forward_pair(x[:1], x[1:])
        out = model(x)
    assert isinstance(pair, PairOutput) and pair.logits.shape == (1, 2)
    assert pair.feat1.shape == pair.feat2.shape == (1, 512)
    assert pair.maps["layer3_mu1"].shape == (1, 256, *layer3)
    assert pair.maps["layer4_mu1"].shape == (1, 512, *layer4)
    assert out.extras["fmap"].shape == (2, 512, *layer4)


# --- symmetry, MU = 0, the control --------------------------------------------------------------

@pytest.mark.parametrize("kw", [{}, {"fd": "abs"}, {"partner": "self"}, {"sa_channels": 1}])
def test_swapping_the_pair_swaps_the_outputs(kw):
    model = _small(**kw).eval()
    x1, x2 = torch.randn(3, 3, 64, 32), torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        a, b = model.forward_pair(x1, x2), model.forward_pair(x2, x1)
    assert torch.allclose(a.feat1, b.feat2, atol=1e-5)
    assert torch.allclose(a.feat2, b.feat1, atol=1e-5)
    assert torch.allclose(a.logits, b.logits, atol=1e-5)
    assert not torch.allclose(a.feat1, a.feat2)
    # through forward(x, pairs=...) as the objective calls it
    x = torch.cat([x1, x2])
    i, j = torch.arange(3), torch.arange(3) + 3
    with torch.no_grad():
        p, q = model(x, pairs=(i, j)), model(x, pairs=(j, i))
    assert torch.allclose(p.extras["pair_logits"], q.extras["pair_logits"], atol=1e-5)
    assert torch.allclose(p.extras["pair_logits"], a.logits, atol=1e-5)


@pytest.mark.parametrize("att_act", ["sigmoid", "none"])
def test_mu_zero_gives_the_plain_trunk(att_act):
    model = _small(att_act=att_act).eval()
    x1, x2 = torch.randn(2, 3, 64, 32), torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        before = model.forward_pair(x1, x2)
        model.zero_mutual_()
        pair = model.forward_pair(x1, x2)
        plain1, plain2 = model(x1).feat, model(x2).feat
    assert not torch.allclose(before.feat1, plain1, atol=1e-4)    # MU != 0 changes f
    assert torch.equal(pair.maps["layer3_mu1"], torch.zeros_like(pair.maps["layer3_mu1"]))
    assert torch.allclose(pair.feat1, plain1, atol=1e-5)
    assert torch.allclose(pair.feat2, plain2, atol=1e-5)


def test_self_paired_control_has_the_same_parameters_and_no_cross_image_information():
    full, control = _small(), _small(partner="self")
    assert count_params(full) == count_params(control)
    control.load_state_dict(full.state_dict())
    full.eval(), control.eval()
    x1, x2, x3 = (torch.randn(2, 3, 64, 32) for _ in range(3))
    with torch.no_grad():
        c12, c13 = control.forward_pair(x1, x2), control.forward_pair(x1, x3)
        f12, f13 = full.forward_pair(x1, x2), full.forward_pair(x1, x3)
        self_mode = control(x1).feat
    assert torch.allclose(c12.feat1, c13.feat1, atol=1e-5)      # the partner does not matter
    assert not torch.allclose(f12.feat1, f13.feat1, atol=1e-4)  # in the mutual model it does
    assert torch.equal(c12.maps["layer4_ma1"], c12.maps["layer4_sa1"] ** 2)
    control.test_mode = "self"
    with torch.no_grad():
        assert torch.allclose(control(x1).feat, c12.feat1, atol=1e-5)
    assert not torch.allclose(self_mode, c12.feat1, atol=1e-4)


def test_baseline_is_the_same_network_without_the_blocks():
    full, base = _small(), _small(stages=())
    assert len(base.attention) == 0 and base.stages == ()
    assert count_params(full) - count_params(base) == count_params(full.attention)
    base.load_state_dict({k: v for k, v in full.state_dict().items()
                          if not k.startswith("attention.")})
    full.eval(), base.eval()
    x = torch.randn(4, 3, 64, 32)
    pairs = (torch.tensor([0, 1]), torch.tensor([2, 3]))
    with torch.no_grad():
        a, b = full(x, pairs=pairs), base(x, pairs=pairs)
    assert torch.equal(a.feat, b.feat)              # the plain path is the same network
    assert torch.allclose(b.extras["pair_logits"], base.verify(b.feat[:2], b.feat[2:]))
    assert not torch.allclose(a.extras["pair_logits"], b.extras["pair_logits"])
    assert not [k for k in b.extras if k.startswith("layer")]


@pytest.mark.parametrize("stages", [("layer3",), ("layer4",), ("layer4", "layer3")])
def test_stages_place_the_blocks(stages):
    model = _small(stages=stages).eval()
    assert model.stages == tuple(s for s in ("layer3", "layer4") if s in stages)
    assert sorted(model.attention) == sorted(stages)
    with torch.no_grad():
        pair = model.forward_pair(torch.randn(1, 3, 64, 32), torch.randn(1, 3, 64, 32))
    assert {k.split("_")[0] for k in pair.maps} == set(stages)


# --- parameter counts (ResNet-50, each reading) ------------------------------------------------

def _conv_params(c_in, c_out):
    return c_in * c_out + c_out


@pytest.mark.parametrize("sa_channels,parts,expected", [
    ("C", "both", 15_737_856), (1, "both", 5_249_030),
    ("C", "spatial", 5_252_096), (1, "spatial", 8),
    ("C", "channel", 15_737_856), (1, "channel", 5_249_030)])
def test_block_parameters_per_reading_at_resnet50(sa_channels, parts, expected):
    total = 0
    for c in (1024, 2048):
        block = MutualAttention(c, sa_channels=sa_channels, parts=parts)
        w = c if sa_channels == "C" else 1
        by_hand = ((0 if parts == "spatial" else _conv_params(c, c))         # CA, Eq. 3
                   + _conv_params(1 if parts == "spatial" else c, w)         # SA, Eq. 4
                   + _conv_params(w, w))                                     # MU, Eq. 6
        assert count_params(block) == by_hand
        total += by_hand
    assert total == expected


def test_model_parameters_match_the_issues_range_over_a_23_5m_trunk():
    counts = {}
    for sa in ("C", 1):
        model = build_model("jamal2020", 751, backbone="resnet50", pretrained=False,
                            sa_channels=sa)
        counts[sa] = (count_params(model.backbone), count_params(model.attention),
                      count_params(model) - count_params(model.backbone)
                      - count_params(model.attention))
    heads = (_conv_params(2048, 512) + 2 * 512 + _conv_params(512, 751)      # ID: 512 block, FC
             + _conv_params(512, 512) + 2 * 512 + _conv_params(512, 2))      # verification
    assert counts["C"] == (23_508_032, 15_737_856, heads) and heads == 1_700_081
    assert counts[1] == (23_508_032, 5_249_030, heads)
    assert round(counts[1][1] / 1e6, 1) == 5.2 and round(counts["C"][1] / 1e6, 1) == 15.7


# --- test modes -------------------------------------------------------------------------------

def test_test_modes_plain_is_unattended_and_self_pairs_each_image():
    model = _small().eval()
    x = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        plain = model(x).feat
        by_hand = model.embed(model.backbone(x).mean(dim=(2, 3)))
        hooked = model.embed(model.backbone(x, hooks=dict(model.attention)).mean(dim=(2, 3)))
        model.test_mode = "self"
        self_mode = model(x)
        model.test_mode = "pairwise"
        pairwise = model(x).feat
    assert torch.allclose(plain, by_hand, atol=1e-6)
    assert torch.allclose(self_mode.feat, hooked, atol=1e-6)
    assert not torch.allclose(self_mode.feat, plain, atol=1e-4)
    assert torch.equal(pairwise, plain)    # "pairwise" ranks by the plain vectors first
    assert torch.allclose(self_mode.logits, model.classifier(self_mode.feat), atol=1e-6)


def test_pairwise_rerank_orders_the_top_k_by_the_verification_head():
    model = _small().eval()
    q, g = torch.randn(2, 3, 64, 32), torch.randn(5, 3, 64, 32)
    distmat = np.array([[0.5, 0.1, 0.3, 0.9, 0.7], [0.2, 0.8, 0.4, 0.6, 0.1]])
    new = pairwise_rerank(model, q, g, distmat, top_k=3, batch_size=4)
    for row in range(2):
        top = np.argsort(distmat[row])[:3]
        with torch.no_grad():
            p = torch.softmax(model.forward_pair(q[[row] * 3], g[top]).logits, 1)[:, 1]
        order = np.argsort(new[row])
        assert set(order[:3]) == set(top)                        # the same k, moved first
        assert list(order[:3]) == list(top[np.argsort(-p.numpy(), kind="stable")])
        rest = [i for i in np.argsort(distmat[row]) if i not in top]
        assert list(order[3:]) == rest and np.allclose(new[row, rest], distmat[row, rest])
        assert new[row, top].max() < distmat[row].min()


# --- options ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kw,match", [
    ({"parts": "spatil"}, r"parts='spatil'; choose from \('both', 'spatial', 'channel'\)"),
    ({"sa_channels": 2}, r"sa_channels=2; choose from \('C', 1\)"),
    ({"att_act": "relu"}, r"att_act='relu'; choose from \('sigmoid', 'none'\)"),
    ({"fd": "euclidean"}, r"fd='euclidean'; choose from \('square', 'abs'\)"),
    ({"partner": "other"}, r"partner='other'; choose from \('mutual', 'self'\)"),
    ({"test_mode": "pair"}, r"test_mode='pair'; choose from \('plain', 'self', 'pairwise'\)"),
    ({"stages": ("layer5",)}, r"stages=\('layer5',\); choose distinct stages from "
                              r"\('layer1', 'layer2', 'layer3', 'layer4'\)"),
    ({"stages": "layer3"}, r"stages='layer3'; give a tuple"),
])
def test_a_wrong_option_names_the_valid_choices(kw, match):
    with pytest.raises(ValueError, match="Jamal2020: " + match):
        _small(**kw)
    if "stages" not in kw:   # refused even where no block is built
        with pytest.raises(ValueError, match=match):
            _small(stages=(), **kw)


def test_verification_head_reads_fd():
    model = _small(fd="abs").eval()
    f1, f2 = torch.randn(4, 512), torch.randn(4, 512)
    assert torch.equal(model.distance_feature(f1, f2), (f1 - f2).abs())
    model.fd = "square"
    assert torch.allclose(model.distance_feature(f1, f2), (f1 - f2) ** 2)
    with torch.no_grad():
        assert torch.allclose(model.verify(f1, f2),
                              model.verifier(model.verify_embed((f1 - f2) ** 2)))


# --- the objective (Eq. 13) --------------------------------------------------------------------

def _objective(cache, **kw):
    return SiameseObjective(cache, BatchAugment(erasing_p=0.0, pad=0), num_identities=3,
                            **{"uniformity": False, "ver_weight": 0.5, **kw})


def test_step_is_id_plus_half_verification_and_reaches_every_parameter():
    cache = random_cache(6, 4, 64, 32, 0)
    model = _small().train()
    obj = _objective(cache)
    batch = obj.epoch_batches(np.random.default_rng(0))[0]
    out = obj.step(model, batch, torch.Generator().manual_seed(0), CPU)
    assert set(out) == {"loss", "loss_id", "loss_ver", "acc", "acc_ver"}
    assert torch.allclose(out["loss"], out["loss_id"] + 0.5 * out["loss_ver"])
    out["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing
    assert all(p.grad.abs().sum() > 0 for p in model.attention.parameters())


def test_the_uniformity_term_needs_scores_jamal2020_does_not_have():
    cache = random_cache(6, 4, 64, 32, 0)
    model = _small().train()
    obj = _objective(cache, uniformity=True)
    batch = obj.epoch_batches(np.random.default_rng(0))[0]
    with pytest.raises(MissingOutputError, match="Jamal2020 does not"):
        obj.step(model, batch, torch.Generator().manual_seed(0), CPU)


def test_validation_loss_is_half_the_verification_loss():
    cache = random_cache(6, 4, 64, 32, 0)
    model = _small().eval()
    with torch.no_grad():
        val = _objective(cache, val_triplets=6).validation_losses(model, cache, CPU, seed=1)
    assert set(val) == {"val_ver", "val_loss"}
    assert val["val_loss"] == pytest.approx(0.5 * val["val_ver"])
