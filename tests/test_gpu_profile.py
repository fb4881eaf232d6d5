"""The `gpu` profile: ResNet-50 at 256x128 on the large SynthReID; adding it (and the speed-only
TrainConfig fields) must not rename the runs of the other profiles."""

import pytest

from reidnb.data.synthetic import SIZES
from reidnb.experiments import PROFILES, SYNTH_SIZE
from reidnb.papers.ide import ide_experiment
from reidnb.papers.lakshmi import lakshmi_experiments

# Keys taken before the gpu profile and TrainConfig.channels_last/compile were added (synthetic
# generator version 1.0): the cached runs of these configurations must keep their folders.
KEYS_BEFORE = {
    ("smoke", "ide"): "c448fe7b51",
    ("smoke", "random_triplet"): "bf5d1062f9",
    ("smoke", "batch_hard"): "201cd9f216",
    ("synthetic", "ide"): "bc0c8cf9af",
    ("synthetic", "random_triplet"): "3095f7a8fc",
    ("synthetic", "batch_hard"): "11e448194a",
}


@pytest.mark.parametrize("profile,name", sorted(KEYS_BEFORE))
def test_cpu_profile_keys_are_unchanged(profile, name):
    exp = ide_experiment(profile) if name == "ide" else lakshmi_experiments(profile)[name]
    if exp.synth_version != "1.0":
        pytest.skip(f"SynthReID generator is now {exp.synth_version}: every key changed on purpose")
    assert exp.key() == KEYS_BEFORE[(profile, name)]


def test_gpu_profile_is_the_papers_model_on_large_synthreid():
    assert "gpu" in PROFILES and SYNTH_SIZE["gpu"] == "large" and "large" in SIZES
    exps = {"ide": ide_experiment("gpu"), **lakshmi_experiments("gpu")}
    for name, exp in exps.items():
        assert (exp.height, exp.width) == (256, 128), name
        assert exp.model_kwargs["backbone"] == "resnet50", name
        assert exp.model_kwargs["last_stride"] == 1, name
        assert exp.synth_size == "large" and exp.dataset == "synthreid", name
        assert exp.train.channels_last and exp.train.amp, name
        assert exp.key() != ide_experiment("synthetic").key()
    assert exps["ide"].key() == ide_experiment("gpu").key()  # lakshmi reuses chapter 2's run


def test_gpu_lakshmi_runs_see_the_same_number_of_training_images():
    exps = lakshmi_experiments("gpu")
    rt, bh = exps["random_triplet"], exps["batch_hard"]
    ids = SIZES["large"].train_ids
    train_ids = ids - round(rt.val_fraction * ids)
    seen_rt = rt.train.epochs * rt.objective_kwargs["triplets_per_epoch"] * 3
    p, k = bh.objective_kwargs["num_identities"], bh.objective_kwargs["num_instances"]
    seen_bh = bh.train.epochs * (train_ids // p) * p * k
    assert abs(seen_rt - seen_bh) / seen_rt < 0.05
    # the step comes at the same share of each schedule (the paper profile's 40 of 60)
    assert rt.train.lr_steps[0] / rt.train.epochs == pytest.approx(2 / 3)
    assert bh.train.lr_steps[0] / bh.train.epochs == pytest.approx(2 / 3, abs=0.02)
