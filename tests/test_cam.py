"""Tests for reidnb.cam: Grad-CAM and activation maps on models whose answer is known by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reidnb.cam import (
    activation_map,
    feature_score_fn,
    grad_cam,
    normalize_maps,
    upsample_maps,
)
from reidnb.models.heads import BNNeckClassifier, ReIDOutput


class LinearProbe(nn.Module):
    """A = images at `stage`; logit_c = w_c * spatial mean of channel 0 (so dy_c/dA_0 = w_c/hw)."""

    def __init__(self, class_weights: list[float]):
        super().__init__()
        self.stage = nn.Identity()
        self.register_buffer("w", torch.tensor(class_weights))

    def forward(self, images: torch.Tensor) -> ReIDOutput:
        act = self.stage(images)
        feat = act.mean(dim=(2, 3))
        logits = feat[:, :1] * self.w[None, :]
        return ReIDOutput(logits, feat, feat, {})


class TinyReID(nn.Module):
    """Two conv stages under `backbone`, global pooling and the shared BN-neck classifier."""

    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.backbone = nn.Sequential()
        self.backbone.add_module("layer1", nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()))
        self.backbone.add_module(
            "layer2", nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        )
        self.head = BNNeckClassifier(16, num_classes)
        nn.init.normal_(self.head.classifier.weight, std=0.5)

    def forward(self, images: torch.Tensor) -> ReIDOutput:
        fmap = self.backbone(images)
        feat = fmap.mean(dim=(2, 3))
        logits, feat_bn = self.head(feat)
        return ReIDOutput(logits, feat, feat_bn, {})


def _hooks_of(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


@pytest.fixture
def images() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randn(3, 3, 4, 6)


def test_grad_cam_equals_weighted_channel_by_hand(images):
    model = LinearProbe([2.0, -1.0, 0.5])
    maps = grad_cam(model, images, "stage", target=0)
    expected = torch.relu(2.0 / (4 * 6) * images[:, 0])
    assert maps.shape == (3, 4, 6)
    torch.testing.assert_close(maps, expected)


def test_grad_cam_target_selects_class(images):
    model = LinearProbe([2.0, -1.0, 0.5])
    neg = grad_cam(model, images, "stage", target=torch.tensor([1, 1, 1]))
    torch.testing.assert_close(neg, torch.relu(-1.0 / 24 * images[:, 0]))
    mixed = grad_cam(model, images, "stage", target=torch.tensor([0, 1, 2]))
    for i, w in enumerate([2.0, -1.0, 0.5]):
        torch.testing.assert_close(mixed[i], torch.relu(w / 24 * images[i, 0]))


def test_grad_cam_default_target_is_argmax():
    model = LinearProbe([2.0, -1.0])
    imgs = torch.zeros(2, 3, 2, 2)
    imgs[0, 0] = torch.tensor([[1.0, 3.0], [0.0, 0.0]])  # mean > 0 -> class 0 wins
    imgs[1, 0] = torch.tensor([[-1.0, -3.0], [0.0, 0.0]])  # mean < 0 -> class 1 wins
    maps = grad_cam(model, imgs, "stage")
    torch.testing.assert_close(maps[0], torch.relu(2.0 / 4 * imgs[0, 0]))
    torch.testing.assert_close(maps[1], torch.relu(-1.0 / 4 * imgs[1, 0]))


def test_grad_cam_score_fn_matches_hand(images):
    model = LinearProbe([1.0])
    w = torch.tensor([1.0, -2.0, 0.5])
    maps = grad_cam(model, images, "stage", use_logits=False, score_fn=feature_score_fn(w))
    expected = torch.relu((w[None, :, None, None] / 24 * images).sum(dim=1))
    torch.testing.assert_close(maps, expected)


def test_grad_cam_create_graph_gives_param_grads(images):
    torch.manual_seed(1)
    model = TinyReID()
    pids = torch.tensor([0, 3, 4])
    maps = grad_cam(model, images, "backbone.layer2", target=pids, create_graph=True)
    assert maps.shape == (3, 2, 3) and maps.requires_grad
    maps.sum().backward()
    conv_w = model.backbone.layer1[0].weight
    assert conv_w.grad is not None and conv_w.grad.abs().sum() > 0
    # The channel weights depend on the classifier, so it gets a gradient too.
    assert model.head.classifier.weight.grad.abs().sum() > 0


def test_grad_cam_without_create_graph_is_detached(images):
    model = TinyReID()
    maps = grad_cam(model, images, "backbone.layer2", target=0)
    assert not maps.requires_grad
    assert all(p.grad is None for p in model.parameters())


def test_grad_cam_removes_hooks_and_keeps_mode(images):
    model = TinyReID().train()
    grad_cam(model, images, "backbone.layer2", create_graph=True)
    assert _hooks_of(model) == 0 and model.training
    model.eval()
    grad_cam(model, images, "backbone.layer1")
    assert _hooks_of(model) == 0 and not model.training


def test_grad_cam_removes_hooks_on_error(images):
    model = TinyReID()

    def bad_score(output):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        grad_cam(model, images, "backbone.layer2", use_logits=False, score_fn=bad_score)
    assert _hooks_of(model) == 0
    with pytest.raises(ValueError, match=r"target class ids must lie in \[0, 5\)"):
        grad_cam(model, images, "backbone.layer2", target=9)
    assert _hooks_of(model) == 0


class InplaceProbe(nn.Module):
    """`stage` is followed by an in-place ReLU; logit = -mean(ReLU(A_0))."""

    def __init__(self):
        super().__init__()
        self.stage = nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, images: torch.Tensor) -> ReIDOutput:
        feat = self.relu(self.stage(images)).mean(dim=(2, 3))
        return ReIDOutput(-feat[:, :1], feat, feat, {})


def test_grad_cam_and_activation_map_see_pre_inplace_activation():
    x = torch.tensor([[[[-0.5, -1.5], [1.4, 0.5]]]]).expand(1, 3, 2, 2).contiguous()
    # dy/dA_0 = -1/4 where A_0 > 0 -> channel weight -1/4 * 2/4; map = ReLU(-1/8 * A_0)
    maps = grad_cam(InplaceProbe(), x, "stage", target=0)
    torch.testing.assert_close(maps[0], torch.tensor([[0.0625, 0.1875], [0.0, 0.0]]))
    amap = activation_map(InplaceProbe(), x, "stage")
    torch.testing.assert_close(amap, (x**2).mean(dim=1))


class TwiceProbe(LinearProbe):
    def forward(self, images: torch.Tensor) -> ReIDOutput:
        return super().forward(self.stage(images))


def test_grad_cam_rejects_layer_run_twice(images):
    model = TwiceProbe([1.0])
    with pytest.raises(ValueError, match="'stage' ran more than once"):
        grad_cam(model, images, "stage")
    assert _hooks_of(model) == 0


def test_grad_cam_unknown_layer_names_it(images):
    with pytest.raises(ValueError, match="no submodule 'backbone.layer9'.*backbone.layer1"):
        grad_cam(TinyReID(), images, "backbone.layer9")


def test_grad_cam_needs_score_fn_without_logits(images):
    with pytest.raises(ValueError, match="needs score_fn"):
        grad_cam(TinyReID(), images, "backbone.layer2", use_logits=False)


def test_grad_cam_works_frozen_under_no_grad(images):
    model = LinearProbe([3.0])
    with torch.no_grad():
        maps = grad_cam(model, images, "stage", target=0)
    torch.testing.assert_close(maps, torch.relu(3.0 / 24 * images[:, 0]))


def test_grad_cam_eval_batch_equals_per_image(images):
    model = TinyReID().eval()
    pids = torch.tensor([1, 2, 0])
    batch = grad_cam(model, images, "backbone.layer2", target=pids)
    single = torch.cat(
        [grad_cam(model, images[i : i + 1], "backbone.layer2", target=pids[i : i + 1])
         for i in range(3)]
    )
    torch.testing.assert_close(batch, single)


def test_grad_cam_normalize_option_scales_to_unit(images):
    maps = grad_cam(LinearProbe([2.0]), images, "stage", target=0, normalize=True)
    flat = maps.reshape(3, -1)
    torch.testing.assert_close(flat.max(dim=1).values, torch.ones(3))
    torch.testing.assert_close(flat.min(dim=1).values, torch.zeros(3))


def test_normalize_maps_hand_case_and_flat_map():
    maps = torch.tensor([[[0.0, 2.0, 4.0]], [[5.0, 5.0, 5.0]]], requires_grad=True)
    out = normalize_maps(maps)
    torch.testing.assert_close(out.detach(), torch.tensor([[[0.0, 0.5, 1.0]], [[0.0, 0.0, 0.0]]]))
    out.sum().backward()
    assert torch.isfinite(maps.grad).all()


def test_upsample_maps_shape_and_constant():
    maps = torch.full((2, 4, 2), 3.0)
    up = upsample_maps(maps, (16, 8))
    assert up.shape == (2, 16, 8)
    torch.testing.assert_close(up, torch.full((2, 16, 8), 3.0))
    with pytest.raises(ValueError, match=r"maps must be \(B, h, w\)"):
        upsample_maps(torch.zeros(2, 1, 4, 2), 8)


def test_activation_map_equals_mean_square(images):
    model = LinearProbe([1.0])
    amap = activation_map(model, images, "stage")
    torch.testing.assert_close(amap, (images**2).mean(dim=1))
    assert not amap.requires_grad and _hooks_of(model) == 0


def test_activation_map_tiny_model_matches_stage_output(images):
    model = TinyReID().eval()
    amap = activation_map(model, images, "backbone.layer2")
    with torch.no_grad():
        fmap = model.backbone(images)
    torch.testing.assert_close(amap, fmap.pow(2).mean(dim=1))
