"""The IDE baseline (Zheng et al. 2016, "ID-discriminative embedding"): a trunk, global average
pooling and an identity classifier. It is zheng2019's baseline (Section 3.1.1, Table 3 "IDE");
the other papers' baselines differ (jeong2020's adds a verification loss, li2019's is read as
cross-entropy + triplet, jamal2020 does not name its baseline's losses; see
`reidnb.claims.METHODS`). Chapter 2; chapter 1 trains it and chapters 3-4 reuse it.

The 2016 IDE keeps the ImageNet network's last stride of 2; `last_stride=1` is a later change
(PCB, Sun et al. 2018, kept by the strong baseline of Luo et al. 2019), and so is the BN neck
(`bnneck=True`, Luo et al. 2019). Each profile below chooses its own; chapter 2 prints them from
the configurations.
"""

from __future__ import annotations

from ..experiments import SYNTH_SIZE, Experiment, check_profile, resolve_scope
from ..train.engine import TrainConfig

PAPER = "baseline"
CHAPTER = "02_baseline"


def ide_experiment(profile: str = "synthetic", dataset: str | None = None, seed: int = 0
                   ) -> Experiment:
    """The IDE baseline (Zheng et al. 2016) as each profile runs it: `model_kwargs` holds the
    profile's trunk, last stride (2 as in the 2016 IDE, or the later 1) and BN neck."""
    check_profile(profile)
    if profile == "paper":
        return Experiment(
            name="ide", profile=profile, dataset=dataset or "market1501", height=256, width=128,
            model_kwargs={"backbone": "resnet50", "last_stride": 1, "bnneck": False},
            objective_kwargs={"sampler": "random", "batch_size": 32},
            augment={"flip_p": 0.5, "pad": 10, "erasing_p": 0.0},
            train=TrainConfig(epochs=60, lr=0.05, lr_steps=(40,), warmup_epochs=0, seed=seed))
    if profile == "gpu":
        # The paper's model and image size on the large SynthReID (15,114 training images); its
        # 60 epochs with a step at 40 shortened to 20 with a step at 14 (about 300k images seen),
        # batches of 64 on one GPU, a 2-epoch warm-up for a trunk that may start from scratch.
        return Experiment(
            name="ide", profile=profile, dataset=dataset or "synthreid", synth_size="large",
            height=256, width=128,
            model_kwargs={"backbone": "resnet50", "last_stride": 1, "bnneck": False,
                          "pretrained": "auto"},
            objective_kwargs={"sampler": "random", "batch_size": 64},
            augment={"flip_p": 0.5, "pad": 10, "erasing_p": 0.0},
            train=TrainConfig(epochs=20, lr=0.05, lr_steps=(14,), warmup_epochs=2, seed=seed,
                              channels_last=True))
    smoke = profile == "smoke"
    return Experiment(
        name="ide", profile=profile, dataset=dataset or "synthreid", synth_size=SYNTH_SIZE[profile],
        model_kwargs={"backbone": "resnet18", "last_stride": 2, "bnneck": True,
                      "pretrained": "auto"},
        objective_kwargs={"sampler": "random", "batch_size": 32},
        augment={"flip_p": 0.5, "pad": 4, "erasing_p": 0.3},
        train=TrainConfig(epochs=3 if smoke else 14, lr=0.05, lr_steps=() if smoke else (10,),
                          warmup_epochs=0 if smoke else 1, seed=seed))


def trunk_source(profile: str, dataset: str | None, trunk: str, arch: str) -> str:
    """The run whose trained trunk initialises a paper's model (its `trunk_from`): the profile's
    IDE run for `trunk="ide"` (the CPU profiles' stand-in for ImageNet), "" for
    `trunk="imagenet"`. ValueError for another `trunk`, or when the IDE run's backbone is not
    `arch` (the weights would not fit)."""
    if trunk not in ("imagenet", "ide"):
        raise ValueError(f"trunk={trunk!r}; choose 'imagenet' or 'ide'")
    if trunk == "imagenet":
        return ""
    ide = ide_experiment(profile, dataset)
    if ide.model_kwargs["backbone"] != arch:
        raise ValueError(f"trunk='ide': the {profile} IDE run's trunk is "
                         f"{ide.model_kwargs['backbone']}, this model's {arch}")
    return ide.run_name


def with_trunk(groups: dict[str, list[Experiment]], profile: str, dataset: str | None,
               plan_name: str) -> dict[str, list[Experiment]]:
    """A chapter's plan: `groups` preceded by "trunk", the IDE run whose trunk the groups' runs
    start from (empty when none does). ValueError (naming `plan_name`) when a run starts from a
    trunk that is not the profile's IDE run."""
    trunks = sorted({e.trunk_from for group in groups.values() for e in group if e.trunk_from})
    ide = ide_experiment(profile, dataset)
    trunk = [ide] if ide.run_name in trunks else []
    if len(trunks) > len(trunk):
        raise ValueError(f"{plan_name}: trunks from runs outside the plan: {trunks}")
    return {"trunk": trunk, **groups}


#: name -> factory(profile, dataset=None, seed=0): what `reidnb run NAME` can train
EXPERIMENTS = {"ide": ide_experiment}
#: run name -> the claims-ledger rows (paper, table, method) it reproduces
CLAIM_LINKS = {"ide": [("zheng2019", "3", "IDE baseline")]}


def plan(profile: str = "synthetic", dataset: str | None = None, scope: str | None = None
         ) -> dict[str, list[Experiment]]:
    """Every run chapter 2 needs, in every scope: the IDE baseline, first seed."""
    resolve_scope(profile, scope)
    return {"ide": [ide_experiment(profile, dataset)]}
