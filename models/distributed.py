"""Training on several processes under torchrun: which rank this process is, and the few collectives it needs.

`torchrun --nproc-per-node K` (torch.distributed.run) starts K copies of the same command and
tells each who it is through WORLD_SIZE, RANK and LOCAL_RANK; this module is the one place in
poco-rt that reads them. Without them (or with one rank) the process trains alone, as it always
has, and nothing here talks to another process.

A group of several ranks uses gloo on CPU and NCCL when CUDA is present (one GPU per local rank).
Every rank draws the same full batch from the same seed and trains on its own share of it, and
DistributedDataParallel averages the gradients, so that one step is the single-process step up to
the order of float summation (training.py says how the loss is scaled for that).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

logger = logging.getLogger(__name__)
Value = TypeVar("Value")
CPU = torch.device("cpu")


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """This process's place among the ranks of one training run (rank 0 of 1: training alone)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = CPU

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 validates, checkpoints, logs and exports; the other ranks only train."""
        return self.rank == 0

    def broadcast(self, value: Value) -> Value:
        """Rank 0's `value` (any picklable object) on every rank; the others' own `value` is ignored."""
        if not self.is_distributed:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0, device=self.device if self.device.type == "cuda" else None)
        return holder[0]

    def mean(self, value: float) -> float:
        """The mean of every rank's `value`."""
        if not self.is_distributed:
            return value
        tensor = torch.tensor(value, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor) / self.world_size

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module training calls: DistributedDataParallel over `model` when there are several ranks.

        static_graph: every step uses the same parameters, and a model may hold one that no step
        uses (POCO without unit embeddings keeps its table); DDP finds it in the first step instead
        of waiting for its gradient forever, and without searching the graph every step.
        """
        if not self.is_distributed:
            return model
        device_ids = [self.device] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, static_graph=True)


SINGLE_PROCESS = ProcessGroup()


@contextlib.contextmanager
def join_process_group() -> Iterator[ProcessGroup]:
    """The process group torchrun started this process in (SINGLE_PROCESS outside torchrun), left at exit."""
    world_size = _environment_int("WORLD_SIZE", default=1)
    if world_size <= 1:
        yield SINGLE_PROCESS
        return
    rank, local_rank = _environment_int("RANK", default=0), _environment_int("LOCAL_RANK", default=0)
    if torch.cuda.is_available():
        device, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(device)
    else:
        device, backend = torch.device("cpu"), "gloo"
    dist.init_process_group(backend=backend)  # MASTER_ADDR / MASTER_PORT: torchrun's rendezvous
    logger.debug("rank %d of %d (%s, %s)", rank, world_size, backend, device)
    try:
        yield ProcessGroup(rank=rank, world_size=world_size, device=device)
        # Every rank done before any leaves: gloo aborts a process (SIGABRT, "terminate called without an
        # active exception") whose peer tore its connections down first. Not after an error: it would hang.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _environment_int(name: str, *, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    if not text.isdigit():
        raise ValueError(f"{name}={text!r}: torchrun sets it to a whole number; start the run with torchrun")
    return int(text)
