"""TensorBatchLoader: batching, shuffling, determinism and the set_epoch hook (synthetic data)."""

import pytest
import torch

from msresnet1d.data.loader import TensorBatchLoader, epoch_generator


def _labels_per_epoch(loader: TensorBatchLoader) -> list[int]:
    return torch.cat([yb for _, yb in loader]).tolist()


def test_len_and_batch_shapes_for_signals():
    x = torch.randn(10, 2, 50)  # (N, C, L) signals
    y = torch.arange(10)
    loader = TensorBatchLoader(x, y, batch_size=4)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert [tuple(xb.shape) for xb, _ in batches] == [(4, 2, 50), (4, 2, 50), (2, 2, 50)]
    assert torch.equal(torch.cat([xb for xb, _ in batches]), x)
    assert _labels_per_epoch(loader) == list(range(10))


def test_drop_last():
    loader = TensorBatchLoader(torch.zeros(10, 3), torch.arange(10), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [len(yb) for _, yb in loader] == [4, 4]


def test_shuffle_is_a_permutation_that_changes_every_epoch():
    loader = TensorBatchLoader(torch.arange(100), torch.arange(100), batch_size=7, shuffle=True)
    first, second = _labels_per_epoch(loader), _labels_per_epoch(loader)
    assert sorted(first) == sorted(second) == list(range(100))
    assert first != list(range(100))
    assert first != second


def test_same_seed_same_batches_and_set_epoch_replays_an_epoch():
    def make(seed: int) -> TensorBatchLoader:
        return TensorBatchLoader(torch.arange(50), torch.arange(50), 8, shuffle=True, seed=seed)

    reference = make(seed=3)
    epochs = [_labels_per_epoch(reference) for _ in range(3)]
    assert _labels_per_epoch(make(seed=3)) == epochs[0]
    resumed = make(seed=3)
    resumed.set_epoch(2)
    assert _labels_per_epoch(resumed) == epochs[2]
    assert resumed.epoch == 3
    assert _labels_per_epoch(make(seed=4)) != epochs[0]


def test_transform_gets_the_epoch_generator():
    def jitter(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return x + torch.rand(x.shape, generator=generator)

    loader = TensorBatchLoader(torch.zeros(6, 1), torch.arange(6), 6, transform=jitter, seed=1)
    first = next(iter(loader))[0]
    loader.set_epoch(0)
    assert torch.equal(next(iter(loader))[0], first)
    assert not torch.equal(next(iter(loader))[0], first)


def test_a_transform_may_return_extra_features_but_not_beside_given_ones():
    def crop_with_start(x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        start = int(torch.randint(3, (), generator=generator))
        return x[..., start:start + 2], torch.full((len(x), 1), float(start))

    x = torch.arange(20.0).reshape(4, 1, 5)
    xb, eb, yb = next(iter(TensorBatchLoader(x, torch.arange(4), 4, transform=crop_with_start)))
    assert xb.shape == (4, 1, 2) and torch.equal(xb[:, 0, 0], x[:, 0, int(eb[0, 0])]) and yb.tolist() == [0, 1, 2, 3]
    given = TensorBatchLoader(x, torch.arange(4), 4, transform=crop_with_start, extra=torch.zeros(4, 1))
    with pytest.raises(ValueError, match=r"returned \(inputs, extra\) but the loader was also given extra features"):
        next(iter(given))


def test_epoch_generator_depends_on_seed_and_epoch_only():
    def draw(seed: int, epoch: int) -> torch.Tensor:
        return torch.rand(3, generator=epoch_generator(seed, epoch))

    assert torch.equal(draw(0, 1), draw(0, 1))
    assert not torch.equal(draw(0, 1), draw(1, 0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(x=torch.zeros(3), y=torch.zeros(4), batch_size=1), "x has 3, y has 4"),
        (dict(x=torch.zeros(3), y=torch.zeros(3), batch_size=0), "batch_size must be >= 1, got 0"),
        (dict(x=torch.zeros(3), y=torch.zeros(3), batch_size=1, seed=-1), "seed must be >= 0"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TensorBatchLoader(**kwargs)


def test_set_epoch_rejects_negative():
    loader = TensorBatchLoader(torch.zeros(3), torch.zeros(3), 1)
    with pytest.raises(ValueError, match="epoch must be >= 0, got -1"):
        loader.set_epoch(-1)


def test_ranks_share_the_order_but_draw_their_own_augmentation():
    # every rank cuts the same epoch order into its shard; the transform's draws are each rank's own (the same draws
    # on every rank would augment the global batch with one set of random numbers per position); rank 0, and so a
    # single process, draws as it always did: with the order's generator
    def jitter(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return x + torch.rand(x.shape, generator=generator)

    x = torch.zeros(8, 1)
    noise = [torch.cat([xb for xb, _ in TensorBatchLoader(x, torch.arange(8), 4, shuffle=True, transform=jitter,
                                                          seed=5, rank=r, world_size=2)]) for r in (0, 1)]
    assert not torch.equal(noise[0], noise[1])
    order = torch.randperm(8, generator=(single := epoch_generator(5, 0)))
    assert torch.equal(noise[0], torch.rand(4, 1, generator=single))  # rank 0: after the order, on its generator
    shards = [torch.cat([yb for _, yb in TensorBatchLoader(x, torch.arange(8), 4, shuffle=True, seed=5, rank=r,
                                                           world_size=2)]) for r in (0, 1)]
    assert shards[0].tolist() == order[0::2].tolist() and shards[1].tolist() == order[1::2].tolist()
    assert torch.equal(torch.rand(3, generator=epoch_generator(5, 0, 0)), torch.rand(3, generator=epoch_generator(5, 0)))
    assert not torch.equal(torch.rand(3, generator=epoch_generator(5, 0, 1)),
                           torch.rand(3, generator=epoch_generator(5, 0)))
