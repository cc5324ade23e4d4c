"""Training, evaluation and results: one module each, imported where used (this package imports
none of them, so that ``msresnet1d --help`` and the torch-free config stay light).

- :mod:`.config`: ``TrainConfig``, ``load_config`` and ``--set`` overrides (no torch).
- :mod:`.run`: ``train``, ``train_or_reuse``, ``check_config``, ``load_trained_model``.
- :mod:`.configured`: the model a config builds, every model option recorded, a checkpoint's config.
- :mod:`.engine`: the ``Trainer`` (epochs, validation, checkpoints, resume, the run folder).
- :mod:`.tasks`: what each task (beats, rhythm, fashion_mnist) reads and how it is scored.
- :mod:`.checkpoint`: checkpoints written atomically and read with ``weights_only=True``.
- :mod:`.metrics`: AAMI EC57 per-class figures, the CinC 2017 score, bootstrap intervals.
- :mod:`.ensemble`: several checkpoints predicted as one (mean probabilities).
- :mod:`.offsets`: class offsets on log probabilities, fitted on validation.
- :mod:`.optim`, :mod:`.ema`, :mod:`.distributed`: losses and schedules, weight averaging, torchrun.
- :mod:`.plots`: learning curves, confusion matrices, beat strips (PNG).
- :mod:`.provenance`: what a recorded result was made by (command, commit, versions, data).
"""

from __future__ import annotations

from .. import _lazy

_SUBMODULES = ("checkpoint", "config", "configured", "distributed", "ema", "engine", "ensemble", "metrics", "offsets",
               "optim", "plots", "provenance", "run", "tasks")


# each module on first use: ``msresnet1d.training.run`` works after ``import msresnet1d.training``
__getattr__, __dir__ = _lazy.lazy_attributes(__name__, globals(), _SUBMODULES, {})
