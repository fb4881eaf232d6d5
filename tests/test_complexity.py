import pytest
import torch
from torch import nn

from reidnb.complexity import count_call_flops, count_flops, count_params
from reidnb.models import build_model


def test_linear_flops_by_hand():
    # input (1, 3, 2, 5): Linear(5, 4) acts on 1*3*2 = 6 rows -> 6*5*4 = 120 multiply-adds
    c = count_flops(nn.Linear(5, 4), input_size=(2, 5))
    assert c.macs == 120 and c.flops == 240
    assert c.params == 5 * 4 + 4


def test_conv_and_transposed_conv_flops_by_hand():
    # Conv2d(3, 8, 3, padding=1) on 4x6: 24 output positions x 8 x (3*9) = 5184 multiply-adds
    conv = count_flops(nn.Conv2d(3, 8, 3, padding=1), input_size=(4, 6))
    assert conv.macs == 24 * 8 * 3 * 9 and conv.params == 8 * 3 * 9 + 8
    # stride-1 ConvTranspose2d(3, 2, 3) on 4x4: each of 16 input pixels meets 9 taps x 3 x 2
    deconv = count_flops(nn.ConvTranspose2d(3, 2, 3), input_size=(4, 4))
    assert deconv.macs == 16 * 9 * 3 * 2


def test_flops_are_split_by_child_module():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 3))
    c = count_flops(model, input_size=(2, 2))
    assert c.by_module == {"0": 2 * (4 * 4 * 3), "3": 2 * (16 * 3)}
    assert sum(c.by_module.values()) == c.flops


def test_count_call_flops_counts_whatever_the_call_runs():
    lin = nn.Linear(5, 4)
    x = torch.zeros(6, 5)
    # two passes of 6 rows: 2 x 6 x 5 x 4 multiply-adds, 2 FLOPs each
    assert count_call_flops(lambda: (lin(x), lin(x))) == 2 * 2 * 6 * 5 * 4


def test_shared_parameters_counted_once():
    lin = nn.Linear(3, 3)
    assert count_params(nn.Sequential(lin, lin)) == 12
    lin.bias.requires_grad_(False)
    assert count_params(lin, trainable_only=True) == 9


def test_jeong2020_resnet50_cost_against_sec42():
    """Sec. 4.2: 27.7 M parameters, 2.90 x 10^9 FLOPs at 256x128 (multiply-adds, see below)."""
    model = build_model("jeong2020", 751, backbone="resnet50", pretrained=False)
    c = count_flops(model, input_size=(256, 128))
    # The attention module by hand (Table 1 at layer3, 16x8): output positions x weights for
    # convs, input positions x weights for stride-1 deconvs, plus the two FC layers.
    am_macs = (84 * 1024 * 256 * 9 + 48 * 256 * 256 * 9 + 33 * 256 * 256 * 4      # encoder
               + 33 * 256 * 256 * 4 + 48 * 256 * 256 * 9 + 84 * 256 * 9           # decoder
               + 2 * 1024 * 64)                                                    # channel
    assert c.by_module["attention"] == 2 * am_macs
    # 2.94 G multiply-adds: within 2 % of the printed 2.90; twice that (5.9 G) is not
    assert abs(c.macs / 1e9 - 2.90) / 2.90 < 0.02
    # trunk + attention module = 27.7 M, the printed size; heads add 1.4 M more
    trunk_and_am = count_params(model.backbone) + count_params(model.attention)
    assert round(trunk_and_am / 1e6, 1) == 27.7
    with pytest.raises(ValueError, match="input_size"):
        count_flops(model, input_size=(256,))


def test_output_shapes_of_named_submodules():
    from torch import nn

    from reidnb.complexity import output_shapes

    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    shapes = output_shapes(net, ["0", "2"], input_size=(8, 6))
    assert shapes == {"0": (4, 4, 3), "2": (4, 1, 1)}
    import pytest
    with pytest.raises(KeyError, match="no submodule"):
        output_shapes(net, ["5"], input_size=(8, 6))


def test_time_inference_bookkeeping_with_a_sleeping_model():
    """The arithmetic, not a speed: a forward that sleeps `delay` per call, whatever the batch,
    takes delay / batch per image; warm-up passes see `warmup_batch` images and are not timed."""
    import time

    from reidnb.complexity import time_inference

    delay, calls = 0.05, []

    class Sleepy(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            calls.append((tuple(x.shape), self.training, torch.get_num_threads()))
            time.sleep(delay)
            return x.mean() + self.w

    model, threads = Sleepy().train(), torch.get_num_threads()
    per_image = time_inference(model, (4, 2), batch=4, repeats=3, warmup=2, threads=1)
    # 3 timed calls of `delay` over 3 x 4 images; the two warm-up sleeps are not counted
    assert delay / 4 <= per_image < 3 * delay / 4
    assert [c[0] for c in calls] == [(2, 3, 4, 2)] * 2 + [(4, 3, 4, 2)] * 3
    assert {c[1] for c in calls} == {False} and {c[2] for c in calls} == {1}
    assert model.training and torch.get_num_threads() == threads
