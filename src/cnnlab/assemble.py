"""Putting a run together from its config: runtime, data, normalization, model, batches.

Training, evaluation, the LR finder and `inspect` all start the same way; this module is that
shared start, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from cnnlab.config import Config, NormalizeStats
from cnnlab.data import DataBundle, load_data
from cnnlab.data.sources import RawData
from cnnlab.data.augment import Augmenter, Normalizer
from cnnlab.data.loaders import TrainBatches, eval_batches
from cnnlab.models import build_model
from cnnlab.models.user_code import SuppliedModel
from cnnlab.distributed import World, check_sync_bn
from cnnlab.errors import UserError
from cnnlab.runtime import Runtime, resolve_runtime


@dataclass
class Assembly:
    cfg: Config  # resolved: data statistics and runtime settings filled in
    runtime: Runtime
    data: DataBundle
    normalizer: Normalizer
    model: nn.Module
    assignments: list
    world: World = field(default_factory=World)

    @property
    def shard(self) -> tuple[int, int]:
        return self.world.rank, self.world.size

    def train_batches(self) -> TrainBatches:
        augmenter = Augmenter(self.cfg.data.augment, self.normalizer)
        return TrainBatches(self.data.train, self.cfg.data.batch_size, self.cfg.seed,
                            self.runtime.device, augmenter, self.workers, self.shard)

    def eval_batches(self, split: str = "val", sharded: bool = True):
        """Sequential batches of a split; `sharded=False` gives every process all of them."""
        images = {"val": self.data.val, "test": self.data.test, "train": self.data.train}[split]
        return eval_batches(images, self.eval_batch_size, self.runtime.device, self.normalizer,
                            self.workers, self.shard if sharded else (0, 1))

    @property
    def eval_batch_size(self) -> int:
        return self.cfg.data.eval_batch_size or 2 * self.cfg.data.batch_size

    @property
    def workers(self) -> int:
        return self.cfg.data.workers if self.cfg.data.workers is not None else 2


def resolve(cfg: Config, data: DataBundle, runtime: Runtime) -> Config:
    """The config with what was decided at run time written in, so the run folder's
    config.yaml reproduces the run (and a resume uses the same threads and statistics)."""
    resolved = cfg.model_copy(deep=True)
    resolved.data.normalize = NormalizeStats(mean=data.mean, std=data.std)
    resolved.train.device = str(runtime.device)
    resolved.train.threads = runtime.threads
    resolved.train.amp = runtime.amp
    resolved.train.channels_last = runtime.channels_last
    return resolved


def sample_batch(data: DataBundle, normalizer: Normalizer, size: int = 256) -> torch.Tensor:
    """The first `size` training images, normalized: what data-dependent inits (LSUV) look at."""
    images = data.train.images[:size] if data.train.in_memory else None
    if images is None:
        from cnnlab.data.loaders import FileImages

        files = FileImages(data.train)
        images = torch.stack([files[i][0] for i in range(min(size, len(files)))])
    return normalizer(images.to(normalizer.scale.device))


def assemble(cfg: Config, data: DataBundle | None = None, world: World | None = None,
             supplied: SuppliedModel | None = None, given: RawData | None = None) -> Assembly:
    """The run's parts from its config; `supplied` is the network of an `arch: python` config,
    `given` the data passed in Python (`data=`), converted by cnnlab.data.python_data."""
    world = world or World()
    layout_auto = cfg.train.channels_last == "auto"
    runtime = resolve_runtime(cfg.train, world)
    runtime.apply()
    data = data or load_data(cfg.data, given)
    cfg = resolve(cfg, data, runtime)
    normalizer = Normalizer(data.mean, data.std, runtime.device, runtime.channels_last)
    model, assignments = build_model(
        cfg.model, data.in_channels, data.num_classes, data.image_size, cfg.seed,
        sample_batch=lambda: sample_batch(data, normalizer).to("cpu"), dataset=cfg.data.dataset,
        supplied=supplied)
    if layout_auto and runtime.channels_last and narrow_convolutions(model):
        # torch 2.14's CPU kernels corrupted the heap (a crash, not an error) training a
        # ResNet-20 of width 4 in channels_last on an AVX2-only CPU; width 8 was fine.
        runtime.channels_last = cfg.train.channels_last = False
        normalizer.memory_format = torch.contiguous_format
    memory_format = torch.channels_last if runtime.channels_last else torch.contiguous_format
    model = model.to(runtime.device, memory_format=memory_format)
    if world.distributed and cfg.data.batch_size % world.size:
        raise UserError(f"data.batch_size {cfg.data.batch_size} cannot be split evenly among "
                        f"{world.size} processes; use a multiple of {world.size}")
    if world.distributed and cfg.train.sync_bn:
        check_sync_bn(True, runtime.device)
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return Assembly(cfg, runtime, data, normalizer, model, assignments, world)


# Convolutions with fewer output channels than this train in NCHW when the layout is `auto`.
NARROW_CHANNELS = 8


def narrow_convolutions(model: nn.Module) -> bool:
    """Whether any convolution of `model` has fewer than NARROW_CHANNELS output channels."""
    return any(isinstance(m, nn.Conv2d) and m.out_channels < NARROW_CHANNELS
               for m in model.modules())
