"""The uniformity attentive Siamese network of jeong2020 (Jeong et al. 2020, Sensors 20(18):5264,
doi:10.3390/s20185264): its attention block and its model.

One branch of the Siamese network (the branches share all weights), Table 1 and Fig. 4:

    stem -> layer1 -> ... -> stage -> [attention module, Eq. 3] -> ... -> layer4 = f
    f -> 1x1 conv -> sigmoid -> s (1 x H x W, the attention score of Sec. 3.3, for Eq. 8)
    f -> GAP -> Linear(C, 512) -> BN = z -> Linear(512, identities) = logits (Eqs. 4-5)
    verify(z1, z2) = Linear(512, 2)(z1 * z2) = pair logits (L_ver, Eqs. 6-7)

The attention module (AM, Sec. 3.1, Table 1, Figs. 3-4) is the block `UniformityAttention`
(registered as "jeong2020_uniformity"; the contract is reidnb/models/attention.py). It reads the
stage's output F (C x H x W) with two branches:

- `ChannelAttention` (Sec. 3.1.2, Eqs. 1-2): global average pooling, FC C -> C/r, ReLU,
  FC C/r -> C, sigmoid; A_ch is C x 1 x 1 (r = 16 in the paper).
- `EncoderDecoderAttention` (Sec. 3.1.1, Table 1): an hourglass of unpadded convolutions
  (3x3, 3x3, 2x2, 256 channels, each with ReLU) and stride-1 transposed convolutions (2x2, 3x3
  with ReLU, then 3x3 to one channel); A_ed is 1 x H x W, a soft mask.
- and returns F_hat = (F * A_ch) * A_ed (Eq. 3), keeping A_ch and A_ed in `maps`.

Table 5's rows are one model with switches: `attention=False` is the baseline (the same network
without the module; its identification and verification losses are the objective's), and the
uniformity loss is an objective weight (`SiameseObjective.unif_weight`).

Choices where the paper is silent or ambiguous (each one argument). The module:
- Both branches read F (Table 1 multiplies layer3 by the channel vector, then by the decoder map;
  nothing says the decoder reads the channel-weighted map).
- The decoder map goes through a sigmoid (`mask_activation="sigmoid"`): the text calls it a soft
  mask and Table 1 lists no activation after the last deconvolution; "relu" and "identity" are
  offered for comparison.
- `padding=False` is the paper (unpadded, so the map must be large enough: each k x k layer
  removes k - 1 rows and columns, 5 in all for (3, 3, 2)). `padding=True` keeps every layer at
  H x W ("same" padding), so the block also works on the small maps of a 128 x 64 input; there
  the decoder layers are stride-1 convolutions, which is what a stride-1 transposed convolution
  cropped back to its input size is (the kernel flipped).
- `encoder_kernels`: the paper's (3, 3, 2); after layer4 it drops one encoder convolution
  (Sec. 4.4.2). On its 8 x 4 map only dropping a 3x3 leaves a non-empty map, giving (3, 2). The
  decoder mirrors the encoder. `fitting_encoder_convs` generalises that rule to any map: the
  most of the paper's convolutions that leave the encoded map non-empty (3 on 16 x 8, as the
  paper after layer3; 2 on 8 x 4, as the paper after layer4; 1 on 4 x 2).
- `module_init`: the paper inserts a randomly initialised module into an ImageNet trunk.
  "default" is that (PyTorch's initialisation): both sigmoids start near 0.5, so the module
  first hands layer4 about a quarter of F, times a random mask. "identity" starts the module
  close to the identity, so a trained trunk keeps working when it is inserted: the last layer of
  each branch has zero weights and bias `IDENTITY_BIAS`, so A_ch = A_ed = sigmoid(3) = 0.95
  everywhere and F_hat = 0.91 F at the first step, while every weight still gets a gradient
  (the last layers' through their inputs, the others once those are non-zero). Needs the
  sigmoid mask.

The model:
- `last_stride=2`: Table 1 has layer4 at 8 x 4 for a 256 x 128 input.
- `classifier_hidden=None`: Sec. 3.1.3 speaks of a two-layer identification classifier and
  Sec. 4.2 of a 512-d linear block followed by one fully connected layer; we read the two layers
  as Linear(C, 512) -> Linear(512, identities). An int adds a hidden layer with ReLU.
- `embed_bn=True`: Sec. 4.2 appends "linear blocks" of size 512; in the verification-
  identification code the paper builds on ([34]) such a block is Linear + BatchNorm. No ReLU
  (Sec. 3.4). Without the BN, z1 * z2 grows quadratically with z's scale and training from
  random weights at lr 0.04 diverged within two epochs on SynthReID.
- `score_activation="sigmoid"`: the paper does not say whether s is squashed. Raw scores let
  the network change the L1 distances of Eq. 8 by rescaling alone; on SynthReID from random
  weights they grew, and the trunk's output died (all scores equal, zero gradient) within the
  first epoch. "identity" keeps them raw.
- Retrieval uses z (Sec. 4.2: the test phase keeps only the embedding network), so `feat` and
  `feat_bn` are the same tensor (z is already batch-normalised when `embed_bn`).
- `verify` multiplies z1 and z2 elementwise, so it is symmetric: verify(a, b) == verify(b, a).
- `encoder_convs=None` picks the paper's setting: 3 after layer1-3, 2 after layer4 (Sec. 4.4.2).
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import AttentionBlock
from .backbones import build_backbone
from .heads import ReIDOutput

# --- the attention module (Sec. 3.1) ----------------------------------------------------------

PAPER_KERNELS: tuple[int, ...] = (3, 3, 2)   # Table 1's encoder: 3x3, 3x3, 2x2
MASK_ACTIVATIONS = ("sigmoid", "relu", "identity")
MODULE_INITS = ("default", "identity")
IDENTITY_BIAS = 3.0   # sigmoid(3) = 0.953: the near-identity start of `module_init="identity"`


def encoder_kernels_for(num_convs: int) -> tuple[int, ...]:
    """The paper's encoder kernels with the first ones dropped: 3 -> (3, 3, 2), 2 -> (3, 2)."""
    if not 1 <= num_convs <= len(PAPER_KERNELS):
        raise ValueError(f"encoder_convs must be 1..{len(PAPER_KERNELS)}, got {num_convs}")
    return PAPER_KERNELS[len(PAPER_KERNELS) - num_convs:]


def fitting_encoder_convs(height: int, width: int) -> int:
    """The most of the paper's encoder convolutions (dropping the first ones, as Sec. 4.4.2 does
    after layer4) whose unpadded encoder leaves a `height` x `width` map non-empty: 3 for the
    paper's layer3 map (16 x 8), 2 for its layer4 map (8 x 4). ValueError when not even one fits."""
    for n in range(len(PAPER_KERNELS), 0, -1):
        sizes = hourglass_sizes(height, width, encoder_kernels_for(n), padding=False)
        if min(min(s) for s in sizes[:n]) >= 1:
            return n
    raise ValueError(f"fitting_encoder_convs: a {height}x{width} map is too small for even one "
                     f"unpadded {PAPER_KERNELS[-1]}x{PAPER_KERNELS[-1]} convolution")


def hourglass_sizes(height: int, width: int, kernels: tuple[int, ...], padding: bool
                    ) -> list[tuple[int, int]]:
    """Map sizes after each encoder layer, then after each decoder layer (stride 1 throughout)."""
    sizes, h, w = [], height, width
    for k in kernels:
        h, w = (h, w) if padding else (h - k + 1, w - k + 1)
        sizes.append((h, w))
    for k in reversed(kernels):
        h, w = (h, w) if padding else (h + k - 1, w + k - 1)
        sizes.append((h, w))
    return sizes


def _same_conv(in_channels: int, out_channels: int, kernel: int) -> nn.Module:
    """A stride-1 convolution whose output keeps the input's size; an even kernel gets the
    extra row and column of zeros at the bottom and right."""
    if kernel % 2:
        return nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)
    before, after = (kernel - 1) // 2, kernel - 1 - (kernel - 1) // 2
    return nn.Sequential(nn.ZeroPad2d((before, after, before, after)),
                         nn.Conv2d(in_channels, out_channels, kernel))


class ChannelAttention(nn.Module):
    """Branch of the module: A_ch = sigmoid(W2 relu(W1 GAP(F))) (Eqs. 1-2); returns the
    (B, C, 1, 1) weights (not a block: its output is not F's shape)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        if channels < reduction:
            raise ValueError(f"ChannelAttention: channels={channels} < reduction={reduction}")
        self.reduce = nn.Linear(channels, channels // reduction)
        self.expand = nn.Linear(channels // reduction, channels)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        x = fmap.mean(dim=(2, 3))
        weights = torch.sigmoid(self.expand(torch.relu(self.reduce(x))))
        return weights[:, :, None, None]


class EncoderDecoderAttention(nn.Module):
    """Branch of the module: Table 1's hourglass of encoder and decoder; returns the
    (B, 1, H, W) mask A_ed (not a block: its output has one channel).

    `stage` only names the block in the error raised when an unpadded hourglass does not fit
    the map.
    """

    def __init__(self, in_channels: int, mid_channels: int = 256,
                 encoder_kernels: tuple[int, ...] = PAPER_KERNELS, padding: bool = False,
                 mask_activation: str = "sigmoid", stage: str = "?", stride: int | None = None):
        super().__init__()
        if mask_activation not in MASK_ACTIVATIONS:
            raise ValueError(f"mask_activation={mask_activation!r}; choose from {MASK_ACTIVATIONS}")
        self.kernels = tuple(int(k) for k in encoder_kernels)
        self.padding = padding
        self.mask_activation = mask_activation
        self.stage = stage
        self.stride = stride
        enc: list[nn.Module] = []
        for i, k in enumerate(self.kernels):
            c_in = in_channels if i == 0 else mid_channels
            enc += [_same_conv(c_in, mid_channels, k) if padding
                    else nn.Conv2d(c_in, mid_channels, k), nn.ReLU(inplace=True)]
        dec: list[nn.Module] = []
        for i, k in enumerate(reversed(self.kernels)):
            last = i == len(self.kernels) - 1
            out = 1 if last else mid_channels
            if padding:
                dec.append(_same_conv(mid_channels, out, k))
            else:
                dec.append(nn.ConvTranspose2d(mid_channels, out, k))
            if not last:
                dec.append(nn.ReLU(inplace=True))
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)

    def last_conv(self) -> nn.Module:
        """The decoder's last convolution (the one that writes the mask's single channel)."""
        last = self.decoder[-1]
        return last[-1] if isinstance(last, nn.Sequential) else last

    def check_fits(self, height: int, width: int) -> None:
        """Raise ValueError (naming stage, map size and fixes) if the unpadded encoder empties it."""
        if self.padding:
            return
        sizes = hourglass_sizes(height, width, self.kernels, padding=False)
        encoded = sizes[:len(self.kernels)]
        if min(min(s) for s in encoded) >= 1:
            return
        need = 1 + sum(k - 1 for k in self.kernels)
        path = " -> ".join(f"{h}x{w}" for h, w in [(height, width)] + encoded)
        hint = ""
        if self.stride:
            hint = (f" (an input of at least {need * self.stride}x{need * self.stride} pixels "
                    f"in each dimension at stride {self.stride})")
        raise ValueError(
            f"EncoderDecoderAttention after {self.stage}: the {height}x{width} map is too small "
            f"for unpadded convolutions with kernels {self.kernels} ({path}); each side must be "
            f">= {need}{hint}. Use a larger input, encoder_padding=True, or fewer encoder_convs.")

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        self.check_fits(fmap.shape[2], fmap.shape[3])
        mask = self.decoder(self.encoder(fmap))
        if self.mask_activation == "sigmoid":
            return torch.sigmoid(mask)
        if self.mask_activation == "relu":
            return torch.relu(mask)
        return mask


class UniformityAttention(AttentionBlock):
    """jeong2020's attention module, a block: F_hat = (F * A_ch) * A_ed (Eq. 3).

    `forward(F)` returns F_hat (F's shape) and keeps `maps = {"channel_att": A_ch (B,C,1,1),
    "ed_att": A_ed (B,1,H,W)}`. `stage` and `stride` only word the error of a map too small
    for the unpadded encoder.
    """

    def __init__(self, channels: int, *, reduction: int = 16, mid_channels: int = 256,
                 encoder_kernels: tuple[int, ...] = PAPER_KERNELS, padding: bool = False,
                 mask_activation: str = "sigmoid", stage: str = "?", stride: int | None = None,
                 init: str = "default"):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.encoder_decoder = EncoderDecoderAttention(channels, mid_channels, encoder_kernels,
                                                       padding, mask_activation, stage, stride)
        if init not in MODULE_INITS:
            raise ValueError(f"module init={init!r}; choose from {MODULE_INITS}")
        if init == "identity":
            if mask_activation != "sigmoid":
                raise ValueError("module init='identity' needs mask_activation='sigmoid'")
            for last in (self.channel.expand, self.encoder_decoder.last_conv()):
                nn.init.zeros_(last.weight)
                nn.init.constant_(last.bias, IDENTITY_BIAS)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        a_ch = self.channel(fmap)
        a_ed = self.encoder_decoder(fmap)
        self.keep_maps(channel_att=a_ch, ed_att=a_ed)
        return (fmap * a_ch) * a_ed


#: This paper's attention blocks by name, merged into `reidnb.models.ATTENTION_BLOCKS`.
ATTENTION_BLOCKS = {"jeong2020_uniformity": UniformityAttention}


# --- the model (Table 1, Fig. 4) --------------------------------------------------------------


class Jeong2020(nn.Module):
    """Trunk with the attention module after `stage`; returns `ReIDOutput` in train and eval.

    extras: "fmap" (layer4 output f), "score" (s, B x 1 x H x W), and with attention on
    "channel_att" (B x C x 1 x 1) and "ed_att" (B x 1 x h x w at the module's stage), the
    module's `maps` (detached).
    """

    def __init__(self, num_classes: int, backbone: str = "resnet50", pretrained="auto",
                 last_stride: int = 2, attention: bool = True, stage: str = "layer3",
                 reduction: int = 16, mid_channels: int = 256, encoder_convs: int | None = None,
                 encoder_padding: bool = False, mask_activation: str = "sigmoid",
                 score_activation: str = "sigmoid", embed_dim: int = 512, embed_bn: bool = True,
                 classifier_hidden: int | None = None, module_init: str = "default"):
        super().__init__()
        self.backbone = build_backbone(backbone, pretrained=pretrained, last_stride=last_stride)
        if stage not in self.backbone.stage_names:
            raise ValueError(f"stage={stage!r}; {backbone} has {self.backbone.stage_names}")
        self.stage = stage
        self.attention = None
        if attention:
            if encoder_convs is None:
                encoder_convs = 2 if stage == "layer4" else 3
            info = next(f for f in self.backbone.feature_info if f["module"] == stage)
            self.attention = UniformityAttention(
                info["num_chs"], reduction=reduction, mid_channels=mid_channels,
                encoder_kernels=encoder_kernels_for(encoder_convs), padding=encoder_padding,
                mask_activation=mask_activation, stage=stage, stride=info["reduction"],
                init=module_init)
        channels = self.backbone.out_channels
        if score_activation not in ("sigmoid", "identity"):
            raise ValueError(f"score_activation={score_activation!r}; choose 'sigmoid' or "
                             "'identity'")
        self.score = nn.Sequential(nn.Conv2d(channels, 1, kernel_size=1),
                                   nn.Sigmoid() if score_activation == "sigmoid" else nn.Identity())
        self.embed = nn.Sequential(nn.Linear(channels, embed_dim),
                                   nn.BatchNorm1d(embed_dim) if embed_bn else nn.Identity())
        if classifier_hidden:
            self.classifier = nn.Sequential(nn.Linear(embed_dim, classifier_hidden),
                                            nn.ReLU(inplace=True),
                                            nn.Linear(classifier_hidden, num_classes))
        else:
            self.classifier = nn.Linear(embed_dim, num_classes)
        self.verifier = nn.Linear(embed_dim, 2)
        self.feat_dim = embed_dim

    @property
    def weights_init(self) -> dict:
        return self.backbone.weights.as_dict()

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """layer4's output f and the attention maps (empty without the module); the trunk
        runs the module after `stage`."""
        if self.attention is None:
            return self.backbone(x), {}
        fmap = self.backbone(x, hooks={self.stage: self.attention})
        return fmap, dict(self.attention.maps)

    def forward(self, x: torch.Tensor,
                pairs: tuple[torch.Tensor, torch.Tensor] | None = None) -> ReIDOutput:
        """`pairs` (two index tensors into the batch) adds extras["pair_logits"], the
        verification logits of those image pairs; computing them inside forward keeps the
        verification head trainable under DistributedDataParallel."""
        fmap, maps = self.forward_features(x)
        z = self.embed(fmap.mean(dim=(2, 3)))
        logits = self.classifier(z)
        extras = {"fmap": fmap, "score": self.score(fmap), **maps}
        if pairs is not None:
            extras["pair_logits"] = self.verify(z[pairs[0]], z[pairs[1]])
        return ReIDOutput(logits, z, z, extras)

    def verify(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """Same/different logits (B, 2) of embedding pairs (Eq. 6); index 1 means "same"."""
        return self.verifier(z1 * z2)


@torch.no_grad()
def score_distances(model: nn.Module, images: torch.Tensor, pids: torch.Tensor,
                    camids: torch.Tensor, batch_size: int = 128) -> dict[str, float]:
    """Mean L1 distance between the attention scores s (Sec. 3.3) of image pairs: same person
    seen by different cameras, and different people. Eq. 8 (in the text's form) should make the
    first small against the second; `images` are normalised (N,3,H,W). The ratio is NaN when
    every image gets the same score map (a collapsed score head)."""
    model.eval()
    scores = torch.cat([model(images[i:i + batch_size]).extras["score"].flatten(1).float()
                        for i in range(0, len(images), batch_size)])
    dist = torch.cdist(scores, scores, p=1)
    same = pids[:, None] == pids[None, :]
    cross_cam = camids[:, None] != camids[None, :]
    upper = torch.ones_like(same).triu(1)
    pos, neg = same & cross_cam & upper, ~same & upper
    if not pos.any() or not neg.any():
        raise ValueError("score_distances needs a person seen by two cameras and two people")
    d_pos, d_neg = float(dist[pos].mean()), float(dist[neg].mean())
    ratio = d_pos / d_neg if d_neg > 0 else float("nan")
    return {"same person": d_pos, "different people": d_neg, "ratio": ratio}
