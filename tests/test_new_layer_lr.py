"""TrainConfig.new_lr_mult: the trunk at lr, the layers a paper adds at lr x new_lr_mult, through
the whole schedule; and the diagnostics an objective logs beside its losses."""

import math

import pytest
import torch
from torch import nn

from reidnb.data.cache import ImageCache
from reidnb.data.transforms import BatchAugment
from reidnb.experiments import Experiment
from reidnb.models.heads import BNNeckClassifier, ReIDOutput
from reidnb.train.engine import TrainConfig, build_optimizer, fit
from reidnb.train.objectives import IdentityObjective, monitor_values, row_entropy


class Trunked(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 3, padding=1)
        self.head = BNNeckClassifier(4, num_classes)

    def forward(self, x):
        f = torch.relu(self.backbone(x)).mean((2, 3))
        logits, fb = self.head(f)
        return ReIDOutput(logits, f, fb, {})


def _cache(n_ids=3, per_id=4):
    g = torch.Generator().manual_seed(0)
    pids = torch.arange(n_ids).repeat_interleave(per_id)
    imgs = torch.randint(0, 256, (len(pids), 3, 8, 4), generator=g, dtype=torch.uint8)
    return ImageCache(imgs, pids, torch.arange(len(pids)) % 2, [f"i{i}" for i in range(len(pids))])


def test_one_group_by_default_and_trunk_then_new_layers_with_a_multiple():
    model = Trunked()
    assert len(build_optimizer(model, TrainConfig(lr=0.1)).param_groups) == 1
    opt = build_optimizer(model, TrainConfig(lr=0.1, new_lr_mult=10.0))
    trunk, new = opt.param_groups
    assert {id(p) for p in trunk["params"]} == {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in new["params"]} == {id(p) for p in model.head.parameters()
                                              if p.requires_grad}
    assert trunk["lr"] == pytest.approx(0.1) and new["lr"] == pytest.approx(1.0)


def test_the_multiple_holds_after_an_lr_step():
    """An SGD step without momentum or decay moves a weight by lr x grad: the head's first-epoch
    move is 10x the lr, the second epoch's (after x0.1) is lr x 0.1 x 10 = lr."""
    torch.manual_seed(0)
    model = Trunked()
    cfg = TrainConfig(epochs=2, lr=0.01, momentum=0.0, weight_decay=0.0, lr_steps=(1,),
                      new_lr_mult=10.0, optimizer="sgd")
    seen = []
    obj = IdentityObjective(_cache(), BatchAugment(flip_p=0.0, pad=0, erasing_p=0.0),
                            sampler="pk", num_identities=3, num_instances=4)
    fit(model, obj, cfg, None, progress=False,
        on_epoch_end=lambda e, row: seen.append(row["lr"]))
    assert seen == pytest.approx([0.01, 0.001])   # the logged lr is the trunk's


def test_new_lr_mult_needs_a_backbone_and_a_positive_value():
    class NoTrunk(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
    with pytest.raises(ValueError, match="no `backbone`"):
        build_optimizer(NoTrunk(), TrainConfig(new_lr_mult=10.0))
    with pytest.raises(ValueError, match="must be > 0"):
        build_optimizer(Trunked(), TrainConfig(new_lr_mult=0.0))


def test_the_neutral_multiple_leaves_run_names_alone():
    exp = Experiment(name="x")
    assert exp.replace(train={"new_lr_mult": 1.0}).run_name == exp.run_name
    assert exp.replace(train={"new_lr_mult": 10.0}).run_name != exp.run_name


def test_row_entropy_is_log_l_for_uniform_rows_and_zero_for_one_hot_rows():
    L = 32
    assert float(row_entropy(torch.full((2, L, L), 1.0 / L))) == pytest.approx(math.log(L))
    assert float(row_entropy(torch.eye(L).expand(2, L, L))) == pytest.approx(0.0, abs=1e-6)
    # unnormalised rows (sigmoid scores) are normalised first
    assert float(row_entropy(torch.full((1, 4, 4), 0.7))) == pytest.approx(math.log(4))


def test_monitor_values_reads_alpha_and_scores_when_present():
    out = ReIDOutput(None, None, None, {"alpha": torch.full((3, 1), 0.25),
                                        "scores": torch.full((3, 8, 8), 1 / 8)})
    got = monitor_values(out)
    assert float(got["alpha"]) == pytest.approx(0.25)
    assert float(got["attention_entropy"]) == pytest.approx(math.log(8))
    assert monitor_values(ReIDOutput(None, None, None, {})) == {}
