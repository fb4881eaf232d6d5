import torch
import torchvision.transforms.v2.functional as TF

from reidnb.data.transforms import (IMAGENET_MEAN, IMAGENET_STD, BatchAugment, erase, hflip,
                                    normalize, pad_crop)


def _imgs(b=3, h=8, w=6):
    return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_hflip_matches_per_image_flip():
    x = _imgs()
    flags = torch.tensor([True, False, True])
    out = hflip(x, flags)
    for i in range(3):
        ref = TF.horizontal_flip(x[i]) if flags[i] else x[i]
        assert torch.equal(out[i], ref)


def test_pad_crop_matches_pad_then_crop():
    x = _imgs()
    offsets = torch.tensor([[0, 0], [2, 1], [4, 4]])
    out = pad_crop(x, 2, offsets)
    for i in range(3):
        ref = TF.crop(TF.pad(x[i], [2, 2, 2, 2]), int(offsets[i, 0]), int(offsets[i, 1]), 8, 6)
        assert torch.equal(out[i], ref)


def test_erase_fills_only_the_box():
    x = normalize(_imgs())
    boxes = torch.tensor([[1, 2, 3, 2], [0, 0, 0, 0], [0, 0, 8, 6]])
    out = erase(x, boxes, 0.0)
    ref0 = TF.erase(x[0], 1, 2, 3, 2, torch.tensor(0.0))
    assert torch.equal(out[0], ref0)
    assert torch.equal(out[1], x[1])
    assert (out[2] == 0).all()


def test_normalize_uses_imagenet_stats():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize(x)
    for c in range(3):
        assert torch.allclose(out[0, c], torch.tensor((1 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]))


def test_batch_augment_repeatable_with_same_generator():
    x = _imgs(8, 16, 8)
    aug = BatchAugment(flip_p=0.5, pad=2, erasing_p=0.5)
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (8, 3, 16, 8) and a.dtype == torch.float32
