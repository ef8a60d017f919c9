"""The batches of an adaptation: random crops of the user's LR images (unpaired) and of the
paired data's HR images with their synthetic LR (paired).

The paired pyramids are made once per image, as training does (``dualsr.data.dataset``): the
whole HR image is degraded (blur, downscale, noise, JPEG) and its bicubic levels made, and a
sample is an aligned crop of every level. A step then costs no resizing.

Each step's batch is drawn from a generator seeded with (seed, step), so an interrupted and
resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..data.pyramid import make_pyramid
from ..errors import DualSRError
from .degradations import Degradation


def _dihedral(patch: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of an H x W x C patch."""
    if k & 4:
        patch = patch.transpose(1, 0, 2)
    return np.ascontiguousarray(np.rot90(patch, k & 3))


def _to_tensor(patches: Sequence[np.ndarray]) -> torch.Tensor:
    """N x 3 x H x W float32 in [0, 255]."""
    return torch.from_numpy(np.stack(patches)).permute(0, 3, 1, 2).float().contiguous()


class BatchSource:
    """Draws the unpaired and paired samples of a step.

    Args:
        lr_images: the user's LR images (uint8 RGB).
        hr_images: HR images of the paired samples: the paired data, or (self-pairs, without
            paired data) the LR images themselves.
        scale: the model's scale.
        degradation: how a paired sample's LR is made from its HR crop.
        n_unpaired, n_paired: samples a step of each kind.
        crop: the LR crop side wanted; smaller images give smaller crops.
        seed: the generator's seed.
    """

    def __init__(
        self,
        lr_images: Sequence[np.ndarray],
        hr_images: Sequence[np.ndarray],
        scale: int,
        degradation: Degradation,
        n_unpaired: int,
        n_paired: int,
        crop: int,
        seed: int = 0,
    ) -> None:
        self.lr_images = list(lr_images)
        self.hr_images = [
            img[: img.shape[0] // scale * scale, : img.shape[1] // scale * scale]
            for img in hr_images
        ]
        self.scale = scale
        self.degradation = degradation
        self.n_unpaired = n_unpaired
        self.n_paired = n_paired
        self.seed = seed
        self.unpaired_crop = min(crop, *(min(i.shape[:2]) for i in self.lr_images))
        self.paired_crop = 0
        if n_paired:
            if not self.hr_images:
                raise DualSRError("paired samples were asked for, but there are no HR images")
            self.paired_crop = min(crop, *(min(i.shape[:2]) // scale for i in self.hr_images))
            if self.paired_crop < 8:
                raise DualSRError(
                    f"the images are too small for paired samples at x{scale}: each needs at "
                    f"least {8 * scale} pixels a side; give larger images or --paired data"
                )
        self.pyramids = (
            [self._pyramid(hr, i) for i, hr in enumerate(self.hr_images)] if n_paired else []
        )
        self._lr_weights = self._weights(self.lr_images)
        self._hr_weights = self._weights(self.hr_images) if self.hr_images else None

    def _pyramid(self, hr: np.ndarray, index: int) -> list[np.ndarray]:
        levels = make_pyramid(hr, self.scale)
        if not self.degradation.is_clean:
            rng = np.random.default_rng([self.seed, index, 7])
            levels[0] = self.degradation.apply(hr, self.scale, rng)
        return levels

    @staticmethod
    def _weights(images: Sequence[np.ndarray]) -> np.ndarray:
        area = np.array([i.shape[0] * i.shape[1] for i in images], dtype=np.float64)
        return area / area.sum()

    def _crop(self, rng: np.random.Generator, images: list, weights: np.ndarray, side: int):
        img = images[int(rng.choice(len(images), p=weights))]
        top = int(rng.integers(0, img.shape[0] - side + 1))
        left = int(rng.integers(0, img.shape[1] - side + 1))
        return _dihedral(img[top : top + side, left : left + side], int(rng.integers(8)))

    def _paired_crop(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Aligned crops of every level of one paired pyramid, the same flip/rotation each."""
        index = int(rng.choice(len(self.pyramids), p=self._hr_weights))
        levels = self.pyramids[index]
        side = self.paired_crop
        lr_h, lr_w = levels[0].shape[:2]
        top = int(rng.integers(0, lr_h - side + 1))
        left = int(rng.integers(0, lr_w - side + 1))
        k = int(rng.integers(8))
        crops = []
        for level in levels:
            f = level.shape[0] // lr_h
            crops.append(
                _dihedral(level[top * f : (top + side) * f, left * f : (left + side) * f], k)
            )
        return crops

    def batch(self, step: int) -> tuple[torch.Tensor | None, list[torch.Tensor] | None]:
        """(unpaired LR crops or None, the paired pyramid ``[LR, ..., HR]`` or None)."""
        rng = np.random.default_rng([self.seed, step])
        unpaired = None
        if self.n_unpaired:
            crops = [
                self._crop(rng, self.lr_images, self._lr_weights, self.unpaired_crop)
                for _ in range(self.n_unpaired)
            ]
            unpaired = _to_tensor(crops)
        paired = None
        if self.n_paired:
            pyramids = [self._paired_crop(rng) for _ in range(self.n_paired)]
            paired = [_to_tensor([p[i] for p in pyramids]) for i in range(len(pyramids[0]))]
        return unpaired, paired
