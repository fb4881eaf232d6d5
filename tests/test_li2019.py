import math

import pytest
import torch

from reidnb import losses
from reidnb.complexity import count_params, output_shapes
from reidnb.models import build_attention, build_backbone, build_model
from reidnb.models.li2019 import Li2019, SelfAttention, SpatialAttention, pooled_self_attention


def _small(**kw):
    """ResNet-18 at 128x64 with last stride 1: layer4 is 512 x 8 x 4, L = 32, as in the paper."""
    return Li2019(6, backbone="resnet18", pretrained=False, last_stride=1, **kw)


# --- the trunk and the block's size (Table 1, Sec. 3.2) ------------------------------------

def test_resnet50_trunk_shapes_match_table1_at_256x128():
    trunk = build_backbone("resnet50", pretrained=False, last_stride=2)
    stages = {"stem.0": (64, 128, 64), "stem.3": (64, 64, 32), "layer1": (256, 64, 32),
              "layer2": (512, 32, 16), "layer3": (1024, 16, 8), "layer4": (2048, 8, 4)}
    assert output_shapes(trunk, list(stages), (256, 128)) == stages   # conv1, pool1, res2c..res5c


def test_parameter_counts_of_trunk_and_self_attention():
    trunk = build_backbone("resnet50", pretrained=False, last_stride=2)
    assert count_params(trunk) == 23_508_032                 # ResNet-50 without its FC layer
    assert count_params(SelfAttention(2048)) == 5_245_441     # f, g: D -> D/8; h: D -> D; alpha
    assert count_params(SelfAttention(2048, reduce=1)) == 12_589_057   # Eq. 2 as printed
    assert count_params(SelfAttention(2048, uniform_scores=True)) == 5_245_441
    narrow_h = 2 * (2048 * 256 + 256) + (2048 * 256 + 256) + (256 * 2048 + 2048) + 1
    assert count_params(SelfAttention(2048, reduce_h=True)) == narrow_h


# --- the self-attention block (Eqs. 3-6) ----------------------------------------------------

def _x(b=2, c=32, h=8, w=4, seed=0):
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_softmax_scores_rows_sum_to_one_and_match_eq3_by_hand():
    torch.manual_seed(0)
    block, x = SelfAttention(32), _x()
    block(x)
    s = block.maps["scores"]
    assert s.shape == (2, 32, 32)
    assert torch.allclose(s.sum(-1), torch.ones(2, 32), atol=1e-6)
    # e_ij = relu(f(x_i)) . relu(g(x_j)); row j of s is softmax over i of e_ij
    fx, gx = torch.relu(block.f(x)).flatten(2), torch.relu(block.g(x)).flatten(2)
    i, j = 5, 17
    e_j = torch.stack([fx[0, :, ii] @ gx[0, :, j] for ii in range(32)])
    assert torch.allclose(s[0, j], torch.softmax(e_j, 0), atol=1e-6)
    assert s[0, j, i] != s[0, i, j]   # not symmetric: f and g differ
    assert block.maps["received"].shape == (2, 1, 8, 4)
    assert torch.allclose(block.maps["received"].sum((1, 2, 3)), torch.full((2,), 32.0))


def test_alpha_zero_at_init_returns_the_input_exactly():
    block, x = SelfAttention(32), _x()
    assert block.alpha.item() == 0.0
    assert torch.equal(block(x), x)
    assert block.maps["alpha"].shape == (2, 1) and (block.maps["alpha"] == 0).all()


def test_output_is_alpha_times_attended_values_plus_input():
    torch.manual_seed(1)
    block, x = SelfAttention(32, alpha_init=0.7), _x()
    y = block(x)
    s, v = block.maps["scores"][0], block.h(x)[0].flatten(1)   # (L, L), (D, L)
    j = 9
    o_j = sum(s[j, i] * v[:, i] for i in range(32))
    assert torch.allclose(y[0].flatten(1)[:, j], 0.7 * o_j + x[0].flatten(1)[:, j], atol=1e-5)


def test_uniform_scores_give_every_score_one_over_L():
    block, x = SelfAttention(32, uniform_scores=True, alpha_init=1.0), _x()
    y = block(x)
    assert torch.equal(block.maps["scores"], torch.full((2, 32, 32), 1 / 32))
    # every position receives the same message, alpha times the mean of h(x)
    msg = (y - x).flatten(2)
    assert torch.allclose(msg, block.h(x).mean((2, 3))[:, :, None].expand_as(msg), atol=1e-6)


def test_sigmoid_scores_are_at_least_one_half_and_not_normalised():
    block, x = SelfAttention(32, score="sigmoid"), _x()
    block(x)
    s = block.maps["scores"]
    assert s.min() >= 0.5 and s.max() <= 1.0   # e >= 0 after the ReLUs of Eq. 3
    assert (s.sum(-1) >= 16).all()              # rows of 32 entries >= 0.5: far from 1
    rownorm = SelfAttention(32, score="sigmoid_rownorm")
    rownorm.load_state_dict(block.state_dict())
    rownorm(x)
    assert torch.allclose(rownorm.maps["scores"], s / s.sum(-1, keepdim=True))


def test_scale_divides_scores_by_sqrt_key_dim():
    torch.manual_seed(0)
    block, x = SelfAttention(64, score="sigmoid", scale=True), _x(c=64)
    block(x)
    fx, gx = torch.relu(block.f(x)).flatten(2), torch.relu(block.g(x)).flatten(2)
    e = torch.bmm(gx.transpose(1, 2), fx)                 # [j, i] = e_ij
    assert block.key_dim == 8
    assert torch.allclose(block.maps["scores"], torch.sigmoid(e / math.sqrt(8)), atol=1e-6)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="score='tanh'"):
        SelfAttention(32, score="tanh")
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        SelfAttention(32, kernel_size=2)
    with pytest.raises(ValueError, match="not divisible"):
        SelfAttention(30)
    with pytest.raises(ValueError, match="over='time'"):
        SpatialAttention(32, over="time")
    with pytest.raises(ValueError, match="need an attention block"):
        _small(attention=None, reduce=4)


# --- what global pooling sees --------------------------------------------------------------

@pytest.mark.parametrize("options", [{}, {"scale": True}, {"kernel_size": 3},
                                     {"score": "sigmoid"}])
def test_pooled_output_depends_on_scores_only_through_received_attention(options):
    torch.manual_seed(2)
    block, x = SelfAttention(32, alpha_init=0.8, **options), _x()
    gap = block(x).mean((2, 3))
    assert torch.allclose(pooled_self_attention(x, block), gap, atol=1e-5)
    if not options:   # 1x1 h: GAP(y) = GAP(x) + alpha (W_h sum_i (c_i / L) x_i + b_h)
        c = block.maps["received"].flatten(1)                     # (B, L)
        w, b = block.h.weight[:, :, 0, 0], block.h.bias
        pooled_x = torch.einsum("bdl,bl->bd", x.flatten(2), c) / 32
        assert torch.allclose(gap, x.mean((2, 3)) + 0.8 * (pooled_x @ w.T + b), atol=1e-5)
        # scores with the same column sums give the same pooled feature: here every row c / L
        flat = (c / 32)[:, None, :].expand(-1, 32, -1)
        o = torch.bmm(block.h(x).flatten(2), flat.transpose(1, 2))
        assert not torch.allclose(flat, block.maps["scores"], atol=1e-3)
        assert torch.allclose((x.flatten(2) + 0.8 * o).mean(2), gap, atol=1e-5)


# --- the spatial-attention comparison (Table 3, row 2) --------------------------------------

@pytest.mark.parametrize("over,shape", [("positions", (2, 1, 8, 4)), ("channels", (2, 32, 1, 1))])
def test_spatial_attention_is_a_distribution_and_uniform_is_identity(over, shape):
    block, x = build_attention("li2019_spatial", 32, over=over), _x()
    y = block(x)
    a = block.maps["attention"]
    assert a.shape == shape and torch.allclose(a.flatten(1).sum(1), torch.ones(2))
    assert torch.allclose(y, x * a * a[0].numel(), atol=1e-6)
    assert block.score.bias is None   # a softmax ignores a shared offset
    torch.nn.init.zeros_(block.score.weight)
    assert torch.allclose(block(x), x, atol=1e-6)   # uniform weights leave x as it is


# --- the loss (Eq. 9) -----------------------------------------------------------------------

def test_label_smoothing_target_form_by_hand_and_printed_form_differs():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    targets = torch.tensor([0, 2])
    eps, n = 0.1, 3
    logp = torch.log_softmax(logits, 1)
    q = torch.full((2, 3), eps / n)
    q[0, 0] += 1 - eps
    q[1, 2] += 1 - eps
    by_hand = -(q * logp).sum(1).mean()
    # row 0: log p = (2 - log(e^2 + 2), -log(e^2 + 2), ...)
    z0 = math.log(math.exp(2) + 2)
    z1 = math.log(math.exp(1) + 2)
    row0 = -((1 - eps + eps / n) * (2 - z0) + 2 * (eps / n) * (-z0))
    row1 = -((1 - eps + eps / n) * (-z1) + (eps / n) * (1 - z1) + (eps / n) * (-z1))
    assert by_hand.item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    target = losses.label_smoothing_ce(logits, targets, eps, "target")
    assert target.item() == pytest.approx(by_hand.item(), rel=1e-6)
    printed = losses.label_smoothing_ce(logits, targets, eps, "printed")
    p = logp.exp()
    eq9 = -torch.log((1 - eps) * p[[0, 1], [0, 2]] + eps / n).mean()
    assert printed.item() == pytest.approx(eq9.item(), rel=1e-6)
    assert abs(printed.item() - target.item()) > 0.02   # 0.897 vs 0.945
    plain = torch.nn.functional.cross_entropy(logits, targets)
    for form in ("target", "printed"):
        assert losses.label_smoothing_ce(logits, targets, 0.0, form).item() == pytest.approx(
            plain.item(), rel=1e-6)
    assert printed.item() < -math.log(eps / n)   # Eq. 9 as printed is bounded
    with pytest.raises(ValueError, match="form='eq9'"):
        losses.label_smoothing_ce(logits, targets, eps, "eq9")


# --- the model ------------------------------------------------------------------------------

def test_small_model_trains_one_sgd_step_with_a_finite_loss():
    torch.manual_seed(0)
    model = build_model("li2019", 6, backbone="resnet18", pretrained=False, last_stride=1)
    x, pids = torch.randn(4, 3, 128, 64), torch.tensor([0, 0, 1, 1])
    out = model(x)
    assert out.logits.shape == (4, 6) and out.feat.shape == (4, 512) and out.feat_bn is out.feat
    assert out.extras["scores"].shape == (4, 32, 32)          # 8 x 4 positions, L = 32
    assert out.extras["fmap"].shape == (4, 512, 8, 4)
    loss = losses.label_smoothing_ce(out.logits, pids) + losses.batch_hard_triplet(out.feat, pids)
    assert torch.isfinite(loss)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    opt.zero_grad()
    loss.backward()
    assert model.attention.alpha.grad.abs() > 0              # alpha leaves 0 from the first step
    opt.step()
    assert model.attention.alpha.item() != 0.0
    assert torch.isfinite(model(x).logits).all()


def test_baseline_is_the_same_network_without_the_block():
    full, base = _small(), _small(attention=None)
    assert base.attention is None
    assert count_params(full) - count_params(base) == count_params(full.attention)
    names = {n for n, _ in full.named_parameters() if not n.startswith("attention.")}
    assert names == {n for n, _ in base.named_parameters()}
    base.load_state_dict({k: v for k, v in full.state_dict().items()
                          if not k.startswith("attention.")})
    full.eval(), base.eval()
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        a, b = full(x), base(x)
    assert torch.equal(a.feat, b.feat)    # alpha = 0: the block starts as the identity
    assert "scores" in a.extras and "scores" not in b.extras


@pytest.mark.parametrize("kw", [{"attention": "spatial"},
                                {"attention": "spatial", "over": "channels"},
                                {"pool": "max", "bnneck": True}])
def test_model_variants_build_and_run(kw):
    model = _small(**kw).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 128, 64))
    assert out.logits.shape == (2, 6) and out.feat.shape == (2, 512)
    if kw.get("bnneck"):
        assert out.feat_bn is not out.feat
