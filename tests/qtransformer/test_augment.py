"""DrQ random shift: shapes, the shift itself against a hand-made case, shared across frames, seeded."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from qtransformer.augment import augment_batch, random_shift
from tests.qtransformer.helpers import random_batch, tiny_config


def _ramp(B: int = 3, V: int = 2, H: int = 6, W: int = 5) -> torch.Tensor:
    """Pixel (b, v, i, j) = 10 i + j in every channel, so a value tells where it came from."""
    i = torch.arange(H)[:, None] * 10 + torch.arange(W)[None, :]
    return i[None, None, :, :, None].expand(B, V, H, W, 3).to(torch.uint8).clone()


def test_shift_matches_replicate_pad_and_crop() -> None:
    x = _ramp(B=1, V=1, H=4, W=4)
    g = torch.Generator().manual_seed(0)
    offset = torch.randint(0, 2 * 2 + 1, (1, 2), generator=torch.Generator().manual_seed(0))[0] - 2
    out = random_shift(x, 2, g)
    # By hand: pad by replicating the border, crop 4x4 at (2 + dy, 2 + dx).
    padded = torch.nn.functional.pad(x[0, 0, :, :, 0].float()[None, None], (2, 2, 2, 2), mode="replicate")[
        0, 0
    ]
    dy, dx = int(offset[0]), int(offset[1])
    want = padded[2 + dy : 6 + dy, 2 + dx : 6 + dx].to(torch.uint8)
    assert torch.equal(out[0, 0, :, :, 0], want)


def test_shapes_dtype_bounds_and_one_shift_per_sample() -> None:
    x = _ramp()
    out = random_shift(x, 2, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == torch.uint8
    rows, cols = out[..., 0].long() // 10, out[..., 0].long() % 10
    for b in range(3):
        dy = rows[b, 0] - torch.arange(6)[:, None]
        dx = cols[b, 0] - torch.arange(5)[None, :]
        assert dy.abs().max() <= 2 and dx.abs().max() <= 2
        assert torch.equal(out[b, 0], out[b, 1])  # the frames of a sample move together
    assert torch.equal(random_shift(x, 0), x)
    with pytest.raises(ValueError, match="pad"):
        random_shift(x, -1)
    with pytest.raises(ValueError, match="B, V, H, W, C"):
        random_shift(x[0], 2)


def test_seeded_and_varied() -> None:
    x = _ramp(B=16)
    a = random_shift(x, 4, torch.Generator().manual_seed(7))
    b = random_shift(x, 4, torch.Generator().manual_seed(7))
    c = random_shift(x, 4, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({bytes(a[i].numpy()) for i in range(16)}) > 4  # samples get different shifts


def test_batch_images_and_bootstrap_images_shift_independently() -> None:
    cfg = tiny_config(image_size=16, num_images=2, conv_channels=(8,))
    batch = random_batch(cfg, B=8)
    batch = dataclasses.replace(batch, next_images=batch.images.clone())
    out = augment_batch(batch, 3, torch.Generator().manual_seed(0))
    assert out.images.shape == batch.images.shape and not torch.equal(out.images, batch.images)
    assert not torch.equal(out.images, out.next_images)
    assert torch.equal(out.state, batch.state)
    state_only = random_batch(tiny_config(), B=4)
    assert augment_batch(state_only, 3) is state_only
