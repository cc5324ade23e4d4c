import pytest
import torch

from msresnet1d.data.augment import BeatAugment


def _windows(n: int = 64, leads: int = 1, length: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Template windows (n, 2 x leads, length) of one record, and its template (leads, length)."""
    g = torch.Generator().manual_seed(seed)
    template = torch.randn(leads, length, generator=g)
    beats = template + 0.3 * torch.randn(n, leads, length, generator=g)
    return torch.cat([beats, beats - template], dim=1), template


def test_no_augmentation_returns_the_windows():
    x, _ = _windows()
    assert torch.equal(BeatAugment(1, template=True)(x, torch.Generator().manual_seed(0)), x)


@pytest.mark.parametrize("kwargs", [dict(scale=0.2), dict(noise_std=0.1), dict(shift=3),
                                    dict(scale=0.2, noise_std=0.1, shift=3)])
def test_template_differences_are_recomputed_against_the_same_template(kwargs):
    x, template = _windows(leads=2)
    out = BeatAugment(2, template=True, **kwargs)(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and not torch.equal(out[:, :2], x[:, :2])
    torch.testing.assert_close(out[:, :2] - out[:, 2:], template.expand_as(out[:, :2]))


def test_scale_multiplies_each_window_by_a_factor_in_range():
    x = torch.ones(500, 1, 10)
    out = BeatAugment(1, template=False, scale=0.2)(x, torch.Generator().manual_seed(0))
    factors = out[:, 0, 0]
    assert torch.equal(out, factors.view(-1, 1, 1).expand_as(out))  # one factor a window
    assert factors.min() >= 0.8 and factors.max() <= 1.2 and factors.std() > 0.05


def test_shift_moves_a_spike_by_at_most_shift_samples_with_edge_padding():
    x = torch.zeros(300, 1, 21)
    x[:, 0, 10] = 1.0
    x[:, 0, 0] = 5.0  # the edge value pads a window moved right
    out = BeatAugment(1, template=False, shift=3)(x, torch.Generator().manual_seed(0))
    moved = out[:, 0].eq(1.0).float().argmax(dim=1) - 10
    assert set(moved.tolist()) == {-3, -2, -1, 0, 1, 2, 3}
    right = moved > 0
    assert torch.all(out[right, 0, 0] == 5.0) and torch.all(out[right, 0, 1] == 5.0)


def test_the_leads_of_a_window_are_scaled_and_shifted_together():
    x = torch.zeros(300, 2, 21)
    x[:, :, 10] = 1.0  # a spike at the same instant in both leads
    x[:, 1] *= 3  # the second lead three times the first
    out = BeatAugment(2, template=False, scale=0.2, shift=3)(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[:, 1], 3 * out[:, 0])  # one factor and one move a window, for both leads
    assert out[:, 0].argmax(dim=1).unique().numel() == 7  # the moves differ between windows


def test_noise_has_the_given_spread_and_draws_from_the_generator():
    x = torch.zeros(200, 1, 50)
    augment = BeatAugment(1, template=False, noise_std=0.5)
    a, b = augment(x, torch.Generator().manual_seed(3)), augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert abs(float(a.std()) - 0.5) < 0.02
    assert not torch.equal(a, augment(x, torch.Generator().manual_seed(4)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(leads=0), "leads must be >= 1"), (dict(scale=1.0), "scale=1.0 must be in"),
    (dict(noise_std=-0.1), "noise_std=-0.1"), (dict(shift=-1), "shift=-1"), (dict(shift=1.5), "shift=1.5"),
])
def test_bad_parameters_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BeatAugment(**{"leads": 1, "template": True, **kwargs})


def test_windows_of_the_wrong_shape_are_refused():
    augment = BeatAugment(1, template=True, shift=4)
    with pytest.raises(ValueError, match=r"expected windows \(B, 2, L\) with L > shift=4, got shape \(3, 1, 40\)"):
        augment(torch.zeros(3, 1, 40), torch.Generator())
    with pytest.raises(ValueError, match="got shape"):
        augment(torch.zeros(3, 2, 4), torch.Generator())
