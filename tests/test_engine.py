import json

import numpy as np
import pytest
import torch
from torch import nn

from reidnb.data.cache import ImageCache
from reidnb.data.transforms import BatchAugment
from reidnb.train.engine import NonFiniteLossError, TrainConfig, evaluate, fit, lr_at
from reidnb.io import atomic_write_json, read_json
from reidnb.models.heads import BNNeckClassifier, ReIDOutput
from reidnb.train.objectives import IdentityObjective, TripletObjective


class Tiny(nn.Module):
    def __init__(self, num_classes=4):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = BNNeckClassifier(8, num_classes)

    def forward(self, x):
        f = torch.relu(self.conv(x)).mean((2, 3))
        logits, fb = self.head(f)
        return ReIDOutput(logits, f, fb, {})


def _cache(n_ids=4, per_id=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    pids = torch.arange(n_ids).repeat_interleave(per_id)
    # identity-dependent colour so the task is learnable
    base = (pids.view(-1, 1, 1, 1) * 60 % 256).expand(-1, 3, 16, 8).clone()
    imgs = (base + torch.randint(0, 30, base.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    camids = torch.arange(len(pids)) % 2
    return ImageCache(imgs, pids, camids, [f"img{i}" for i in range(len(pids))])


def _objective(cache):
    return IdentityObjective(cache, BatchAugment(erasing_p=0.0, pad=1), sampler="pk",
                             num_identities=2, num_instances=3)


def test_lr_schedule_warmup_and_steps():
    cfg = TrainConfig(lr=1.0, lr_steps=(3, 5), lr_gamma=0.1, warmup_epochs=2)
    assert [round(lr_at(e, cfg), 4) for e in range(6)] == [0.1, 0.55, 1.0, 0.1, 0.1, 0.01]


def test_fit_resume_equals_uninterrupted(tmp_path):
    cfg = TrainConfig(epochs=3, lr=0.05, seed=1)
    torch.manual_seed(0)
    ref = Tiny()
    init = {k: v.clone() for k, v in ref.state_dict().items()}
    hist_ref = fit(ref, _objective(_cache()), cfg, tmp_path / "a", progress=False).history

    class Killed(Exception):
        pass

    def kill_after_epoch_2(epoch, row):
        if epoch == 2:
            raise Killed

    m = Tiny()
    m.load_state_dict(init)
    with pytest.raises(Killed):
        fit(m, _objective(_cache()), cfg, tmp_path / "b", progress=False,
            on_epoch_end=kill_after_epoch_2)
    m2 = Tiny()
    m2.load_state_dict(init)  # a fresh process would rebuild the model, then resume
    res = fit(m2, _objective(_cache()), cfg, tmp_path / "b", progress=False)
    assert res.resumed_from == 2
    assert [r["epoch"] for r in res.history] == [1, 2, 3]
    for k, v in ref.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k
    assert res.history[-1]["loss"] == pytest.approx(hist_ref[-1]["loss"])


def test_fit_refuses_checkpoint_of_other_config(tmp_path):
    fit(Tiny(), _objective(_cache()), TrainConfig(epochs=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match="another configuration"):
        fit(Tiny(), _objective(_cache()), TrainConfig(epochs=2, lr=0.3), tmp_path, progress=False)


def test_fit_stops_on_non_finite_loss(tmp_path):
    class NanAtStep2(IdentityObjective):
        calls = 0

        def step(self, model, batch, gen, device):
            out = super().step(model, batch, gen, device)
            NanAtStep2.calls += 1
            if NanAtStep2.calls == 2:
                out["loss_id"] = out["loss_id"] * float("nan")
                out["loss"] = out["loss_id"]
            return out

    obj = NanAtStep2(_cache(), BatchAugment(erasing_p=0.0), sampler="pk", num_identities=2,
                     num_instances=3)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 2: \{'loss_id': nan"):
        fit(Tiny(), obj, TrainConfig(epochs=1), tmp_path, progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()  # nothing half-trained was saved


def test_fit_learns_a_separable_toy_task():
    cache = _cache()
    model = Tiny()
    hist = fit(model, _objective(cache), TrainConfig(epochs=15, lr=0.1), progress=False).history
    assert hist[-1]["loss"] < hist[0]["loss"]
    res = evaluate(model, cache, _cache(seed=1), flip=False, max_rank=5)
    assert res.metrics()["rank1"] == pytest.approx(100.0 * res.cmc[0])
    assert res.cmc[0] > 0.5


def test_triplet_objective_step_returns_named_losses():
    cache = _cache()
    obj = TripletObjective(cache, BatchAugment(erasing_p=0.0), batch_size=4)
    batches = obj.epoch_batches(np.random.default_rng(0))
    assert all(b.shape == (4, 3) for b in batches)
    out = obj.step(Tiny(), batches[0], torch.Generator().manual_seed(0), torch.device("cpu"))
    assert set(out) == {"loss", "loss_triplet"} and out["loss"].ndim == 0


def test_atomic_write_json_leaves_no_partial_file(tmp_path):
    path = tmp_path / "record.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert read_json(path) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]
    path.write_text("{broken")
    with pytest.raises(ValueError, match="record.json is not valid JSON"):
        read_json(path)


def test_validation_keeps_the_weights_of_the_lowest_val_loss(tmp_path):
    scripted = iter([0.5, 0.2, 0.4, 0.3])  # epoch 2 is the best
    snapshots = {}

    def validate(model):
        val = next(scripted)
        snapshots[val] = {k: v.clone() for k, v in model.state_dict().items()}
        assert not model.training  # validation runs in eval mode
        return {"val_loss": val}

    res = fit(Tiny(), _objective(_cache()), TrainConfig(epochs=4, lr=0.05), tmp_path, "cpu",
              progress=False, validate=validate)
    assert res.best_epoch == 2
    assert [r["val_loss"] for r in res.history] == [0.5, 0.2, 0.4, 0.3]
    assert [r["best_epoch"] for r in res.history] == [1, 2, 2, 2]
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    assert best["epoch"] == 2 and best["val_loss"] == 0.2
    for k, v in snapshots[0.2].items():
        assert torch.equal(best["model"][k], v), k


def test_validation_best_survives_resume(tmp_path):
    vals = [0.2, 0.5, 0.1, 0.3]

    def scripted(start):
        it = iter(vals[start:])
        return lambda model: {"val_loss": next(it)}

    obj = _objective(_cache())
    fit(Tiny(), obj, TrainConfig(epochs=2, lr=0.05), tmp_path, "cpu", False,
        validate=scripted(0))
    # resume with more epochs is refused (config differs), so resume the same config after a
    # simulated crash: rewrite the checkpoint as if only epoch 1 had finished
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["best"] == {"epoch": 1, "val_loss": 0.2}
    res = fit(Tiny(), obj, TrainConfig(epochs=2, lr=0.05), tmp_path, "cpu", False,
              validate=scripted(2))  # already complete: nothing runs, the best is kept
    assert res.best_epoch == 1


def test_validate_without_val_loss_is_refused(tmp_path):
    with pytest.raises(KeyError, match="val_loss"):
        fit(Tiny(), _objective(_cache()), TrainConfig(epochs=1), tmp_path, "cpu", False,
            validate=lambda m: {"acc": 1.0})


def test_batch_hard_only_objective_needs_no_classifier():
    cache = _cache(n_ids=4, per_id=4)
    obj = IdentityObjective(cache, BatchAugment(erasing_p=0.0), sampler="pk", num_identities=2,
                            num_instances=2, id_weight=0.0, triplet_weight=1.0)

    class NoClassifier(Tiny):
        def forward(self, x):
            out = super().forward(x)
            return ReIDOutput(None, out.feat, out.feat, {})

    batch = obj.epoch_batches(np.random.default_rng(0))[0]
    losses = obj.step(NoClassifier(), batch, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert set(losses) == {"loss_triplet", "loss"} and torch.equal(losses["loss"],
                                                                   losses["loss_triplet"])
    with pytest.raises(ValueError, match="id_weight > 0 or triplet_weight > 0"):
        IdentityObjective(cache, id_weight=0.0, triplet_weight=0.0)


def test_triplets_per_epoch_limits_the_anchors():
    cache = _cache(n_ids=4, per_id=6)
    obj = TripletObjective(cache, batch_size=4, triplets_per_epoch=8)
    batches = obj.epoch_batches(np.random.default_rng(0))
    trip = np.concatenate(batches)
    assert trip.shape == (8, 3) and len(set(trip[:, 0])) == 8  # 8 distinct anchors
    pids = cache.pids.numpy()
    assert (pids[trip[:, 0]] == pids[trip[:, 1]]).all()
    assert (pids[trip[:, 0]] != pids[trip[:, 2]]).all()


def test_validation_losses_are_fixed_by_the_seed():
    cache = _cache(n_ids=4, per_id=4)
    model = Tiny().eval()
    trip = TripletObjective(cache, margin=0.3)
    hard = IdentityObjective(cache, sampler="pk", num_identities=2, num_instances=2,
                             triplet_weight=1.0)
    with torch.no_grad():
        for obj in (trip, hard):
            a = obj.validation_losses(model, cache, torch.device("cpu"), seed=3)["val_loss"]
            b = obj.validation_losses(model, cache, torch.device("cpu"), seed=3)["val_loss"]
            assert a == b and np.isfinite(a) and a >= 0
    with pytest.raises(ValueError, match="triplet_weight > 0"):
        IdentityObjective(cache).validation_losses(model, cache, torch.device("cpu"))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_optimizer_uses_the_foreach_update_with_the_same_weights(optimizer):
    """build_optimizer's multi-tensor update (adopted for speed, issue 18) must train to the very
    same weights as torch's per-parameter loop."""
    from reidnb.train.engine import build_optimizer

    cfg = TrainConfig(optimizer=optimizer, lr=0.05, momentum=0.9, weight_decay=5e-4)

    def train(foreach: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                              nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
        opt = build_optimizer(model, cfg)
        assert all(g["foreach"] for g in opt.param_groups)
        for g in opt.param_groups:
            g["foreach"] = foreach
        gen = torch.Generator().manual_seed(1)
        for _ in range(4):
            x = torch.randn(6, 3, 8, 8, generator=gen)
            y = torch.randint(0, 5, (6,), generator=gen)
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return [p.detach().clone() for p in model.parameters()]

    for a, b in zip(train(True), train(False)):
        assert torch.equal(a, b)
