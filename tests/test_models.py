import pytest
import torch
import torchvision

from reidnb.models import build_backbone, build_model, list_models, register_model
from reidnb.models.heads import ReIDOutput


@pytest.mark.parametrize("arch,channels", [("resnet18", [64, 128, 256, 512]),
                                           ("resnet50", [256, 512, 1024, 2048]),
                                           ("vgg16", [128, 256, 512, 512])])
def test_backbone_stages_match_feature_info(arch, channels):
    trunk = build_backbone(arch, pretrained=False, last_stride=2)
    x = torch.randn(1, 3, 64, 32)
    y = trunk.stem(x)
    for info, c in zip(trunk.feature_info, channels):
        y = getattr(trunk, info["module"])(y)
        assert info["num_chs"] == c == y.shape[1]
        assert 64 // info["reduction"] == y.shape[2]


def test_last_stride_one_keeps_layer4_at_stride_16():
    trunk = build_backbone("resnet50", pretrained=False, last_stride=1)
    assert trunk(torch.randn(1, 3, 256, 128)).shape[2:] == (16, 8)


def test_imagenet_weights_loaded_from_local_cache(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "resnet18-f37072fd.pth")
    trunk = build_backbone("resnet18", pretrained="auto", cache_dir=tmp_path)
    assert trunk.weights.source == "imagenet"
    assert torch.equal(trunk.layer3[0].conv1.weight, ref.layer3[0].conv1.weight)


def test_missing_weights_warn_and_record_random(tmp_path):
    with pytest.warns(UserWarning, match="no ImageNet weights for resnet18"):
        trunk = build_backbone("resnet18", pretrained="auto", cache_dir=tmp_path)
    assert trunk.weights.source == "random"
    with pytest.raises(FileNotFoundError, match="resnet18-f37072fd.pth"):
        build_backbone("resnet18", pretrained=True, cache_dir=tmp_path)


def test_unknown_backbone_and_model_names_are_refused():
    with pytest.raises(ValueError, match="unknown backbone 'resnet51'"):
        build_backbone("resnet51")
    with pytest.raises(ValueError, match="did you mean 'ide'"):
        build_model("idee", 3)
    with pytest.raises(ValueError, match="already registered"):
        register_model("ide", lambda n: None)


#: Constructor options to test per registered model; a newly registered model must add its own.
MODEL_CASES = {
    "ide": [{"bnneck": False}, {"bnneck": True}],
    "embedding": [{"embed_dim": 16}, {"embed_dim": 16, "l2_normalize": True}],
    "jeong2020": [{"encoder_padding": True}, {"attention": False},
                  {"encoder_padding": True, "stage": "layer2", "classifier_hidden": 8}],
    "li2019": [{}, {"attention": None}, {"alpha_init": 0.5, "score": "sigmoid", "last_stride": 1},
               {"attention": "spatial", "over": "channels", "pool": "max", "bnneck": True}],
    "jamal2020": [{}, {"stages": ()}, {"sa_channels": 1, "parts": "spatial", "fd": "abs"},
                  {"partner": "self", "test_mode": "self", "dropout": 0.5, "att_act": "none"}],
    # 64x32 images give conv5 4 rows (last stride 1): PCB with 2 stripes
    "zheng2019": [{}, {"head": "pcb", "parts": 2, "part_dim": 16},
                  {"diff": "abs", "dropout": 0.5, "hidden": 8, "bce_hidden": 8}],
}
#: Extra forward arguments for the gradient check: a model whose blocks and verification head
#: only run on image pairs (jamal2020's mutual attention) is given pairs of the batch.
FORWARD_KWARGS = {"jamal2020": {"pairs": (torch.tensor([0, 1]), torch.tensor([2, 3]))},
                  "zheng2019": {"pairs": (torch.tensor([0, 1]), torch.tensor([2, 3]))}}


def test_every_registered_model_has_test_cases():
    library_models = [n for n in list_models() if not n.startswith("test_")]  # test doubles
    assert sorted(MODEL_CASES) == library_models


@pytest.mark.parametrize("name,kwargs", [(n, kw) for n, cases in MODEL_CASES.items()
                                         for kw in cases])
def test_model_returns_reid_output_and_all_params_get_grad(name, kwargs):
    model = build_model(name, 5, backbone="resnet18", pretrained=False, **kwargs)
    for mode in (model.train, model.eval):
        mode()
        out = model(torch.randn(2, 3, 64, 32))
        assert isinstance(out, ReIDOutput)
        assert out.feat.shape[0] == out.feat_bn.shape[0] == 2
        if out.logits is not None:
            assert out.logits.shape == (2, 5)
    model.train()
    out = model(torch.randn(4, 3, 64, 32), **FORWARD_KWARGS.get(name, {}))
    loss = out.feat.sum() if out.logits is None else out.logits.sum() + out.feat.sum()
    if "score" in out.extras:  # attention score and pair head of a Siamese model (jeong2020)
        loss = loss + out.extras["score"].sum() + model.verify(out.feat[:2], out.feat[2:]).sum()
    if "pair_logits" in out.extras:  # pair path: mutual attention and verification (jamal2020)
        loss = loss + out.extras["pair_logits"].sum()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


def test_embedding_net_has_no_classifier_and_can_normalise():
    model = build_model("embedding", 7, backbone="resnet18", pretrained=False, embed_dim=16,
                        l2_normalize=True).eval()
    out = model(torch.randn(3, 3, 64, 32))
    assert out.logits is None and out.feat.shape == (3, 16)
    assert torch.allclose(out.feat.norm(dim=1), torch.ones(3), atol=1e-5)
    assert out.feat_bn is out.feat
