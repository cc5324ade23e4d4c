"""Running under ``torchrun``: process group, device, DDP wrapping and the rank-0 rule.

``torchrun --nproc_per_node=N`` (or multi-node ``--nnodes``/``--rdzv-endpoint``) sets RANK,
WORLD_SIZE and LOCAL_RANK; :func:`setup` then joins the process group (gloo on CPU, nccl on
GPU). Each rank trains on its shard of every epoch's permutation (the role of
``DistributedSampler``), DDP averages gradients, and only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

import torch
import torch.distributed as torch_dist
from torch import nn


def resolve_device(name: str, local_rank: int = 0, local_world_size: int = 1) -> torch.device:
    """The device ``name`` means for this process: ``"cpu"``; ``"cuda"`` -> this rank's GPU,
    ``cuda:<local_rank>`` (torchrun's ``LOCAL_RANK``, 0 in a single process); ``"cuda:N"`` -> GPU N
    (N = 0, 1, ...; under torchrun, where each process sees its own GPU, as with one GPU a task
    under SLURM); ``"auto"`` -> ``"cuda"`` when there is a GPU, else the CPU.

    Raises:
        ValueError: another name; a GPU asked for on a machine without one; a GPU index the
            process does not see (``torch.cuda.device_count()``); an index given to several
            processes of a machine (``local_world_size``, torchrun's ``LOCAL_WORLD_SIZE``) that
            each see several GPUs: every one would take the same.
    """
    spelled = re.fullmatch(r"cpu|auto|cuda(?::([0-9]+))?", name)
    if spelled is None:
        raise ValueError(f"device {name!r}: expected cpu, cuda, cuda:N (N = 0, 1, ...: a GPU's index) or auto")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but no CUDA GPU is available (use --device cpu)")
    count = torch.cuda.device_count()
    if spelled.group(1) is None:
        if local_rank >= count:
            raise ValueError(f"device {name!r}: this process's GPU is cuda:{local_rank} (its LOCAL_RANK), but it sees "
                             f"{count} GPU(s): start at most {count} process(es) a machine (torchrun "
                             "--nproc_per_node), or, where each process sees its own GPU, give --device cuda:0")
        return torch.device("cuda", local_rank)
    index = int(spelled.group(1))
    if local_world_size > 1 and count > 1:
        raise ValueError(f"device {name!r}: each of this machine's {local_world_size} processes sees {count} GPUs and "
                         "would take the same one: give --device cuda (each takes cuda:LOCAL_RANK)")
    if index >= count:
        raise ValueError(f"device {name!r}: this process sees {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", index)


@dataclass
class DistContext:
    """Where this process stands: rank, world size and its device (single process by default)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    #: whether :func:`setup` joined the process group, so :func:`teardown` leaves it (not a group
    #: the caller had made before calling ``train``)
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel around ``model`` when distributed, else the model itself."""
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def weighted_mean(self, value: float, weight: float) -> float:
        """The mean of every rank's ``value`` weighted by its ``weight`` (a loss by the samples it
        was taken over): the same number on every rank; ``value`` itself in a single process."""
        if not self.distributed:
            return value
        totals = torch.tensor([value * weight, weight], dtype=torch.float64, device=self.device)
        torch_dist.all_reduce(totals)
        return float(totals[0] / totals[1])

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Give every rank rank 0's buffers of ``module`` (BatchNorm running statistics), in place.
        DDP copies them from rank 0 only as each training forward starts, so after an epoch's last
        step every rank holds its own: validated as they are, the ranks would score one model
        differently and could choose different epochs."""
        if self.distributed:
            for buffer in module.buffers():
                torch_dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        if self.distributed:
            torch_dist.barrier()


def launched_rank() -> int:
    """This process's rank as torchrun set it (``RANK``); 0 when not one of several processes
    (``WORLD_SIZE`` unset or 1, e.g. a cluster job's single worker)."""
    try:
        return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0
    except ValueError:  # not torchrun's: no process group to speak of
        return 0


def setup(device: str = "cpu") -> DistContext:
    """Join the process group when launched by torchrun (unless the caller already has), and pick
    this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = launched_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    joins = world_size > 1 and not torch_dist.is_initialized()
    if joins:
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        torch_dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank, resolved, owns_group=joins)


def teardown(context: DistContext) -> None:
    """Leave the process group if :func:`setup` joined it (``context.owns_group``)."""
    if context.owns_group and torch_dist.is_initialized():
        torch_dist.destroy_process_group()
