"""One run on several processes with PyTorch's DistributedDataParallel, started by torchrun.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; cnnlab then joins the process group (gloo on CPU,
NCCL on GPU). Every process holds the whole in-memory data set and builds the same global batch
(the same seeded order and augmentation), then keeps its own slice of it, so a run on W processes
with global batch B follows the single-process run with batch B up to floating-point rounding.
Only rank 0 writes the run folder and checkpoints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from cnnlab.errors import UserError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The tensor summed over all processes (itself on one process)."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast(self, value):
        """Rank 0's value, on every process."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def world() -> World:
    """The process group torchrun asked for, joined on first use; a single process otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        # NCCL moves CUDA tensors only; the loop also reduces small CPU tensors (stop flags,
        # loss checks), which go through gloo.
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return World(rank=dist.get_rank(), size=dist.get_world_size(),
                 local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                 local_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(size))))


def check_sync_bn(sync_bn: bool, device: torch.device) -> None:
    """PyTorch's SyncBatchNorm runs on CUDA only: say so before any process starts training."""
    if sync_bn and device.type != "cuda":
        raise UserError(f"train.sync_bn needs CUDA GPUs, but this run is on {device}; set "
                        "train.sync_bn=false (each process then normalizes with its own batch "
                        "statistics)")


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """`cnnlab train --nproc N ...` is `torchrun --standalone --nproc-per-node N -m cnnlab ...`."""
    import sys

    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", "cnnlab", *argv]
