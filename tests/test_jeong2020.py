import numpy as np
import pytest
import torch
from tiny_model import random_cache

from reidnb import losses
from reidnb.complexity import count_params
from reidnb.data.transforms import BatchAugment
from reidnb.papers.jeong2020 import jeong2020_experiment
from reidnb.models import build_model
from reidnb.models.jeong2020 import Jeong2020
from reidnb.train.objectives import SiameseObjective


def _small(**kw):
    """ResNet-18 variant that runs on 64x32 inputs (padded encoder: layer3 is 4x2 there)."""
    kw = {"backbone": "resnet18", "pretrained": False, "encoder_padding": True, **kw}
    return build_model("jeong2020", 6, **kw)


def _cache(n_ids=6, per_id=4, seed=0):
    return random_cache(n_ids, per_id, 64, 32, seed)


# --- the uniformity loss (Eq. 8) on hand-worked scores --------------------------------------

def test_uniformity_loss_by_hand_in_both_forms():
    z = torch.zeros(2, 1, 2, 2)
    s_q = z
    s_p = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 3.0]]]])
    s_n = torch.tensor([[[[0.0, -2.0], [1.0, 0.0]]], [[[0.5, 0.0], [0.0, 0.0]]]])
    # L1 distances: d(q,p) = (1, 3), d(q,n) = (3, 0.5); margin 1
    # text:    max(d_qp - d_qn + 1, 0) = (max(-1, 0), 3.5)  -> mean 1.75
    # printed: max(d_qn - d_qp + 1, 0) = (3, max(-1.5, 0))  -> mean 1.5
    assert losses.uniformity(s_q, s_p, s_n, 1.0, "text").item() == pytest.approx(1.75)
    assert losses.uniformity(s_q, s_p, s_n, 1.0, "printed").item() == pytest.approx(1.5)
    assert losses.uniformity(s_q, s_p, s_n, 0.0, "text").item() == pytest.approx(1.25)
    with pytest.raises(ValueError, match="form='eq8'"):
        losses.uniformity(s_q, s_p, s_n, 1.0, "eq8")


def test_uniformity_text_form_pulls_same_person_attention_together():
    s_q = torch.zeros(1, 1, 2, 2)
    s_p = torch.full((1, 1, 2, 2), 0.5, requires_grad=True)
    s_n = torch.full((1, 1, 2, 2), 0.6)
    losses.uniformity(s_q, s_p, s_n, 1.0, "text").backward()
    assert (s_p.grad > 0).all()  # gradient descent lowers s_p towards s_q


# --- the model --------------------------------------------------------------------------------

def test_resnet50_shapes_match_table1_at_256x128():
    model = build_model("jeong2020", 751, backbone="resnet50", pretrained=False).eval()
    out = model(torch.randn(2, 3, 256, 128))
    assert out.logits.shape == (2, 751)
    assert out.feat.shape == (2, 512) and out.feat_bn is out.feat  # retrieval uses z
    ex = out.extras
    assert ex["channel_att"].shape == (2, 1024, 1, 1)   # layer3: 1024 channels
    assert ex["ed_att"].shape == (2, 1, 16, 8)          # layer3 map, 16x8
    assert ex["fmap"].shape == (2, 2048, 8, 4)          # layer4, 8x4 (last stride 2)
    assert ex["score"].shape == (2, 1, 8, 4)            # spatial attention score s
    assert 0 <= ex["score"].min() and ex["score"].max() <= 1


def test_baseline_is_the_same_network_without_the_module():
    full, base = _small(), _small(attention=False)
    assert not [n for n, _ in base.named_parameters() if n.startswith("attention")]
    assert base.attention is None
    assert count_params(full) - count_params(base) == count_params(full.attention)
    out = base(torch.randn(2, 3, 64, 32))
    assert "channel_att" not in out.extras and out.extras["score"].shape == (2, 1, 2, 1)


def test_layer4_module_uses_two_encoder_convs_by_default():
    model = _small(stage="layer4", encoder_padding=False).eval()
    convs = [m for m in model.attention.encoder_decoder.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs] == [3, 2]
    assert model(torch.randn(1, 3, 256, 128)).extras["ed_att"].shape == (1, 1, 8, 4)


def test_unpadded_module_at_128x64_layer3_raises_a_clear_error():
    model = _small(encoder_padding=False)
    with pytest.raises(ValueError, match=r"after layer3: the 8x4 map.*encoder_padding=True"):
        model(torch.randn(1, 3, 128, 64))
    assert _small().eval()(torch.randn(1, 3, 128, 64)).extras["ed_att"].shape == (1, 1, 8, 4)
    with pytest.raises(ValueError, match="stage='layer5'"):
        _small(stage="layer5")


def test_verification_head_is_symmetric():
    model = _small()
    z1, z2 = torch.randn(3, 512), torch.randn(3, 512)
    v = model.verify(z1, z2)
    assert v.shape == (3, 2)
    assert torch.equal(v, model.verify(z2, z1))  # elementwise product commutes
    out = model.eval()(torch.randn(4, 3, 64, 32), pairs=(torch.tensor([0, 0]),
                                                        torch.tensor([1, 3])))
    expected = model.verify(out.feat[[0, 0]], out.feat[[1, 3]])
    assert torch.allclose(out.extras["pair_logits"], expected)


# --- the objective ---------------------------------------------------------------------------

def _objective(cache, **kw):
    return SiameseObjective(cache, BatchAugment(erasing_p=0.0, pad=1), num_identities=3, **kw)


def test_epoch_batches_are_anchor_positive_negative_of_distinct_identities():
    cache = _cache()
    batches = _objective(cache, anchors_per_epoch=12).epoch_batches(np.random.default_rng(0))
    assert len(batches) == 4 and all(b.shape == (3, 3) for b in batches)
    pids = cache.pids.numpy()
    for b in batches:
        a, p, n = b.T
        assert len(set(pids[a])) == 3
        assert (pids[a] == pids[p]).all() and (a != p).all() and (pids[a] != pids[n]).all()


@pytest.mark.parametrize("attention,unif_weight", [(True, 1.0), (True, 0.0), (False, 0.0)])
def test_step_returns_named_losses_and_grads_follow_the_switches(attention, unif_weight):
    torch.manual_seed(0)
    cache = _cache()
    model = _small(attention=attention).train()
    obj = _objective(cache, unif_weight=unif_weight)
    batch = obj.epoch_batches(np.random.default_rng(0))[0]
    out = obj.step(model, batch, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert {"loss", "loss_id", "loss_ver", "loss_unif", "acc", "acc_ver"} <= set(out)
    expected = out["loss_id"] + out["loss_ver"] + unif_weight * out["loss_unif"]
    assert torch.allclose(out["loss"], expected)
    out["loss"].backward()
    if attention:
        grads = [p.grad for p in model.attention.parameters()]
        assert all(g is not None and g.abs().sum() > 0 for g in grads)
    score_grad = model.score[0].weight.grad
    assert (score_grad is not None) == (unif_weight > 0)
    assert model.verifier.weight.grad is not None


def test_validation_losses_are_fixed_by_the_seed():
    cache = _cache()
    model = _small().eval()
    obj = _objective(cache, val_triplets=8)
    with torch.no_grad():
        a = obj.validation_losses(model, cache, torch.device("cpu"), seed=1)
        b = obj.validation_losses(model, cache, torch.device("cpu"), seed=1)
    assert a == b and set(a) == {"val_loss", "val_ver", "val_unif"}
    assert a["val_loss"] == pytest.approx(a["val_ver"] + a["val_unif"])


# --- the experiment builder ------------------------------------------------------------------

def test_jeong2020_variants_differ_as_table5_rows():
    base, am, full = (jeong2020_experiment("synthetic", variant=v)
                      for v in ("baseline", "am", "full"))
    assert (base.model_kwargs["attention"], am.model_kwargs["attention"],
            full.model_kwargs["attention"]) == (False, True, True)
    assert [e.objective_kwargs["unif_weight"] for e in (base, am, full)] == [0.0, 0.0, 1.0]
    assert len({e.run_name for e in (base, am, full)}) == 3
    paper = jeong2020_experiment("paper")
    assert (paper.height, paper.width, paper.model_kwargs["backbone"]) == (256, 128, "resnet50")
    assert paper.model_kwargs["encoder_padding"] is False
    assert (paper.train.lr, paper.train.momentum, paper.train.lr_steps) == (0.04, 0.9, (30, 60))
    assert jeong2020_experiment("paper", backbone="vgg").model_kwargs["backbone"] == "vgg16"
    gpu = jeong2020_experiment("gpu")   # 256x128 ResNet-50: layer3 is 16x8, no padding needed
    assert (gpu.height, gpu.model_kwargs["encoder_padding"]) == (256, False)
    synth = jeong2020_experiment("synthetic")
    # the paper's unpadded module at 128x64: layer3's 8x4 map takes two encoder convolutions,
    # as the paper's own 8x4 map after layer4 does (Sec. 4.4.2)
    assert (synth.model_kwargs["encoder_padding"], synth.model_kwargs["encoder_convs"]) == (False, 2)
    assert paper.model_kwargs["encoder_convs"] == 3
    assert jeong2020_experiment("paper", stage="layer4").model_kwargs["encoder_convs"] == 2
    # a trained IDE trunk gets a near-identity module; an ImageNet trunk the paper's random one
    assert synth.model_kwargs["module_init"] == "identity"
    assert paper.model_kwargs["module_init"] == "default"
    assert synth.objective_kwargs["unif_reduce"] == "mean"
    assert jeong2020_experiment("synthetic", "am", unif_weight=3.0).objective_kwargs[
        "unif_weight"] == 0.0   # the weight is the full variant's only
    with pytest.raises(ValueError, match="must be >= 0"):
        jeong2020_experiment("synthetic", unif_margin=-0.1)
    l4 = jeong2020_experiment("synthetic", stage="layer4", seed=2, train={"epochs": 1})
    assert l4.name == "jeong2020_full_layer4" and l4.train.seed == 2 and l4.train.epochs == 1
    with pytest.raises(ValueError, match="variant='ul'"):
        jeong2020_experiment("synthetic", variant="ul")


def test_score_distances_separates_pairs_by_identity_and_camera():
    from reidnb.models.jeong2020 import score_distances
    from reidnb.models.heads import ReIDOutput

    class Scores(torch.nn.Module):  # the score is the image's first pixel, broadcast to 2x2
        def forward(self, x):
            s = x[:, :1, :1, :1].expand(-1, 1, 2, 2)
            return ReIDOutput(None, x.flatten(1), x.flatten(1), {"score": s})

    vals = torch.tensor([0.0, 0.5, 3.0, 3.5])  # ids 0,0,1,1; cameras 0,1,0,1
    images = vals.view(4, 1, 1, 1).expand(4, 3, 2, 2).contiguous()
    out = score_distances(Scores(), images, torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1]))
    # same-person pairs: |0-0.5|*4 and |3-3.5|*4 -> 2.0; different: 4 pairs, L1 over 4 cells
    assert out["same person"] == pytest.approx(2.0)
    assert out["different people"] == pytest.approx(4 * (3.0 + 3.5 + 2.5 + 3.0) / 4)
    assert out["ratio"] == pytest.approx(2.0 / 12.0)


def test_score_distances_ratio_is_nan_for_a_collapsed_score_head():
    from reidnb.models.heads import ReIDOutput
    from reidnb.models.jeong2020 import score_distances

    class Constant(torch.nn.Module):
        def forward(self, x):
            return ReIDOutput(None, x.flatten(1), x.flatten(1),
                              {"score": torch.full((len(x), 1, 2, 2), 0.5)})

    out = score_distances(Constant(), torch.zeros(4, 3, 2, 2), torch.tensor([0, 0, 1, 1]),
                          torch.tensor([0, 1, 0, 1]))
    assert out["different people"] == 0.0 and np.isnan(out["ratio"])


def test_fitting_encoder_convs_follows_the_papers_rule():
    from reidnb.models.jeong2020 import fitting_encoder_convs

    assert fitting_encoder_convs(16, 8) == 3    # the paper's layer3 map
    assert fitting_encoder_convs(8, 4) == 2     # the paper's layer4 map (Sec. 4.4.2)
    assert fitting_encoder_convs(4, 2) == 1
    with pytest.raises(ValueError, match="too small"):
        fitting_encoder_convs(1, 1)
    net = Jeong2020(5, backbone="resnet18", pretrained=False, stage="layer3", encoder_convs=2)
    with torch.no_grad():
        mask = net(torch.zeros(2, 3, 128, 64)).extras["ed_att"]
    assert mask.shape == (2, 1, 8, 4)   # the unpadded hourglass gives the map back at full size


def test_identity_module_init_starts_close_to_the_identity_and_still_learns():
    from reidnb.models.jeong2020 import IDENTITY_BIAS, UniformityAttention

    torch.manual_seed(0)
    fmap = torch.randn(2, 32, 16, 8)
    block = UniformityAttention(32, mid_channels=16, init="identity")
    out = block(fmap)
    scale = torch.sigmoid(torch.tensor(IDENTITY_BIAS)) ** 2
    assert torch.allclose(out, fmap * scale, atol=1e-6)   # every cell and channel alike
    rand = UniformityAttention(32, mid_channels=16)       # PyTorch's default: a random mask
    assert not torch.allclose(rand(fmap), fmap * rand.maps["ed_att"].mean(), atol=1e-3)
    out.square().sum().backward()
    last = block.encoder_decoder.last_conv()
    assert last.weight.grad.abs().sum() > 0 and block.channel.expand.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs mask_activation='sigmoid'"):
        UniformityAttention(32, mid_channels=16, init="identity", mask_activation="relu")
    with pytest.raises(ValueError, match="module init='zero'"):
        UniformityAttention(32, mid_channels=16, init="zero")


def test_mean_uniformity_does_not_depend_on_the_map_size():
    torch.manual_seed(0)
    q, p, n = (torch.rand(4, 1, 2, 2) for _ in range(3))
    big = [t.repeat_interleave(2, 2).repeat_interleave(2, 3) for t in (q, p, n)]  # 4x4, same content
    for form in ("text", "printed"):
        small_mean = losses.uniformity(q, p, n, 0.1, form, reduce="mean")
        assert torch.allclose(losses.uniformity(*big, 0.1, form, reduce="mean"), small_mean)
        # the summed form scales with the cells: 4x the cells needs 4x the margin to match
        assert torch.allclose(losses.uniformity(*big, 1.6, form, reduce="sum"),
                              4 * losses.uniformity(q, p, n, 0.4, form, reduce="sum"))
    with pytest.raises(ValueError, match="reduce='max'"):
        losses.uniformity(q, p, n, reduce="max")


def test_bag_change_pair_is_chosen_from_the_data():
    from reidnb.data import synthetic
    from reidnb.data.synth_render import NUM_CAMERAS, sample_identities

    pair, info = synthetic.bag_change_pair(seed=7)
    assert pair.shape == (2, 128, 64, 3) and pair.dtype == np.uint8
    person = sample_identities(info["identity"] + 1, np.random.default_rng([7, 1]))[-1]
    assert person.bag != "none" and person.bag == info["bag"]
    assert info["visible_in"] in person.bag_cams and info["hidden_in"] not in person.bag_cams
    assert 1 <= info["hidden_in"] <= NUM_CAMERAS
    with pytest.raises(ValueError, match="bag_visible_prob=1.0"):
        synthetic.bag_change_pair(knobs=synthetic.SynthKnobs(bag_visible_prob=1.0), max_ids=20)
