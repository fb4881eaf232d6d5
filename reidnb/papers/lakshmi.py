"""lakshmi: a hands-on PyTorch Siamese tutorial (anchor / positive / negative triplets, a
train/validation loop with a best-model checkpoint, retrieval), and the runs that put it beside
batch-hard mining and the IDE baseline. Chapter 3.
"""

from __future__ import annotations

from ..experiments import SYNTH_SIZE, Experiment, check_profile
from ..train.engine import TrainConfig
from .ide import ide_experiment

PAPER = "lakshmi"
CHAPTER = "03_lakshmi_siamese_tutorial"


def lakshmi_experiments(profile: str = "synthetic", dataset: str | None = None, seed: int = 0,
                        margin: float = 0.3) -> dict[str, Experiment]:
    """The Siamese tutorial's APN training and the comparison runs (lakshmi; chapter 3).

    - "random_triplet": the tutorial: an embedding network trained on anchor / positive / negative
      triplets drawn at random (positive from another camera when one exists), 10 % of the training
      identities held out, the epoch with the lowest validation loss kept.
    - "batch_hard": the same network, P x K batches and batch-hard mining (Hermans et al. 2017),
      the same margin, validation and number of training images seen.
    - "ide": chapter 2's identity-classification baseline (the same configuration, so its cached
      run is reused).
    The tutorial gives no optimizer for this part; Adam at 3e-4 (Hermans et al. 2017) is our choice.
    """
    check_profile(profile)
    paper = profile == "paper"
    smoke = profile == "smoke"
    base = Experiment(
        name="lakshmi_random_triplet", paper="lakshmi", profile=profile,
        dataset=dataset or ("market1501" if paper else "synthreid"),
        synth_size=SYNTH_SIZE.get(profile, "default"),
        height=256 if paper else 128, width=128 if paper else 64, model="embedding",
        model_kwargs={"backbone": "resnet50" if paper else "resnet18",
                      "last_stride": 1 if paper else 2, "embed_dim": 128, "pretrained": "auto"},
        objective="triplet",
        objective_kwargs={"batch_size": 32, "margin": margin, "cross_camera": True,
                          "triplets_per_epoch": 64 if smoke else (None if paper else 1000)},
        augment={"flip_p": 0.5, "pad": 10 if paper else 4, "erasing_p": 0.0 if paper else 0.3},
        train=TrainConfig(epochs=2 if smoke else (60 if paper else 6), optimizer="adam", lr=3e-4,
                          lr_steps=(40,) if paper else (), seed=seed),
        val_fraction=0.2 if smoke else 0.1, select="best")
    # Batch-hard sees as many training images as the random-triplet run: P x K = 16 x 4 images a
    # batch, one batch per 16 identities, so it needs more (shorter) epochs.
    hard_epochs = 3 if smoke else (120 if paper else 25)
    hard = base.replace(name="lakshmi_batch_hard", objective="identity",
                        train={"epochs": hard_epochs,
                                                      "lr_steps": (80,) if paper else ()})
    hard.objective_kwargs = {"sampler": "pk", "num_identities": 16 if not smoke else 4,
                             "num_instances": 4, "id_weight": 0.0, "triplet_weight": 1.0,
                             "triplet_margin": margin}
    if profile == "gpu":
        base, hard = _lakshmi_gpu(base, hard, margin)
    return {"random_triplet": base, "batch_hard": hard,
            "ide": ide_experiment(profile, dataset, seed=seed)}


def _lakshmi_gpu(base: Experiment, hard: Experiment, margin: float
                 ) -> tuple[Experiment, Experiment]:
    """The `gpu` profile of the lakshmi runs: ResNet-50 (last stride 1) at 256x128 on the large
    SynthReID, the paper profile's schedule shortened to fit one GPU.

    Random triplets: 6 epochs of 12,000 triplets (216k images seen), lr step after 4. Batch-hard:
    the same number of images: 675 training identities (750 less 10 % held out) give 42 batches
    of 16 x 4 = 2,688 images an epoch, so 80 epochs (215k images), lr step after 54.
    """
    size = {"synth_size": "large", "height": 256, "width": 128}
    model = {"backbone": "resnet50", "last_stride": 1}
    base = base.replace(**size, model_kwargs=model, augment={"pad": 10, "erasing_p": 0.0},
                        objective_kwargs={"triplets_per_epoch": 12_000},
                        train={"epochs": 6, "lr_steps": (4,), "channels_last": True})
    hard = hard.replace(**size, model_kwargs=model, augment={"pad": 10, "erasing_p": 0.0},
                        objective_kwargs={"num_identities": 16, "triplet_margin": margin},
                        train={"epochs": 80, "lr_steps": (54,), "channels_last": True})
    return base, hard


def _one(key: str):
    def factory(profile: str = "synthetic", dataset: str | None = None, seed: int = 0
                ) -> Experiment:
        return lakshmi_experiments(profile, dataset, seed)[key]
    factory.__name__ = f"lakshmi_{key}"
    factory.__doc__ = f"lakshmi_experiments(...)[{key!r}]"
    return factory


EXPERIMENTS = {"lakshmi_random_triplet": _one("random_triplet"),
               "lakshmi_batch_hard": _one("batch_hard")}
CLAIM_LINKS: dict[str, list[tuple[str, str, str]]] = {}   # a tutorial: no result table


def plan(profile: str = "synthetic", dataset: str | None = None) -> dict[str, list[Experiment]]:
    """Every run chapter 3 needs: the two triplet runs and the IDE baseline, first seed."""
    runs = lakshmi_experiments(profile, dataset)
    return {"triplets": [runs["random_triplet"], runs["batch_hard"]], "ide": [runs["ide"]]}
