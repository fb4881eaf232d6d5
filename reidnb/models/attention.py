"""Attention blocks of jeong2020 (Jeong et al. 2020, Sensors 20(18):5264, doi:10.3390/s20185264).

The attention module (AM, Sec. 3.1, Table 1, Figs. 3-4) sits after one trunk stage and has two
branches that both read the stage's output F (C x H x W):

- `ChannelAttention` (Sec. 3.1.2, Eqs. 1-2): global average pooling, FC C -> C/r, ReLU,
  FC C/r -> C, sigmoid; A_ch is C x 1 x 1 (r = 16 in the paper).
- `EncoderDecoderAttention` (Sec. 3.1.1, Table 1): an hourglass of unpadded convolutions
  (3x3, 3x3, 2x2, 256 channels, each with ReLU) and stride-1 transposed convolutions (2x2, 3x3
  with ReLU, then 3x3 to one channel); A_ed is 1 x H x W, a soft mask.
- `UniformityAttention` combines them as F_hat = (F * A_ch) * A_ed (Eq. 3).

Choices where the paper is silent or ambiguous (each one argument):
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
  decoder mirrors the encoder.
"""

from __future__ import annotations

import torch
from torch import nn

PAPER_KERNELS: tuple[int, ...] = (3, 3, 2)
MASK_ACTIVATIONS = ("sigmoid", "relu", "identity")


def encoder_kernels_for(num_convs: int) -> tuple[int, ...]:
    """The paper's encoder kernels with the first ones dropped: 3 -> (3, 3, 2), 2 -> (3, 2)."""
    if not 1 <= num_convs <= len(PAPER_KERNELS):
        raise ValueError(f"encoder_convs must be 1..{len(PAPER_KERNELS)}, got {num_convs}")
    return PAPER_KERNELS[len(PAPER_KERNELS) - num_convs:]


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
    """A_ch = sigmoid(W2 relu(W1 GAP(F))) (Eqs. 1-2); returns the (B, C, 1, 1) weights."""

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
    """Hourglass of Table 1's encoder and decoder; returns the (B, 1, H, W) mask A_ed.

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


class UniformityAttention(nn.Module):
    """jeong2020's attention module: F_hat = (F * A_ch) * A_ed (Eq. 3).

    `forward(F)` returns `(F_hat, {"channel_att": A_ch (B,C,1,1), "ed_att": A_ed (B,1,H,W)})`;
    F_hat has F's shape. The maps are also kept in `last_maps` for plots.
    """

    def __init__(self, channels: int, reduction: int = 16, mid_channels: int = 256,
                 encoder_kernels: tuple[int, ...] = PAPER_KERNELS, padding: bool = False,
                 mask_activation: str = "sigmoid", stage: str = "?", stride: int | None = None):
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.encoder_decoder = EncoderDecoderAttention(channels, mid_channels, encoder_kernels,
                                                       padding, mask_activation, stage, stride)
        self.last_maps: dict[str, torch.Tensor] = {}

    def forward(self, fmap: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        a_ch = self.channel(fmap)
        a_ed = self.encoder_decoder(fmap)
        maps = {"channel_att": a_ch, "ed_att": a_ed}
        self.last_maps = {k: v.detach() for k, v in maps.items()}
        return (fmap * a_ch) * a_ed, maps
