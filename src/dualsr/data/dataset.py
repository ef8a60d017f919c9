"""Training data: folders of HR images -> cached image pyramids -> aligned random patches.

Each image is decoded once, cropped (top-left) to a multiple of the scale, and its pyramid
``[LR, 2x, ..., HR]`` made once with :func:`dualsr.data.pyramid.make_pyramid` (or read from
pre-made DIV2K-style LR folders). Pyramids are kept as uint8, in memory or as ``.npy`` files in a
cache directory (memory-mapped, shared by every run and every DataLoader worker) keyed by the
file's path, size, modification time and the scale.

A patch is a random LR crop of ``patch_size // scale`` pixels and the aligned crops of every other
level, with the same flips/transpose applied to each, so a patch's LR level is exactly the crop
of the whole image's LR. Randomness is keyed, not drawn from a global state: the images of step
``s`` and each one's crop and augmentation are pure functions of ``(seed, s)``
(:class:`StepBatchSampler`), so a resumed run sees exactly the batches an uninterrupted run sees.

Images that cannot be decoded, and images smaller than the HR patch, are skipped with one warning
listing them; if no image remains, :class:`~dualsr.errors.ConfigError` says why.
"""

from __future__ import annotations

import hashlib
import os
import signal
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, ImageError
from ..fileio import atomic_write
from ..models.drn import num_phases
from .image_io import list_images, load_rgb_uint8
from .locate import DATA_ENV
from .pyramid import make_pyramid

CACHE_VERSION = 1
_WARN_LIST = 20  # file names listed in a skip warning


# ----------------------------------------------------------------------------------------------
# Finding images
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageRecord:
    """One training image: its HR file and, optionally, pre-made LR files by factor."""

    hr: Path
    lr: tuple[tuple[int, Path], ...] = ()  # ((factor, path), ...), DIV2K layout

    def cache_key(self, scale: int) -> str:
        """A hash of the files' paths, sizes and modification times, and the scale."""
        parts = [f"v{CACHE_VERSION}", f"x{scale}"]
        for path in (self.hr, *(p for _, p in self.lr)):
            st = path.stat()
            parts.append(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}")
        return hashlib.sha1("\n".join(parts).encode()).hexdigest()


def hr_folder(folder: Path) -> Path:
    """``folder``, or its ``HR/`` subfolder when the images live there (benchmark layout)."""
    if not folder.is_dir():
        raise ConfigError(
            f"data folder not found: {folder}; check data.train in the config (a data set name "
            f"such as T91 is looked up in ${DATA_ENV})"
        )
    if not list_images(folder) and (folder / "HR").is_dir():
        return folder / "HR"
    return folder


def find_images(hr: str | Path, lr: str | Path | None, scale: int) -> list[ImageRecord]:
    """Every image of the HR folder ``hr``, with its LR files from ``lr`` (DIV2K layout)."""
    files = list_images(hr_folder(Path(hr)))
    if lr is None:
        return [ImageRecord(f) for f in files]
    lr_root = Path(lr)
    factors = [scale // 2**lvl for lvl in range(num_phases(scale))]
    for k in factors:
        if not (lr_root / f"X{k}").is_dir():
            raise ConfigError(
                f"LR folder {lr_root / f'X{k}'} not found: a x{scale} model needs "
                f"{', '.join(f'X{f}/' for f in factors)} in {lr_root} (DIV2K layout), or omit "
                "`lr` to make the LR pyramid with dualsr.imresize"
            )
    return [ImageRecord(f, tuple((k, _lr_file(lr_root, f, k)) for k in factors)) for f in files]


def _lr_file(root: Path, hr: Path, factor: int) -> Path:
    folder = root / f"X{factor}"
    for name in (f"{hr.stem}x{factor}", hr.stem):
        for suffix in (hr.suffix, ".png"):
            if (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    raise ConfigError(f"no LR image for {hr.name} in {folder} (expected {hr.stem}x{factor}.png)")


# ----------------------------------------------------------------------------------------------
# Pyramids
# ----------------------------------------------------------------------------------------------
def read_pyramid(record: ImageRecord, scale: int) -> list[np.ndarray]:
    """Decode one image and make its uint8 pyramid ``[LR, ..., HR]`` (H x W x 3 each)."""
    hr = load_rgb_uint8(record.hr)
    h, w = hr.shape[0] - hr.shape[0] % scale, hr.shape[1] - hr.shape[1] % scale
    if h == 0 or w == 0:
        raise ImageError(f"{record.hr}: {hr.shape[1]}x{hr.shape[0]} is smaller than the scale")
    hr = np.ascontiguousarray(hr[:h, :w])
    if not record.lr:
        return make_pyramid(hr, scale)
    levels = []
    for factor, path in record.lr:  # X{scale} first: level 0
        lr = load_rgb_uint8(path)
        lh, lw = h // factor, w // factor
        if lr.shape[0] < lh or lr.shape[1] < lw:
            raise ImageError(
                f"{path}: {lr.shape[1]}x{lr.shape[0]} is smaller than {record.hr.name} / {factor}"
                f" ({lw}x{lh})"
            )
        levels.append(np.ascontiguousarray(lr[:lh, :lw]))
    return [*levels, hr]


def default_cache_dir() -> Path:
    """``$DUALSR_CACHE_DIR``, else ``$XDG_CACHE_HOME/dualsr/pyramids`` (``~/.cache`` default)."""
    if os.environ.get("DUALSR_CACHE_DIR"):
        return Path(os.environ["DUALSR_CACHE_DIR"])
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "dualsr" / "pyramids"


class PyramidStore:
    """The uint8 pyramids of N images, in memory or as memory-mapped ``.npy`` files.

    ``levels(i)`` returns image ``i``'s list of H x W x 3 arrays. Disk-backed stores open their
    files lazily in each process (DataLoader workers included) and pickle as file names.
    """

    def __init__(self, items: Sequence[list[np.ndarray] | list[Path]], names: Sequence[str]):
        self._items = list(items)
        self.names = list(names)
        self._maps: dict[int, list[np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def levels(self, index: int) -> list[np.ndarray]:
        """The pyramid of image ``index``."""
        item = self._items[index]
        if isinstance(item[0], np.ndarray):
            return item  # type: ignore[return-value]
        if index not in self._maps:
            self._maps[index] = [np.load(p, mmap_mode="r") for p in item]
        return self._maps[index]

    def hr_size(self, index: int) -> tuple[int, int]:
        """(height, width) of image ``index``'s HR level."""
        return tuple(self.levels(index)[-1].shape[:2])  # type: ignore[return-value]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_maps": {}}


def _cache_files(cache_dir: Path, key: str, count: int) -> list[Path]:
    return [cache_dir / key[:2] / f"{key}.l{lvl}.npy" for lvl in range(count)]


def _save_npy(path: Path, array: np.ndarray) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, array)

    atomic_write(path, write)


def _prepare_one(
    record: ImageRecord, scale: int, cache_dir: Path | None
) -> list[np.ndarray] | list[Path]:
    """The pyramid of one image, from the disk cache when present (built and stored otherwise)."""
    if cache_dir is None:
        return read_pyramid(record, scale)
    files = _cache_files(cache_dir, record.cache_key(scale), num_phases(scale) + 1)
    if all(f.is_file() for f in files):
        return files
    for path, level in zip(files, read_pyramid(record, scale), strict=True):
        _save_npy(path, level)
    return files


def build_store(
    records: Sequence[ImageRecord],
    scale: int,
    *,
    patch_size: int,
    cache_dir: Path | None,
    threads: int = 1,
    share: tuple[int, int] = (0, 1),
    barrier: Callable[[], None] | None = None,
) -> PyramidStore:
    """Decode and cache every image; skip (with one warning each kind) unreadable or small ones.

    ``cache_dir`` None keeps pyramids in memory. ``share = (rank, world)`` splits the first pass
    over cache misses between processes; ``barrier`` is then called before every process reads
    the whole cache.
    """
    rank, world = share
    if cache_dir is not None and world > 1:
        mine = [r for i, r in enumerate(records) if i % world == rank]
        _map(lambda r: _try_prepare(r, scale, cache_dir), mine, threads)
        if barrier is not None:
            barrier()
    results = _map(lambda r: _try_prepare(r, scale, cache_dir), records, threads)
    kept, names, unreadable, small = [], [], [], []
    for record, result in zip(records, results, strict=True):
        if isinstance(result, str):
            unreadable.append(f"{record.hr.name} ({result})")
            continue
        store = PyramidStore([result], [record.hr.name])
        h, w = store.hr_size(0)
        if min(h, w) < patch_size:
            small.append(f"{record.hr.name} ({w}x{h})")
            continue
        kept.append(result)
        names.append(str(record.hr))
    _warn_skipped(unreadable, "unreadable image(s) skipped")
    _warn_skipped(small, f"image(s) smaller than the {patch_size}-pixel HR patch skipped")
    if not kept:
        raise ConfigError(
            f"no usable training images among {len(records)}: {len(unreadable)} unreadable, "
            f"{len(small)} smaller than data.patch_size={patch_size}; check data.train or use a "
            "smaller data.patch_size"
        )
    return PyramidStore(kept, names)


def _try_prepare(
    record: ImageRecord, scale: int, cache_dir: Path | None
) -> list[np.ndarray] | list[Path] | str:
    try:
        return _prepare_one(record, scale, cache_dir)
    except ImageError as exc:
        return str(exc).removeprefix(f"{record.hr}: ")


def _map(fn: Callable, items: Sequence, threads: int) -> list:
    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=threads) as pool:  # decoding and BLAS release the GIL
        return list(pool.map(fn, items))


def _warn_skipped(items: list[str], what: str) -> None:
    if not items:
        return
    shown = ", ".join(items[:_WARN_LIST]) + (" ..." if len(items) > _WARN_LIST else "")
    warnings.warn(f"{len(items)} {what}: {shown}", stacklevel=3)


# ----------------------------------------------------------------------------------------------
# Patches
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PatchParams:
    """Where a patch is cut (LR pixels) and how it is flipped."""

    y: int
    x: int
    hflip: bool
    vflip: bool
    transpose: bool


SampleKey = tuple[int, int, int, int]  # (image index, seed, epoch, position in the epoch)


class PatchDataset(torch.utils.data.Dataset):
    """Aligned random patches of every level, keyed by :data:`SampleKey`.

    ``dataset[key]`` returns the patch pyramid as a list of ``3 x h x w`` uint8 arrays (level 0 =
    LR input, last = HR); :func:`collate_pyramid` stacks them into tensors. The crop and
    augmentation come from a generator seeded with the key's ``(seed, epoch, position)``, so the
    same key always gives the same patch.
    """

    def __init__(self, store: PyramidStore, scale: int, patch_size: int, augment: bool = True):
        if patch_size % scale:
            raise ConfigError(
                f"data.patch_size ({patch_size}) must be a multiple of the scale ({scale})"
            )
        self.store = store
        self.scale = scale
        self.lr_patch = patch_size // scale
        self.augment = augment

    def __len__(self) -> int:
        return len(self.store)

    def patch_params(self, key: SampleKey) -> PatchParams:
        """The crop position and flips of sample ``key``."""
        index, seed, epoch, position = key
        rng = np.random.default_rng([seed, epoch, position, 0x5EED])
        h, w = self.store.hr_size(index)
        lh, lw = h // self.scale, w // self.scale
        y = int(rng.integers(0, lh - self.lr_patch + 1))
        x = int(rng.integers(0, lw - self.lr_patch + 1))
        flips = rng.integers(0, 2, size=3) if self.augment else np.zeros(3, dtype=int)
        return PatchParams(y, x, bool(flips[0]), bool(flips[1]), bool(flips[2]))

    def extract(self, index: int, params: PatchParams) -> list[np.ndarray]:
        """The aligned crops of image ``index`` (H x W x 3 uint8 views), augmented."""
        out = []
        for level, arr in enumerate(self.store.levels(index)):
            f = 2**level
            p = self.lr_patch * f
            crop = arr[params.y * f : params.y * f + p, params.x * f : params.x * f + p]
            out.append(augment(crop, params))
        return out

    def __getitem__(self, key: SampleKey) -> list[np.ndarray]:
        levels = self.extract(key[0], self.patch_params(key))
        return [np.ascontiguousarray(a.transpose(2, 0, 1)) for a in levels]


def augment(patch: np.ndarray, params: PatchParams) -> np.ndarray:
    """Apply the flips and transpose of ``params`` to an H x W x C array (a view)."""
    if params.hflip:
        patch = patch[:, ::-1]
    if params.vflip:
        patch = patch[::-1]
    if params.transpose:
        patch = patch.transpose(1, 0, 2)
    return patch


class StepBatchSampler(torch.utils.data.Sampler):
    """An endless stream of batches of :data:`SampleKey`, one per training step.

    Each epoch is a permutation of ``repeat`` copies of the image indices drawn from
    ``(seed, epoch)``; global step ``s`` takes its ``batch_size x world_size`` consecutive
    entries, and process ``rank`` takes every ``world_size``-th of them (DistributedSampler's
    split). Batches depend only on ``(seed, step)``: start at ``start_step`` to resume.
    """

    def __init__(
        self,
        num_images: int,
        batch_size: int,
        *,
        seed: int = 0,
        repeat: int = 1,
        start_step: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.num_images = num_images
        self.batch_size = batch_size
        self.seed = seed
        self.repeat = repeat
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size
        self.global_batch = batch_size * world_size
        samples = num_images * repeat
        self.steps_per_epoch = max(1, samples // self.global_batch)
        self._epoch_order: tuple[int, np.ndarray] | None = None

    def order(self, epoch: int) -> np.ndarray:
        """The image indices of ``epoch`` in sampling order."""
        if self._epoch_order is None or self._epoch_order[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch, 0xDA7A])
            needed = self.steps_per_epoch * self.global_batch
            parts, total = [], 0
            while total < needed:
                parts.append(rng.permutation(self.num_images * self.repeat) % self.num_images)
                total += len(parts[-1])
            self._epoch_order = (epoch, np.concatenate(parts))
        return self._epoch_order[1]

    def batch(self, step: int) -> list[SampleKey]:
        """The keys this process loads at global step ``step``."""
        epoch, within = divmod(step, self.steps_per_epoch)
        order = self.order(epoch)
        start = within * self.global_batch
        positions = range(start + self.rank, start + self.global_batch, self.world_size)
        return [(int(order[p]), self.seed, epoch, p) for p in positions]

    def __iter__(self) -> Iterator[list[SampleKey]]:
        step = self.start_step
        while True:
            yield self.batch(step)
            step += 1


def collate_pyramid(samples: list[list[np.ndarray]]) -> list[torch.Tensor]:
    """Stack samples level by level: a list of ``N x 3 x h x w`` uint8 tensors.

    numpy stacks: torch's multi-threaded copy is slow when the cores are busy training.
    """
    return [torch.from_numpy(np.stack(level)) for level in zip(*samples, strict=True)]


def batch_to_device(
    batch: list[torch.Tensor], device: torch.device, channels_last: bool = False
) -> list[torch.Tensor]:
    """uint8 batch -> float32 pyramid in [0, 255] on ``device``."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return [t.to(device, non_blocking=True).float().contiguous(memory_format=fmt) for t in batch]


def make_loader(
    dataset: PatchDataset,
    sampler: StepBatchSampler,
    workers: int = 0,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """A DataLoader yielding uint8 pyramids (see :func:`batch_to_device`), one per step."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate_pyramid,
        pin_memory=pin_memory,
        prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=_ignore_stop_signals if workers > 0 else None,
    )


def _ignore_stop_signals(_worker_id: int) -> None:
    """Workers leave SIGINT/SIGTERM to the main process, which saves a checkpoint and stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


__all__ = [
    "ImageRecord",
    "PatchDataset",
    "PatchParams",
    "PyramidStore",
    "StepBatchSampler",
    "batch_to_device",
    "build_store",
    "collate_pyramid",
    "default_cache_dir",
    "find_images",
    "make_loader",
    "read_pyramid",
]
