"""A network small enough to train in seconds on the smoke data set, registered as "test_tiny"
(one conv, global pooling, the BN-neck classifier): for tests of the engine and the run cache."""

import torch
from torch import nn

from reidnb.models import list_models, register_model
from reidnb.models.heads import BNNeckClassifier, ReIDOutput


class TinyNet(nn.Module):
    def __init__(self, num_classes, **_):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 5, stride=4)
        self.head = BNNeckClassifier(16, num_classes, bnneck=True)
        self.weights_init = {"source": "random", "detail": "test"}

    def forward(self, x):
        f = torch.relu(self.conv(x)).mean((2, 3))
        logits, fb = self.head(f)
        return ReIDOutput(logits, f, fb, {})


if "test_tiny" not in list_models():
    register_model("test_tiny", TinyNet)


def random_cache(n_ids=6, per_id=4, height=16, width=8, seed=0):
    """An ImageCache of random uint8 images: `per_id` images of each of `n_ids` identities,
    cameras alternating 0/1."""
    from reidnb.data.cache import ImageCache

    g = torch.Generator().manual_seed(seed)
    pids = torch.arange(n_ids).repeat_interleave(per_id)
    imgs = torch.randint(0, 256, (len(pids), 3, height, width), generator=g, dtype=torch.uint8)
    camids = torch.arange(len(pids)) % 2
    return ImageCache(imgs, pids, camids, [f"img{i}" for i in range(len(pids))])
