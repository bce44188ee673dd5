"""Image augmentation for training: DrQ's random shift (Kostrikov et al. 2021; Yarats et al. 2021).

Each image is padded by ``pad`` pixels on every side by repeating its border and cropped back to its
size at a random offset, so the network cannot key its Q-values to exact pixel positions. This is the
augmentation SERL and LeRobot's HIL-SERL train with. The frames of one sample (its cameras and history)
share one shift, so motion between frames is kept; the observation at ``t`` and the bootstrap
observation at ``t + n`` get independent shifts, as in DrQ. Shifts are whole pixels, so uint8 images
stay uint8 and exact.
"""

from __future__ import annotations

import dataclasses

import torch

from qtransformer.batch import Batch


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``images`` (B, V, H, W, C) shifted by up to ``pad`` pixels in each direction, one shift per sample.

    Equivalent to replicate-padding by ``pad`` and cropping (H, W) at an offset drawn uniformly from
    ``[0, 2 * pad]`` in each axis. ``pad == 0`` returns ``images`` unchanged.
    """
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if images.ndim != 5:
        raise ValueError(f"images must be (B, V, H, W, C), got shape {tuple(images.shape)}")
    if pad == 0:
        return images
    B, _, H, W, _ = images.shape
    offsets = torch.randint(0, 2 * pad + 1, (B, 2), generator=generator, device=images.device) - pad
    rows = (torch.arange(H, device=images.device)[None, :] + offsets[:, :1]).clamp_(0, H - 1)  # (B, H)
    cols = (torch.arange(W, device=images.device)[None, :] + offsets[:, 1:]).clamp_(0, W - 1)  # (B, W)
    b = torch.arange(B, device=images.device)[:, None, None]
    x = images.permute(0, 2, 3, 1, 4)  # (B, H, W, V, C)
    return x[b, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2, 4)


def augment_batch(batch: Batch, pad: int, generator: torch.Generator | None = None) -> Batch:
    """``batch`` with its images and bootstrap images randomly shifted (``random_shift``)."""
    if pad == 0 or batch.images is None:
        return batch
    return dataclasses.replace(
        batch,
        images=random_shift(batch.images, pad, generator),
        next_images=None if batch.next_images is None else random_shift(batch.next_images, pad, generator),
    )
