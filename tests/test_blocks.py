"""The attention-block contract (reidnb/models/attention.py), checked for every registered block:
`Block(channels, **options)`, output shaped as the input, gradients to the input and to every
parameter, the latest maps in `block.maps`, built by name."""

import pytest
import torch

from reidnb.models import (ATTENTION_BLOCKS, AttentionBlock, build_attention, build_backbone,
                           list_attention, merge_blocks)
from reidnb.models.jeong2020 import UniformityAttention

#: Options per registered block, each with the (C, H, W) input it must fit; a newly registered
#: block must add its own.
BLOCK_CASES = {
    "jeong2020_uniformity": [
        ({"mid_channels": 16, "padding": True}, (64, 16, 8)),
        ({"mid_channels": 16, "padding": False}, (64, 16, 8)),   # the paper's unpadded encoder
        ({"mid_channels": 16, "encoder_kernels": (3, 2), "mask_activation": "identity"},
         (64, 8, 4)),
        # (init="identity" is left out: its zero last layers give the layers before them no
        # gradient at the first step, by design; tests/test_jeong2020.py checks that start)
    ],
    # alpha starts at 0 in the paper (Eq. 6), which gives f, g and h no gradient at the first
    # step; the contract's gradient check needs a non-zero start
    "li2019_self": [({"alpha_init": 0.5}, (64, 8, 4)),
                    ({"alpha_init": 0.5, "reduce_h": True, "kernel_size": 3, "scale": True},
                     (64, 8, 4)),
                    ({"alpha_init": 0.5, "score": "sigmoid_rownorm"}, (64, 4, 2))],
    "li2019_spatial": [({}, (64, 8, 4)), ({"over": "channels"}, (64, 8, 4))],
    # forward(x) is the block with the image as its own partner (the self-paired control)
    "jamal2020_mutual": [({}, (64, 8, 4)), ({"sa_channels": 1, "att_act": "none"}, (64, 4, 2)),
                         ({"parts": "spatial"}, (64, 8, 4)), ({"parts": "channel"}, (64, 8, 4))],
}
CASES = [pytest.param(name, options, shape, id=f"{name}-{i}")
         for name, cases in BLOCK_CASES.items() for i, (options, shape) in enumerate(cases)]


def test_every_registered_block_has_test_cases():
    assert sorted(BLOCK_CASES) == list_attention()


@pytest.mark.parametrize("name,options,shape", CASES)
def test_block_keeps_shape_passes_gradients_and_keeps_its_maps(name, options, shape):
    torch.manual_seed(0)
    channels = shape[0]
    block = build_attention(name, channels, **options)
    assert isinstance(block, AttentionBlock) and block.maps == {}
    x = torch.randn(3, *shape, requires_grad=True)
    out = block(x)
    assert out.shape == x.shape
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in block.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname
    assert block.maps and all(isinstance(m, torch.Tensor) for m in block.maps.values())
    assert all(m.shape[0] == 3 and not m.requires_grad for m in block.maps.values())
    block.eval()
    with torch.no_grad():
        assert block(x[:2]).shape == (2, *shape)
    assert all(m.shape[0] == 2 for m in block.maps.values())   # the latest forward's maps


def test_block_goes_after_a_named_stage_through_the_trunk():
    trunk = build_backbone("resnet18", pretrained=False, last_stride=2).eval()
    block = build_attention("jeong2020_uniformity", trunk.stage_channels("layer2"),
                            mid_channels=16, padding=True).eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        plain, hooked = trunk(x), trunk(x, hooks={"layer2": block})
    assert hooked.shape == plain.shape and not torch.equal(hooked, plain)
    assert block.maps["ed_att"].shape == (2, 1, 8, 4)   # layer2 is at stride 8


def test_unknown_block_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown attention block 'jeong2020'.*"
                                         r"jeong2020_uniformity"):
        build_attention("jeong2020", 64)


def test_a_name_in_two_papers_tables_is_refused():
    class Other(AttentionBlock):
        pass

    assert merge_blocks({"a": Other}, {"b": UniformityAttention}) == {
        "a": Other, "b": UniformityAttention}
    with pytest.raises(ValueError, match=r"'jeong2020_uniformity' is defined twice.*Other"):
        merge_blocks(ATTENTION_BLOCKS, {"jeong2020_uniformity": Other})
