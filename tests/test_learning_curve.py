"""Learning curves (li2019 Figs. 6-7): `fit(monitor=...)` records numbers per epoch without
changing the training; `Experiment.eval_every` puts test rank-1 and mAP in the history."""

import pytest
import torch

from reidnb.data.transforms import BatchAugment
from reidnb.experiments import Experiment, run_experiment
from reidnb.train.engine import TrainConfig, fit
from reidnb.train.objectives import IdentityObjective

from test_new_layer_lr import Trunked, _cache


def _train(monitor=None):
    torch.manual_seed(0)
    model = Trunked()
    obj = IdentityObjective(_cache(), BatchAugment(flip_p=0.5, pad=1, erasing_p=0.5),
                            sampler="pk", num_identities=3, num_instances=2)
    result = fit(model, obj, TrainConfig(epochs=3, lr=0.05, optimizer="sgd"), None,
                 progress=False, monitor=monitor)
    return model, result


def test_monitoring_records_per_epoch_and_changes_nothing_of_the_training():
    seen = []

    def monitor(model, epoch):
        seen.append((epoch, model.training, torch.is_grad_enabled()))
        torch.rand(5)  # a monitor that draws from the global generator
        return {"probe": 10.0 * epoch} if epoch != 2 else None

    plain, _ = _train()
    watched, result = _train(monitor)
    assert seen == [(1, False, False), (2, False, False), (3, False, False)]
    assert [row.get("probe") for row in result.history] == [10.0, None, 30.0]
    for a, b in zip(plain.state_dict().values(), watched.state_dict().values()):
        assert torch.equal(a, b)


def _tiny(tmp_path, **changes):
    from test_experiments import _tiny_exp
    return _tiny_exp().replace(**changes)


def test_eval_every_puts_test_rank1_and_map_in_every_history_row(tmp_path):
    exp = _tiny(tmp_path, eval_every=1)
    assert exp.run_name != _tiny(tmp_path).run_name  # a curve is another run ...
    assert Experiment(name="x").key() == Experiment(name="x", eval_every=0).key()  # ... 0 is not
    rec = run_experiment(exp, data_root=tmp_path / "data", runs_dir=tmp_path / "runs",
                         device="cpu", progress=False)
    rows = rec["history"]
    assert len(rows) == exp.train.epochs >= 2
    assert all({"test_rank1", "test_mAP"} <= set(r) for r in rows)
    final = rec["metrics"]["single_query"]
    assert rows[-1]["test_rank1"] == final["rank1"] and rows[-1]["test_mAP"] == final["mAP"]


def test_a_negative_eval_every_is_refused_naming_the_run(tmp_path):
    exp = _tiny(tmp_path, eval_every=-1)
    with pytest.raises(ValueError, match=r"tiny.*eval_every=-1"):
        run_experiment(exp, data_root=tmp_path / "data", runs_dir=tmp_path / "runs",
                       device="cpu", progress=False)


def test_a_run_with_a_curve_groups_with_the_other_seeds_of_its_configuration():
    from reidnb.experiments import config_hash
    a = _tiny(None, eval_every=1).to_dict()
    b = _tiny(None).replace(train={"seed": 3}).to_dict()
    assert config_hash(a) != config_hash(b)
    assert config_hash(a, without_seed=True) == config_hash(b, without_seed=True)
    c = _tiny(None).replace(train={"lr": 0.2}).to_dict()
    assert config_hash(c, without_seed=True) != config_hash(b, without_seed=True)


def test_the_curve_figure_plots_the_test_points_against_iterations():
    from reidnb import viz
    history = [{"epoch": 1, "loss": 2.0, "test_rank1": 40.0, "test_mAP": 20.0},
               {"epoch": 2, "loss": 1.0},  # no test point: skipped
               {"epoch": 3, "loss": 0.5, "test_rank1": 70.0, "test_mAP": 45.0}]
    fig = viz.test_curve(history, steps_per_epoch=25)
    line_ax, bar_ax = fig.axes
    x, y = line_ax.lines[0].get_data()
    assert list(x) == [25.0, 75.0] and list(y) == [40.0, 70.0]
    assert [p.get_height() for p in bar_ax.patches] == [20.0, 45.0]
    with pytest.raises(ValueError, match="eval_every"):
        viz.test_curve([{"epoch": 1, "loss": 1.0}], 10)
