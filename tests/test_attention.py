"""jeong2020's attention module (reidnb/models/jeong2020.py) against Table 1 and Eq. 3; the
contract every block follows is tested over the registry in test_blocks.py."""

import pytest
import torch

from reidnb.models import build_model
from reidnb.models.jeong2020 import (ChannelAttention, EncoderDecoderAttention,
                                     UniformityAttention, encoder_kernels_for, hourglass_sizes)


def _layer_outputs(seq: torch.nn.Sequential, x: torch.Tensor) -> list[tuple[int, ...]]:
    """Shapes after each convolution of a Sequential (ReLUs skipped)."""
    shapes = []
    for layer in seq:
        x = layer(x)
        if not isinstance(layer, torch.nn.ReLU):
            shapes.append(tuple(x.shape[1:]))
    return shapes


def test_encoder_decoder_shapes_match_table1_at_layer3_of_resnet50():
    # Table 1 at 256x128: layer3 is 1024 x 16 x 8. Unpadded k x k convs remove k-1 rows/cols:
    # 16x8 -3x3-> 14x6 -3x3-> 12x4 -2x2-> 11x3; stride-1 deconvs add them back.
    block = EncoderDecoderAttention(1024, 256, (3, 3, 2), padding=False)
    x = torch.randn(1, 1024, 16, 8)
    enc = _layer_outputs(block.encoder, x)
    assert enc == [(256, 14, 6), (256, 12, 4), (256, 11, 3)]
    dec = _layer_outputs(block.decoder, block.encoder(x))
    assert dec == [(256, 12, 4), (256, 14, 6), (1, 16, 8)]
    assert hourglass_sizes(16, 8, (3, 3, 2), padding=False) == [
        (14, 6), (12, 4), (11, 3), (12, 4), (14, 6), (16, 8)]
    kernels = [m.kernel_size for m in block.encoder if isinstance(m, torch.nn.Conv2d)]
    assert kernels == [(3, 3), (3, 3), (2, 2)]
    assert all(isinstance(m, torch.nn.ConvTranspose2d) for m in block.decoder[::2])


def test_channel_attention_layers_match_table1():
    ca = ChannelAttention(1024, reduction=16)
    assert ca.reduce.weight.shape == (64, 1024) and ca.expand.weight.shape == (1024, 64)
    w = ca(torch.randn(3, 1024, 16, 8))
    assert w.shape == (3, 1024, 1, 1)
    assert ((w > 0) & (w < 1)).all()


def test_module_output_is_eq3_and_maps_are_soft_masks():
    torch.manual_seed(0)
    am = UniformityAttention(32, reduction=16, mid_channels=8)
    f = torch.randn(2, 32, 16, 8)
    out = am(f)
    assert out.shape == f.shape
    maps = am.maps
    assert maps["channel_att"].shape == (2, 32, 1, 1) and maps["ed_att"].shape == (2, 1, 16, 8)
    for m in maps.values():
        assert m.min() >= 0 and m.max() <= 1
    a_ch, a_ed = am.channel(f), am.encoder_decoder(f)
    assert torch.equal(out, (f * a_ch) * a_ed)
    assert torch.equal(maps["channel_att"], a_ch) and torch.equal(maps["ed_att"], a_ed)


def test_model_runs_the_module_through_the_trunk_and_reports_its_maps():
    torch.manual_seed(0)
    model = build_model("jeong2020", 4, backbone="resnet18", pretrained=False, stage="layer2",
                        encoder_padding=True).eval()
    x = torch.randn(2, 3, 64, 32)
    out = model(x)
    trunk = model.backbone(x, hooks={"layer2": model.attention})  # the trunk's own stage loop
    assert torch.equal(out.extras["fmap"], trunk)
    assert out.extras["channel_att"].shape == (2, 128, 1, 1)
    assert out.extras["ed_att"].shape == (2, 1, 8, 4)
    assert torch.equal(out.extras["ed_att"], model.attention.maps["ed_att"])


def test_unpadded_encoder_on_a_too_small_map_names_stage_size_and_fix():
    block = EncoderDecoderAttention(16, 8, (3, 3, 2), padding=False, stage="layer3", stride=16)
    with pytest.raises(ValueError, match=r"after layer3: the 8x4 map.*encoder_padding=True"):
        block(torch.randn(1, 16, 8, 4))
    with pytest.raises(ValueError, match=r"at least 96x96 pixels"):  # side >= 6 at stride 16
        block.check_fits(8, 4)
    block.check_fits(6, 6)  # the smallest map that fits: 6 -> 4 -> 2 -> 1


def test_padded_encoder_keeps_small_maps_whole():
    block = EncoderDecoderAttention(16, 8, (3, 3, 2), padding=True)
    x = torch.randn(2, 16, 8, 4)
    assert _layer_outputs(block.encoder, x) == [(8, 8, 4)] * 3
    assert block(x).shape == (2, 1, 8, 4)


def test_layer4_setting_drops_one_encoder_conv_and_fits_8x4():
    # Sec. 4.4.2: at layer4 (8x4) one encoder conv is removed; only (3, 2) leaves a map:
    # 8x4 -> 6x2 -> 5x1 -> 6x2 -> 8x4.
    assert encoder_kernels_for(3) == (3, 3, 2) and encoder_kernels_for(2) == (3, 2)
    assert hourglass_sizes(8, 4, (3, 2), padding=False) == [(6, 2), (5, 1), (6, 2), (8, 4)]
    block = EncoderDecoderAttention(16, 8, encoder_kernels_for(2))
    assert block(torch.randn(1, 16, 8, 4)).shape == (1, 1, 8, 4)
    with pytest.raises(ValueError, match="encoder_convs must be 1..3"):
        encoder_kernels_for(4)


def test_mask_activation_options():
    x = torch.randn(2, 16, 8, 8)
    torch.manual_seed(0)
    raw = EncoderDecoderAttention(16, 8, mask_activation="identity")
    torch.manual_seed(0)
    sig = EncoderDecoderAttention(16, 8, mask_activation="sigmoid")
    assert torch.allclose(sig(x), torch.sigmoid(raw(x)))
    with pytest.raises(ValueError, match="mask_activation='softmax'"):
        EncoderDecoderAttention(16, 8, mask_activation="softmax")
