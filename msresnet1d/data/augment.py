"""Training-time augmentation of beat windows: the beat-to-beat variation the same patient shows.

A beat window (C, L) holds the leads and, with ``BeatConfig(template=True)``, each lead minus the
record's median beat (the template). :class:`BeatAugment` changes the leads of each window, as
another beat of the same record could look, and recomputes the differences against the same
template, so the two halves of the window stay consistent:

* ``scale``: the leads multiplied by a factor drawn uniformly from [1 - scale, 1 + scale]
  (amplitude varies with breathing; records are z-scored, so a record-wide gain has no effect);
* ``noise_std``: Gaussian noise of that standard deviation added to the leads (units of the
  z-scored signal);
* ``shift``: the window moved by up to ``shift`` samples either way, edge-padded (a QRS detector
  places a beat a few samples off the annotation).
"""

from __future__ import annotations

import torch


class BeatAugment:
    """BatchTransform: beat windows (B, C, L) -> augmented windows (B, C, L), all random numbers
    from the batch generator (the loader's, so epochs are reproducible).

    Args:
        leads: channels that are leads; with ``template``, the other ``leads`` channels are
            those leads minus the record's median beat, so C = 2 x leads.
        template: whether the windows carry the template differences.
        scale: half-width of the amplitude factor's range, in [0, 1).
        noise_std: standard deviation of the added noise, >= 0.
        shift: largest time shift in samples, >= 0, less than the window length.

    Raises:
        ValueError: a parameter out of range; later, windows whose channels do not match.
    """

    def __init__(self, leads: int, template: bool, scale: float = 0.0, noise_std: float = 0.0,
                 shift: int = 0) -> None:
        if leads < 1:
            raise ValueError(f"BeatAugment: leads must be >= 1, got {leads}")
        if not 0 <= scale < 1:
            raise ValueError(f"BeatAugment: scale={scale} must be in [0, 1) (factors 1 - scale to 1 + scale)")
        if noise_std < 0:
            raise ValueError(f"BeatAugment: noise_std={noise_std} must be >= 0")
        if shift < 0 or int(shift) != shift:
            raise ValueError(f"BeatAugment: shift={shift} must be a whole number of samples >= 0")
        self.leads, self.template = leads, template
        self.scale, self.noise_std, self.shift = float(scale), float(noise_std), int(shift)

    @property
    def channels(self) -> int:
        """Channels C of the windows this transform accepts."""
        return 2 * self.leads if self.template else self.leads

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.channels or x.shape[2] <= self.shift:
            raise ValueError(f"BeatAugment: expected windows (B, {self.channels}, L) with L > shift={self.shift}, "
                             f"got shape {tuple(x.shape)}")
        n, length = x.shape[0], x.shape[2]
        leads = x[:, :self.leads]
        out = leads
        if self.scale:
            factor = 1 + self.scale * (2 * torch.rand(n, 1, 1, generator=generator) - 1)
            out = out * factor
        if self.noise_std:
            out = out + self.noise_std * torch.randn(out.shape, generator=generator)
        if self.shift:
            moves = torch.randint(-self.shift, self.shift + 1, (n, 1, 1), generator=generator)
            source = (torch.arange(length).view(1, 1, -1) - moves).clamp(0, length - 1)
            out = out.gather(2, source.expand(n, self.leads, length))
        if not self.template:
            return out
        template = leads - x[:, self.leads:]  # the record's median beat, the same for every window of it
        return torch.cat([out, out - template], dim=1)
