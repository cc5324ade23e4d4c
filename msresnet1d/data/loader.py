"""Fast mini-batches from in-memory tensors.

:class:`TensorBatchLoader` keeps the whole data set as tensors and builds every batch with one
indexing operation, so there is no per-sample Python overhead (unlike ``torch.utils.data``'s
``Dataset`` + ``DataLoader``). It works for any tensors whose first dimension is the sample axis:
images (N, H, W), signals (N, C, L), labels (N,), ...

Determinism: the shuffle order and the random numbers handed to ``transform`` in an epoch depend
only on ``(seed, epoch)``. Each ``iter(loader)`` uses the current epoch and then advances it by
one, so two loaders built with the same seed yield identical batches epoch after epoch; call
:meth:`TensorBatchLoader.set_epoch` when resuming training to reproduce the order of that epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch
from torch import Tensor


class BatchTransform(Protocol):
    """A transform applied to a whole batch of inputs, e.g. (B, ...) -> (B, ...).

    Called with both positionally (any parameter names). Random transforms must draw all their
    random numbers from ``generator`` (so that batches are reproducible); deterministic transforms
    ignore it.
    """

    def __call__(self, x: Tensor, generator: torch.Generator, /) -> Tensor | tuple[Tensor, Tensor]: ...


def epoch_generator(seed: int, epoch: int, rank: int = 0) -> torch.Generator:
    """A CPU generator whose state is a function of ``(seed, epoch)`` only, and of ``rank``
    (a distributed process's own draws) when it is not 0.

    The integers are mixed with :class:`numpy.random.SeedSequence`, so neighbouring seeds, epochs
    or ranks give unrelated streams.
    """
    if seed < 0 or epoch < 0 or rank < 0:
        raise ValueError(f"seed, epoch and rank must be >= 0, got seed={seed}, epoch={epoch}, rank={rank}")
    entropy = [seed, epoch] + ([rank] if rank else [])  # rank 0 draws as a single process does
    state = np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


class TensorBatchLoader:
    """Iterate over ``(x[idx], y[idx])`` mini-batches of in-memory tensors.

    Args:
        x: inputs, shape (N, ...), any dtype (e.g. uint8 images (N, 28, 28), float signals
            (N, C, L)). Kept as is; convert per batch in ``transform``.
        y: targets, shape (N, ...), e.g. int64 labels (N,).
        batch_size: samples per batch (the last batch may be smaller unless ``drop_last``).
        shuffle: draw a new random permutation every epoch; otherwise keep the stored order.
        transform: optional :class:`BatchTransform` applied to each input batch
            (B, ...) -> (B, ...); labels are passed through unchanged. A transform that
            computes extra features of what it made (e.g. of random crops) returns
            ``(inputs, extra)`` instead, yielded as ``(xb, eb, yb)``.
        drop_last: drop the last batch if it has fewer than ``batch_size`` samples.
        seed: base seed of the per-epoch generator (see :func:`epoch_generator`).

        extra: optional per-sample features (N, F) (e.g. RR intervals), yielded between inputs
            and targets.
        sample_weights: optional (N,) non-negative weights; each epoch then draws N samples
            with replacement with probability proportional to them (a balanced sampler when
            the weights are 1 / class frequency) instead of a permutation.
        rank, world_size: this process's shard under distributed training: every rank draws
            the same epoch order and takes every ``world_size``-th sample from position
            ``rank`` on, the order cut to a multiple of ``world_size`` so that all ranks run the
            same number of batches (what ``DistributedSampler`` does); the transform's random
            draws are each rank's own.

    Yields:
        ``(xb, yb)``, or ``(xb, eb, yb)`` with ``extra``: ``transform(x[idx], generator)`` (or
        ``x[idx]``), ``extra[idx]`` and ``y[idx]``.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        shuffle: bool = False,
        transform: BatchTransform | None = None,
        drop_last: bool = False,
        seed: int = 0,
        extra: Tensor | None = None,
        sample_weights: Tensor | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        for name, t in (("y", y), ("extra", extra), ("sample_weights", sample_weights)):
            if t is not None and t.shape[0] != x.shape[0]:
                raise ValueError(
                    f"x and {name} must have the same number of samples: x has {x.shape[0]}, {name} has {t.shape[0]}"
                )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.x = x
        self.y = y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.transform = transform
        self.drop_last = drop_last
        self.seed = seed
        self.extra = extra
        self.sample_weights = sample_weights
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``iter(self)`` produce the batches of epoch ``epoch`` (0-based)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = epoch

    def __len__(self) -> int:
        """Number of batches per epoch (of this rank's shard)."""
        n = self.x.shape[0] // self.world_size
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        generator = epoch_generator(self.seed, self.epoch)  # the order: every rank's
        draws = epoch_generator(self.seed, self.epoch, self.rank) if self.rank else generator  # each rank's own
        self.epoch += 1
        return self._batches(generator, draws)

    def _batches(self, generator: torch.Generator, draws: torch.Generator) -> Iterator[tuple[Tensor, ...]]:
        n = self.x.shape[0]
        if self.sample_weights is not None:
            order = torch.multinomial(self.sample_weights.double(), n, replacement=True, generator=generator)
        else:
            order = torch.randperm(n, generator=generator) if self.shuffle else torch.arange(n)
        shard = n // self.world_size
        order = order[: shard * self.world_size][self.rank :: self.world_size]
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            xb = self.x.index_select(0, idx)  # several times faster than self.x[idx] on CPU
            eb = None if self.extra is None else self.extra.index_select(0, idx)
            if self.transform is not None:
                xb = self.transform(xb, draws)
                if isinstance(xb, tuple):  # extra features that depend on the transform (crops)
                    if eb is not None:
                        raise ValueError("the transform returned (inputs, extra) but the loader was also given "
                                         "extra features: give one or the other")
                    xb, eb = xb
            if eb is None:
                yield xb, self.y.index_select(0, idx)
            else:
                yield xb, eb, self.y.index_select(0, idx)
