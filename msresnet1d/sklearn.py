"""scikit-learn estimators: a registered 1-D network as a classifier, a regressor and an embedding
transformer, and a signal preprocessor for pipelines.

    from sklearn.pipeline import Pipeline
    pipe = Pipeline([("prep", SignalPreprocessor(fs=360.0, target_fs=180.0, band=(None, 40.0))),
                     ("clf", MSResNet1dClassifier(epochs=5))])
    pipe.fit(X, y)  # X (n_samples, n_timepoints) or (n_samples, n_channels, n_timepoints)

Conventions shared by every estimator here:

* **Layout.** X is (n_samples, n_timepoints) (one channel) or (n_samples, n_channels,
  n_timepoints); 2-D input is the 1-channel case of 3-D input. ``fit`` records ``n_channels_``
  and ``n_timepoints_``; later calls must match both (the network pools over time and could run
  on other lengths, but a fixed length keeps scikit-learn's contract: a sample has a fixed
  number of values). ``n_features_in_`` is set only by 2-D input, where each timepoint is a
  feature (it equals ``n_timepoints_``); after fitting on 3-D input there is no tabular number of
  features and the attribute is absent.
* **Feature names.** As in scikit-learn, fitting on a pandas DataFrame whose column names are all
  strings records them in ``feature_names_in_`` (names of mixed types are scikit-learn's
  TypeError, as for its own estimators); later calls on a DataFrame with other names (or
  in another order) raise a ValueError, and a DataFrame after fitting on an array, or an array
  after fitting on a DataFrame, gives scikit-learn's UserWarning. A warm start checks them too.
* **Short inputs.** A network needs ``model_.min_input_size`` timepoints. Shorter inputs raise
  ``ValueError`` unless ``pad_short=True``, which appends zeros up to that length in every call.
  Raising is the default because a too-short signal is usually a mistake (e.g. the axes of a
  (n_samples, n_timepoints, n_channels) array); padding exists for tabular callers such as
  scikit-learn's own estimator checks, which pass 1-20 "features". The same mistake with many
  channels (12 leads) leaves enough "timepoints": ``fit`` warns when X has more channels than
  timepoints.
* **Reproducibility.** ``random_state`` (None, an int or a ``RandomState``) gives the seed of
  the weight initialisation, the batch order (:class:`~msresnet1d.data.loader.TensorBatchLoader`,
  seeded per epoch), dropout and the validation split; an int gives identical weights and
  predictions on every fit. Torch's global random state is left as it was (``fit`` works in a
  forked generator of the CPU, and seeds no GPU's), and so are its default dtype, default device
  and gradient mode (``fit`` trains in float32 with gradients, inside a caller's
  ``torch.no_grad()`` too, and ``fit`` and inference run on the CPU under a caller's
  ``torch.set_default_device``).
  ``n_jobs`` sets torch's thread count, which is the whole process's, for each call and restores
  it after: estimators fitted side by side in threads (joblib's threading backend) should leave
  it None. The default dtype is the process's too: under a float64 default, do not fit in
  threads side by side either.
* **Validation.** No data is held out unless ``validation_fraction`` is set; then that fraction
  (stratified for the classifier) is held out, its loss is logged per epoch in ``history_``,
  training stops after ``n_iter_no_change`` epochs without improvement, and the weights of the
  best epoch are kept.
* **Pickling.** The fitted torch module is pickled with the estimator (pickle, joblib); an
  unpickled estimator predicts exactly as the original.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import sklearn
import torch
from joblib import effective_n_jobs
from numpy.typing import ArrayLike
from sklearn.base import (BaseEstimator, ClassifierMixin, ClassNamePrefixFeaturesOutMixin, OneToOneFeatureMixin,
                          RegressorMixin, TransformerMixin, is_classifier)
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.utils import Tags, check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y, validate_data
from torch import nn

from msresnet1d.data.loader import TensorBatchLoader, epoch_generator
from msresnet1d.data.preprocess import Normalization, canonical_band, check_band, preprocess_signal, resample
from msresnet1d.models import create_model
from msresnet1d.values import MAX_THREADS, is_number, is_whole
from msresnet1d.models.registry import model_options
from msresnet1d.training.checkpoint import plain
from msresnet1d.training.config import TrainConfig, from_source
from msresnet1d.training.engine import TrainingError, check_finite_weights, seed_torch, torch_threads, train_one_epoch
from msresnet1d.training.optim import (balanced_sample_weights, build_loss, build_optimizer, build_scheduler,
                                       warn_double_balancing)

__all__ = ["MSResNet1dClassifier", "MSResNet1dRegressor", "SignalPreprocessor"]

_Estimator = TypeVar("_Estimator", bound="_NetworkEstimator")

#: Samples per inference batch (bounds memory only) ...
_EVAL_BATCH_SIZE = TrainConfig.eval_batch_size
#: ... and at most this many input values (n_channels x n_timepoints each) in a batch: long signals
#: come in fewer samples a batch (4,500 timepoints: 116), beat windows (up to 512 values) in full ones.
_EVAL_BATCH_VALUES = _EVAL_BATCH_SIZE * 512

#: Keyword arguments of the network that ``fit`` derives from the data.
_INFERRED_MODEL_KWARGS = ("in_channels", "num_classes", "out_features")

#: Keyword arguments of the network for inputs the estimators never pass (they feed it X alone).
_UNSUPPORTED_MODEL_KWARGS = ("extra_features",)


def _check_layout(estimator: BaseEstimator, X: np.ndarray, reset: bool) -> np.ndarray:
    """Check the shape of a validated array X and return it as (n_samples, n_channels, n_timepoints).

    With ``reset``, record ``n_channels_``, ``n_timepoints_`` and (2-D X only) ``n_features_in_``
    on ``estimator``; otherwise compare X with them when they exist.
    """
    name = type(estimator).__name__
    if X.ndim not in (2, 3):
        raise ValueError(
            f"{name} expects X of shape (n_samples, n_timepoints) or (n_samples, n_channels, n_timepoints), "
            f"got a {X.ndim}-D array of shape {X.shape}"
        )
    signals = X[:, np.newaxis, :] if X.ndim == 2 else X
    n_channels, n_timepoints = signals.shape[1:]
    if min(n_channels, n_timepoints) < 1:
        raise ValueError(f"Found array with shape {X.shape} while {name} requires at least 1 channel and 1 timepoint.")
    if reset:
        if n_channels > n_timepoints:  # 12 leads of 5,000 samples given as (n, 5000, 12) train without an error
            _warn_user(f"{name}: X has {n_channels} channels of {n_timepoints} timepoints each: is it (n_samples, "
                       "n_timepoints, n_channels)? Signals are (n_samples, n_channels, n_timepoints): pass "
                       "X.transpose(0, 2, 1)")
        estimator.n_channels_, estimator.n_timepoints_ = n_channels, n_timepoints
        if X.ndim == 2:
            estimator.n_features_in_ = n_timepoints
        else:
            estimator.__dict__.pop("n_features_in_", None)  # left over from an earlier fit on 2-D X
        return signals
    if not hasattr(estimator, "n_channels_"):
        return signals  # a stateless transformer used without fit
    if n_channels != estimator.n_channels_:
        raise ValueError(f"X has {n_channels} channel(s), but {name} was fitted on {estimator.n_channels_} channel(s)")
    if n_timepoints != estimator.n_timepoints_:
        unit = "features" if X.ndim == 2 else "timepoints"
        raise ValueError(
            f"X has {n_timepoints} {unit}, but {name} is expecting {estimator.n_timepoints_} {unit} as input"
        )
    return signals


def _check_feature_names(estimator: BaseEstimator, X: Any, reset: bool) -> None:
    """Record (``reset``) or check ``feature_names_in_`` from the columns of X before it is converted
    to an array, with scikit-learn's own checks, warnings and messages; ``n_features_in_`` is left
    to :func:`_check_layout`. A stateless transformer used without fit checks nothing, as for
    the layout."""
    if reset or hasattr(estimator, "n_channels_"):
        # ensure_2d=False: X may be (n_samples, n_channels, n_timepoints), whose shape[1] is not a number of features
        validate_data(estimator, X, reset=reset, skip_check_array=True, ensure_2d=False)


def _warn_user(message: str) -> None:
    """A UserWarning attributed to the first caller outside this package and scikit-learn (whose
    ``set_output`` wraps ``transform``): the user's line, whichever public method was called."""
    inside = (os.path.dirname(__file__) + os.sep, os.path.dirname(sklearn.__file__) + os.sep)
    frame, level = sys._getframe(0), 1
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, UserWarning, stacklevel=level)


def _input_scale(signals: np.ndarray) -> np.ndarray:
    """(n_channels,) each channel's typical scale: the median over the samples of each signal's
    standard deviation, from signals (n_samples, n_channels, n_timepoints)."""
    # in float64: a float32 standard deviation overflows from about 1e19 (the warning read "nan, nanx fit's")
    return np.median(signals.std(axis=-1, dtype=np.float64), axis=0)  # validated X holds at least one sample


def _torch_threads(n_jobs: int | None) -> contextlib.AbstractContextManager[None]:
    """:func:`~msresnet1d.training.engine.torch_threads` of ``n_jobs`` (-1: all CPUs; None: torch's own count)."""
    return torch_threads(None if n_jobs is None else effective_n_jobs(n_jobs))


def _on_the_cpu() -> contextlib.AbstractContextManager[None]:
    """The CPU as torch's default device within the block when a caller's
    ``torch.set_default_device`` chose another (``torch.device`` as a context: a function mode
    that costs about 5 us a torch call here, so not entered otherwise)."""
    return torch.device("cpu") if torch.empty(0).device.type != "cpu" else contextlib.nullcontext()


@contextlib.contextmanager
def _training_mode_of_torch() -> Iterator[None]:
    """Run the block as training needs torch, whatever the caller's settings, then restore them:
    gradients on (also inside the caller's ``torch.no_grad()`` or ``inference_mode()``) and
    float32 as the default dtype (a caller's ``set_default_dtype(torch.float64)`` would build a
    float64 network for the float32 signals)."""
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            yield
    finally:
        torch.set_default_dtype(default)


class _NetworkEstimator(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """What the classifier and the regressor share: validation, the network, training, inference.

    Subclasses set ``_target_checks`` (``check_X_y`` options for y) and implement
    ``_encode_targets`` and ``_loss``; they may add TrainConfig fields in ``_train_options``.
    """

    _target_checks: dict[str, bool]

    def __init__(
        self,
        *,
        model: str = "msresnet1d_beat",
        model_kwargs: dict[str, Any] | None = None,
        epochs: int = 10,
        batch_size: int = 64,
        optimizer: str = "adamw",
        lr: float = 3e-3,
        momentum: float = 0.9,
        weight_decay: float = 1e-2,
        schedule: str = "cosine",
        warmup_epochs: float = 1.0,
        grad_clip: float = 0.0,
        validation_fraction: float | None = None,
        n_iter_no_change: int | None = 5,
        pad_short: bool = False,
        warm_start: bool = False,
        random_state: int | np.random.RandomState | None = None,
        n_jobs: int | None = None,
        verbose: int = 0,
    ) -> None:
        self.model = model
        self.model_kwargs = model_kwargs
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.warmup_epochs = warmup_epochs
        self.grad_clip = grad_clip
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.pad_short = pad_short
        self.warm_start = warm_start
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    # ------------------------------------------------------------------ parameters
    def set_params(self: _Estimator, **params: Any) -> _Estimator:
        """Set parameters; ``model_kwargs__<name>=value`` sets one entry of ``model_kwargs``
        (e.g. ``clf__model_kwargs__widths`` in a grid search), keeping the others."""
        prefix = "model_kwargs__"
        entries = {key.removeprefix(prefix): params.pop(key) for key in list(params) if key.startswith(prefix)}
        if entries:
            params["model_kwargs"] = {**(params.get("model_kwargs", self.model_kwargs) or {}), **entries}
        return super().set_params(**params)

    def _train_options(self) -> dict[str, Any]:
        """TrainConfig fields beyond the shared ones (the classifier's loss options)."""
        return {}

    def _train_config(self) -> TrainConfig:
        """The training options as a TrainConfig (which validates them)."""
        try:
            return TrainConfig(
                epochs=self.epochs, batch_size=self.batch_size, optimizer=self.optimizer, lr=self.lr,
                momentum=self.momentum, weight_decay=self.weight_decay, schedule=self.schedule,
                warmup_epochs=self.warmup_epochs, grad_clip=self.grad_clip, **self._train_options(),
            )
        except ValueError as exc:
            hint = (" ('inverse' weighs classes as scikit-learn's class_weight='balanced' does)"
                    if "class_weights" in str(exc) and getattr(self, "class_weights", None) == "balanced" else "")
            raise ValueError(from_source(exc, type(self).__name__) + hint) from None

    def _check_params(self) -> None:
        """Validate the parameters that TrainConfig does not hold."""
        name = type(self).__name__
        if self.validation_fraction is not None and not (
                is_number(self.validation_fraction) and 0 < self.validation_fraction < 1):
            raise ValueError(f"{name}: validation_fraction must be None or in (0, 1), got {self.validation_fraction!r}")
        threads = is_whole(self.n_jobs) and self.n_jobs != 0 and self.n_jobs <= MAX_THREADS  # True is not 1 thread
        if self.n_jobs is not None and not threads:
            raise ValueError(f"{name}: n_jobs must be None, a number of torch threads in [1, {MAX_THREADS}], "
                             f"or < 0 (-1: all CPUs), got {self.n_jobs!r}")
        if self.n_iter_no_change is not None and not (is_whole(self.n_iter_no_change) and self.n_iter_no_change >= 1):
            raise ValueError(f"{name}: n_iter_no_change must be None or a whole number >= 1 (epochs), "
                             f"got {self.n_iter_no_change!r}")
        if not (isinstance(self.verbose, (bool, np.bool_)) or is_whole(self.verbose) and self.verbose >= 0):
            raise ValueError(f"{name}: verbose must be a whole number >= 0 or a bool (0: silent), got {self.verbose!r}")
        for flag in ("pad_short", "warm_start"):  # "no" would count as true
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise ValueError(f"{name}: {flag} must be True or False, got {getattr(self, flag)!r}")
        if self.model_kwargs is not None and not isinstance(self.model_kwargs, dict):
            raise ValueError(f"{name}: model_kwargs must be a dict or None, got {type(self.model_kwargs).__name__}")
        inferred = sorted(set(self.model_kwargs or {}) & set(_INFERRED_MODEL_KWARGS))
        if inferred:
            raise ValueError(f"{name}: model_kwargs must not set {', '.join(inferred)}: fit infers them from X and y")
        unsupported = sorted(set(self.model_kwargs or {}) & set(_UNSUPPORTED_MODEL_KWARGS))
        if unsupported:
            raise ValueError(f"{name}: model_kwargs must not set {', '.join(unsupported)}: the estimator feeds the "
                             "network the signals X alone, without per-sample extra features")

    def _network_params(self) -> dict[str, Any]:
        """The parameters the network is built from, ``model`` and ``model_kwargs``, as plain values
        to compare (numpy arrays and integers, e.g. from a parameter grid, as lists and ints)."""
        return {"model": self.model, "model_kwargs": plain(self.model_kwargs or {})}

    def _check_warm_start(self) -> None:
        """Refuse a warm start when ``model`` or ``model_kwargs`` changed since the network was built."""
        built, now = getattr(self, "_built_from", None), self._network_params()
        if built is not None and now != built:  # None: fitted by a version that did not record it
            raise ValueError(
                f"{type(self).__name__}: warm_start=True continues the fitted network, built with "
                f"model={built['model']!r}, model_kwargs={built['model_kwargs']}, but the estimator now has "
                f"model={now['model']!r}, model_kwargs={now['model_kwargs']}; fit with warm_start=False to build "
                "the new network"
            )

    # ------------------------------------------------------------------ subclass hooks
    def _encode_targets(self, y: np.ndarray, reset: bool) -> tuple[np.ndarray, int]:
        """Validated y -> (training targets (n_samples, ...), number of network outputs)."""
        raise NotImplementedError

    def _loss(self, cfg: TrainConfig, targets: np.ndarray) -> nn.Module:
        """The training loss, given the training part of the encoded targets."""
        raise NotImplementedError

    # ------------------------------------------------------------------ fit
    def fit(self: _Estimator, X: ArrayLike, y: ArrayLike) -> _Estimator:
        """Train the network.

        Args:
            X: signals (n_samples, n_timepoints) or (n_samples, n_channels, n_timepoints).
            y: targets (n_samples,) (the regressor also takes (n_samples, n_outputs)).

        There is no ``sample_weight``: every sample weighs the same (the classifier can weight
        classes with ``class_weights`` or ``balanced_sampler``).

        With ``warm_start=True`` and a fitted network, train it ``epochs`` more epochs (with a
        new optimizer and schedule) on X and y, which must match the fitted layout and targets;
        ``model`` and ``model_kwargs`` must be those the network was built with (a ValueError
        otherwise: fit with ``warm_start=False`` to build a network from the new ones).

        A fit that raises (bad parameters, X or y, a diverging loss, an interrupt) leaves the
        estimator unfitted: the fitted attributes (``model_``, ``history_``, ``classes_``,
        ``n_timepoints_``, ...) are removed, also those of an earlier fit. Only a warm start
        rejected before training (e.g. X or y not matching the fitted network) keeps them.

        Returns:
            self
        """
        reset = not (self.warm_start and hasattr(self, "model_"))
        changed = reset  # a new fit replaces the fitted attributes from the start, a warm start from training on
        try:
            cfg = self._train_config()
            self._check_params()
            if not reset:
                self._check_warm_start()
            _check_feature_names(self, X, reset)
            X, y = check_X_y(X, y, allow_nd=True, dtype=np.float32, estimator=self, **self._target_checks)
            signals = _check_layout(self, X, reset)
            if reset:
                self.input_scale_ = _input_scale(signals)
            else:
                self._check_input_scale(signals, "fit (warm start)")
            targets, n_outputs = self._encode_targets(y, reset)
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max)) if reset else self._seed
            train, val = self._split(targets, seed)
            with (_torch_threads(self.n_jobs), torch.random.fork_rng(devices=[]), _training_mode_of_torch(),
                  _on_the_cpu()):
                model = self._build_model(n_outputs, seed) if reset else self.model_
                signals = self._fit_length(signals, model)
                if reset:
                    self._seed, self.model_, self.history_ = seed, model, []
                    self._built_from = self._network_params()
                changed = True
                self._train(signals, targets, train, val, cfg)
        except BaseException:
            if changed:
                self._forget_fit()
            raise
        return self

    def _forget_fit(self) -> None:
        """Remove what fit learned: the attributes ending in "_" and the private ``_seed``,
        ``_built_from`` and ``_single_output``."""
        private = ("_seed", "_built_from", "_single_output")
        for name in [name for name in vars(self) if name.endswith("_") or name in private]:
            delattr(self, name)

    def _split(self, targets: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Indices of the training samples and, with ``validation_fraction``, of the held-out ones
        (stratified for a classifier)."""
        train, val = np.arange(len(targets)), None
        if self.validation_fraction is not None:
            try:
                train, val = train_test_split(train, test_size=self.validation_fraction, random_state=seed,
                                              stratify=targets if is_classifier(self) else None)
            except ValueError as e:  # e.g. fewer held-out samples than classes, for a stratified split
                raise ValueError(f"{type(self).__name__}: cannot hold out validation_fraction={self.validation_fraction} "
                                 f"of {len(targets)} samples: {e}") from None
        if len(train) < 2:
            held_out = f" after holding out validation_fraction={self.validation_fraction}" if val is not None else ""
            raise ValueError(f"{type(self).__name__} needs at least 2 samples to train (batch normalisation), "
                             f"got n_samples = {len(train)}{held_out}")
        return train, val

    def _build_model(self, n_outputs: int, seed: int) -> nn.Module:
        """The network for ``n_channels_`` input channels and ``n_outputs`` outputs, initialised from ``seed``."""
        seed_torch(seed, torch.device("cpu"))  # the CPU's generator only: fit forks no GPU's
        try:
            model = create_model(self.model, in_channels=self.n_channels_, **self._head_size(n_outputs),
                                 **(self.model_kwargs or {}))
        except RuntimeError as e:  # sizes torch cannot allocate (past its 64-bit size count, or the memory)
            raise ValueError(f"{type(self).__name__}: model {self.model!r} with model_kwargs {self.model_kwargs}: "
                             f"{e}") from None
        if model.dims != 1:
            raise ValueError(
                f"{type(self).__name__}: model {self.model!r} builds a {model.dims}-D network; signals "
                "(n_samples, n_channels, n_timepoints) need a 1-D one"
            )
        return model

    def _head_size(self, n_outputs: int) -> dict[str, int]:
        """The network's keyword argument that sizes its linear head: ``num_classes`` (every
        registered model has it)."""
        return {"num_classes": n_outputs}

    def _fit_length(self, signals: np.ndarray, model: nn.Module) -> np.ndarray:
        """Signals (n_samples, n_channels, n_timepoints) at least as long as ``model`` needs:
        zero-padded at the end with ``pad_short``, else a ValueError."""
        needed, length = model.min_input_size, signals.shape[-1]
        if length >= needed:
            return signals
        if not self.pad_short:
            raise ValueError(
                f"X has {length} timepoints, but the network of {type(self).__name__} needs at least {needed} "
                f"(model {self.model!r}); pass pad_short=True to zero-pad shorter signals, and check that X is "
                "(n_samples, n_channels, n_timepoints)"
            )
        return np.pad(signals, ((0, 0), (0, 0), (0, needed - length)))

    def _train(self, signals: np.ndarray, targets: np.ndarray, train: np.ndarray, val: np.ndarray | None,
               cfg: TrainConfig) -> None:
        """``cfg.epochs`` epochs on the samples ``train``, appending to ``history_``; with
        validation samples ``val``, stop early and keep the weights of the lowest validation loss."""
        stride = self.model_.total_stride
        if cfg.batch_size == 1 and signals.shape[-1] <= stride:  # the last stage's length: ceil(L / total stride)
            raise ValueError(
                f"{type(self).__name__}: batch_size=1 and signals of {signals.shape[-1]} timepoints leave one "
                f"value per channel in the network's last stage (total stride {stride}), and BatchNorm needs at "
                f"least 2 in training: use batch_size >= 2, or signals longer than {stride} timepoints"
            )
        x, t = torch.tensor(signals), torch.from_numpy(targets)
        loader = TensorBatchLoader(
            x[train], t[train], cfg.batch_size, shuffle=True, seed=self._seed,
            drop_last=len(train) % cfg.batch_size == 1,  # a batch of one sample breaks batch normalisation
            sample_weights=balanced_sample_weights(targets[train]) if cfg.balanced_sampler else None,
        )
        warn_double_balancing(cfg)
        loss_fn = self._loss(cfg, targets[train])
        optimizer = build_optimizer(self.model_, cfg)
        scheduler = build_scheduler(optimizer, cfg, len(loader))
        first = len(self.history_)
        best_loss, best_state, stale = np.inf, None, 0
        for epoch in range(first, first + cfg.epochs):
            seed_torch(int(epoch_generator(self._seed, epoch).initial_seed()), torch.device("cpu"))  # dropout
            loader.set_epoch(epoch)
            try:
                loss, _, _ = train_one_epoch(self.model_, loader, loss_fn, optimizer, scheduler,
                                             grad_clip=cfg.grad_clip)
                check_finite_weights(self.model_)
            except TrainingError as e:
                raise TrainingError(f"{type(self).__name__}: {e} at epoch {epoch + 1}; try a lower lr or "
                                    "grad_clip > 0") from None
            row = {"epoch": epoch + 1, "loss": loss}
            if val is not None:
                row["val_loss"] = loss_fn(self._batched(x[val], self.model_), t[val]).item()
                if row["val_loss"] < best_loss:
                    best_loss, stale = row["val_loss"], 0
                    best_state = {key: value.clone() for key, value in self.model_.state_dict().items()}
                else:
                    stale += 1
            self.history_.append(row)
            if self.verbose:
                print(f"{type(self).__name__} " + ", ".join(f"{key} {value:.4g}" for key, value in row.items()))
            if self.n_iter_no_change is not None and stale >= self.n_iter_no_change:
                break
        if best_state is not None:
            self.model_.load_state_dict(best_state)
        self.model_.eval()

    # ------------------------------------------------------------------ inference
    def _batched(self, x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``fn`` over x (n_samples, n_channels, n_timepoints) in eval mode without gradients,
        at most ``_EVAL_BATCH_SIZE`` samples and ``_EVAL_BATCH_VALUES`` input values at a time."""
        self.model_.eval()
        size = max(1, min(_EVAL_BATCH_SIZE, _EVAL_BATCH_VALUES // max(1, x.shape[1] * x.shape[2])))
        with torch.inference_mode():
            return torch.cat([fn(x[start:start + size]) for start in range(0, len(x), size)])

    def _forward(self, X: ArrayLike, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``fn`` applied to validated X (n_samples, [n_channels,] n_timepoints)."""
        check_is_fitted(self, "model_")
        _check_feature_names(self, X, reset=False)
        X = check_array(X, allow_nd=True, dtype=np.float32, estimator=self, input_name="X")
        signals = _check_layout(self, X, reset=False)
        self._check_input_scale(signals, "this call")  # before pad_short's zeros, as fit measured them
        signals = self._fit_length(signals, self.model_)
        with _torch_threads(self.n_jobs), _on_the_cpu():  # where fit put the network
            return self._batched(torch.tensor(signals), fn)

    def _check_input_scale(self, signals: np.ndarray, where: str) -> None:
        """Warn when a channel's :func:`_input_scale` differs more than 10x from fit's
        (``input_scale_``): signals in other units (V for mV, ADC counts) or not normalised as in fit."""
        fitted_scale = getattr(self, "input_scale_", None)  # absent from estimators fitted by version 0.1.0 before it
        if fitted_scale is None:
            return
        mismatched = [(c, now, fitted) for c, (now, fitted) in enumerate(zip(_input_scale(signals), fitted_scale))
                      if fitted > 0 and not 0.1 <= now / fitted <= 10]
        if mismatched:
            channels = "; ".join(f"channel {c}: {now:.3g}, {now / fitted:.3g}x fit's {fitted:.3g}"
                                 for c, now, fitted in mismatched)
            _warn_user(f"{type(self).__name__}: the signals in {where} have another typical standard deviation than "
                       f"the signals fitted on ({channels}): give signals in the units and normalisation of the "
                       "training signals (the network does not rescale them; SignalPreprocessor z-scores each signal)")

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Embeddings: the network's globally pooled features, before the linear head.

        Args:
            X: signals (n_samples, n_timepoints) or (n_samples, n_channels, n_timepoints).

        Returns:
            float32 (n_samples, n_embedding), n_embedding = ``model_.num_features``.
        """
        return self._forward(X, lambda xb: self.model_.forward_head(self.model_.forward_features(xb),
                                                                    pre_logits=True)).numpy()

    @property
    def _n_features_out(self) -> int:
        """Columns of :meth:`transform`, which ``get_feature_names_out`` names after the class
        (``msresnet1dclassifier0``, ...), so that ``set_output(transform="pandas")`` works."""
        return self.model_.num_features

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


class MSResNet1dClassifier(ClassifierMixin, _NetworkEstimator):
    """Signal classifier: a registered 1-D network (default ``msresnet1d_beat``) trained with
    the project's optimizer, schedule and loss builders.

    Args:
        model: registered model name (see ``msresnet1d.models.list_models``); must be 1-D.
        model_kwargs: keyword arguments of the model (e.g. ``kernels``, ``widths``, ``fusion``);
            ``in_channels`` and ``num_classes`` come from the data, and ``extra_features`` is
            refused (the estimator passes the signals alone). One entry can be set with
            ``set_params(model_kwargs__widths=...)``.
        epochs, batch_size, optimizer ("adamw" | "sgd"), lr, momentum (SGD; one-cycle cycles it), weight_decay,
            schedule ("cosine" | "onecycle" | "constant"), warmup_epochs, grad_clip (0: off):
            as in :class:`~msresnet1d.training.config.TrainConfig`, with smaller defaults (a few
            hundred samples train in seconds). A ``warmup_epochs`` not below ``epochs`` becomes
            30% of the run, with a warning. "onecycle" clamps its warm-up to at least 2
            steps and at most all but the last 2; a run of fewer than 4 steps in all (e.g. one
            batch per epoch for 3 epochs) trains at the constant rate ``lr`` instead.
        loss: "cross_entropy" or "focal" (with ``focal_gamma``).
        class_weights: loss weights from the training labels: "none", "inverse" (1 / class
            frequency: scikit-learn's ``class_weight="balanced"`` up to a constant factor) or
            "inverse_sqrt".
        label_smoothing: in [0, 1).
        balanced_sampler: draw training batches with probability ~ 1 / class frequency.
        validation_fraction: hold this fraction out (stratified) for early stopping; None: none.
        n_iter_no_change: with validation, stop after this many epochs without a lower
            validation loss (None: run all epochs); the best epoch's weights are kept.
        pad_short: zero-pad signals shorter than ``model_.min_input_size`` instead of raising.
        warm_start: let ``fit`` continue training the fitted network instead of starting anew;
            a ValueError if ``model`` or ``model_kwargs`` changed since it was built.
        random_state: seed of initialisation, batch order, dropout and validation split.
        n_jobs: torch threads during fit and inference, at most 1024 (-1: all CPUs); None leaves
            torch's setting (the process's: leave it None for fits run in threads side by side).
        verbose: print one line per epoch when > 0.

    Attributes:
        classes_: the sorted labels seen in fit (any type: ints, strings, ...).
        model_: the trained torch module (in eval mode).
        n_channels_, n_timepoints_: the input layout seen in fit.
        n_features_in_: n_timepoints_, when fit saw 2-D X (absent after 3-D X).
        feature_names_in_: the column names of X, when fit saw a DataFrame whose column names
            are all strings (absent otherwise).
        history_: one dict per epoch: "epoch", "loss" (training) and, with validation, "val_loss".
        input_scale_: (n_channels_,) each channel's typical standard deviation in fit's signals
            (the median over the samples); later calls warn when theirs differs more than 10x
            (other units, e.g. V for mV or ADC counts, or another normalisation): the network
            takes the signals as they are.
    """

    _target_checks = {"multi_output": False, "y_numeric": False}

    def __init__(
        self,
        *,
        model: str = "msresnet1d_beat",
        model_kwargs: dict[str, Any] | None = None,
        epochs: int = 10,
        batch_size: int = 64,
        optimizer: str = "adamw",
        lr: float = 3e-3,
        momentum: float = 0.9,
        weight_decay: float = 1e-2,
        schedule: str = "cosine",
        warmup_epochs: float = 1.0,
        grad_clip: float = 0.0,
        loss: str = "cross_entropy",
        focal_gamma: float = 2.0,
        class_weights: str = "none",
        label_smoothing: float = 0.0,
        balanced_sampler: bool = False,
        validation_fraction: float | None = None,
        n_iter_no_change: int | None = 5,
        pad_short: bool = False,
        warm_start: bool = False,
        random_state: int | np.random.RandomState | None = None,
        n_jobs: int | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(
            model=model, model_kwargs=model_kwargs, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
            lr=lr, momentum=momentum, weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs,
            grad_clip=grad_clip, validation_fraction=validation_fraction, n_iter_no_change=n_iter_no_change,
            pad_short=pad_short, warm_start=warm_start, random_state=random_state, n_jobs=n_jobs, verbose=verbose,
        )
        self.loss = loss
        self.focal_gamma = focal_gamma
        self.class_weights = class_weights
        self.label_smoothing = label_smoothing
        self.balanced_sampler = balanced_sampler

    def _train_options(self) -> dict[str, Any]:
        return dict(loss=self.loss, focal_gamma=self.focal_gamma, class_weights=self.class_weights,
                    label_smoothing=self.label_smoothing, balanced_sampler=self.balanced_sampler)

    def _encode_targets(self, y: np.ndarray, reset: bool) -> tuple[np.ndarray, int]:
        """Labels -> class indices into ``classes_`` (int64)."""
        check_classification_targets(y)
        if reset:
            classes, codes = np.unique(y, return_inverse=True)
            if len(classes) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes, but y contains only one class: "
                    f"{classes.tolist()[0]!r}"
                )
            self.classes_ = classes
        else:
            unseen = np.setdiff1d(y, self.classes_)
            if unseen.size:
                raise ValueError(
                    f"y contains labels {unseen.tolist()} not in classes_ {self.classes_.tolist()}: a warm start "
                    "cannot add classes (fit with warm_start=False)"
                )
            codes = np.searchsorted(self.classes_, y)
        return codes.astype(np.int64), len(self.classes_)

    def _loss(self, cfg: TrainConfig, targets: np.ndarray) -> nn.Module:
        return build_loss(cfg, targets, len(self.classes_))

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities, float64 (n_samples, n_classes), columns in ``classes_`` order.

        Args:
            X: signals (n_samples, n_timepoints) or (n_samples, n_channels, n_timepoints).
        """
        return self._forward(X, lambda xb: torch.softmax(self.model_(xb).double(), dim=1)).numpy()

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The most probable class of each signal, (n_samples,) of ``classes_``' type.

        Args:
            X: signals (n_samples, n_timepoints) or (n_samples, n_channels, n_timepoints).
        """
        probabilities = self.predict_proba(X)
        return self.classes_[probabilities.argmax(axis=1)]


class MSResNet1dRegressor(RegressorMixin, _NetworkEstimator):
    """Signal regressor (forecasting, or any real-valued target per signal): a registered 1-D
    network with one linear output per target, trained on the mean squared error of the
    standardised targets.

    Args: those of :class:`MSResNet1dClassifier` without the class options (``loss``,
    ``focal_gamma``, ``class_weights``, ``label_smoothing``, ``balanced_sampler``); the
    validation split is random rather than stratified.

    Attributes:
        model_, n_channels_, n_timepoints_, n_features_in_, feature_names_in_, history_, input_scale_: as for
            the classifier (losses in units of the standardised targets).
        target_scaler_: the StandardScaler of the targets; predictions are mapped back with it.
    """

    _target_checks = {"multi_output": True, "y_numeric": True}

    def _encode_targets(self, y: np.ndarray, reset: bool) -> tuple[np.ndarray, int]:
        """Targets (n_samples,) or (n_samples, n_outputs) -> standardised float32 (n_samples, n_outputs)."""
        single_output = y.ndim == 1
        y = y.reshape(len(y), -1).astype(np.float64)
        if reset:
            self.target_scaler_ = StandardScaler().fit(y)
            self._single_output = single_output
        elif y.shape[1] != self.target_scaler_.n_features_in_:
            raise ValueError(
                f"y has {y.shape[1]} target(s), but {type(self).__name__} was fitted on "
                f"{self.target_scaler_.n_features_in_}"
            )
        # an array also under scikit-learn's transform_output="pandas", which makes transform give a DataFrame
        return np.asarray(self.target_scaler_.transform(y), dtype=np.float32), y.shape[1]

    def _loss(self, cfg: TrainConfig, targets: np.ndarray) -> nn.Module:
        return nn.MSELoss()

    def _head_size(self, n_outputs: int) -> dict[str, int]:
        """``out_features`` where the network has a regression head of its own (MSResNet1d),
        else ``num_classes``: a linear head either way."""
        return {"out_features" if "out_features" in model_options(self.model) else "num_classes": n_outputs}

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predicted targets, float64 (n_samples,) or (n_samples, n_outputs) like y in fit.

        Args:
            X: signals (n_samples, n_timepoints) or (n_samples, n_channels, n_timepoints).
        """
        outputs = self._forward(X, lambda xb: self.model_(xb)).double().numpy()
        outputs = self.target_scaler_.inverse_transform(outputs)
        return outputs[:, 0] if self._single_output else outputs

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


class SignalPreprocessor(TransformerMixin, BaseEstimator):
    """Band-pass, resample and normalise signals with the data layer's code
    (:func:`~msresnet1d.data.preprocess.preprocess_signal`), for scikit-learn pipelines.

    Each signal is processed on its own (no state is learned): NaN samples are filled by linear
    interpolation, then a zero-phase Butterworth band-pass, polyphase resampling and a
    normalisation per sample and channel are applied. Output: float32 with the input's layout,
    (n_samples, n_timepoints') or (n_samples, n_channels, n_timepoints'), n_timepoints' =
    ceil(n_timepoints * target_fs / fs) (for rates whose ratio is a fraction with a denominator
    of at most 10,000; else as :func:`msresnet1d.data.preprocess.resample` says).

    After ``fit`` on 2-D X, :meth:`get_feature_names_out` names the output columns, so that
    ``set_output(transform="pandas")`` (on the preprocessor or a pipeline) gives DataFrames.
    The output of 3-D X has no columns: pandas output for it (``set_output`` or scikit-learn's
    global ``transform_output``) is a ValueError, and without ``fit`` a NotFittedError (as for
    scikit-learn's stateless ``Normalizer``).

    Args:
        fs: sampling rate of the input in Hz; required (None, the default, is refused in ``fit``
            and ``transform``): no rate is right for every recording (MIT-BIH 360, CinC 2017 300).
        target_fs: output rate in Hz; None keeps ``fs``.
        band: (low, high) band-pass corners in Hz, either may be None; None: no filter. The
            zero-phase filter needs more than 27 samples (4th order); signals shorter than two
            periods of ``low`` (4 s at 0.5 Hz: beat windows) warn, as the high-pass of each
            window on its own bends its waveform.
        normalization: "zscore", "robust" (median and IQR) or None.

    Attributes:
        n_channels_, n_timepoints_, n_features_in_, feature_names_in_: the layout and column
            names seen in fit (as for the estimators); ``transform`` checks them only after ``fit``.
    """

    def __init__(
        self,
        *,
        fs: float | None = None,
        target_fs: float | None = None,
        band: tuple[float | None, float | None] | None = (0.5, 40.0),
        normalization: Normalization | None = "zscore",
    ) -> None:
        self.fs = fs
        self.target_fs = target_fs
        self.band = band
        self.normalization = normalization

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> SignalPreprocessor:
        """Check the parameters and record the layout of X (n_samples, [n_channels,] n_timepoints);
        y is ignored."""
        self._check_params()
        signals = self._validate(X)  # before the names are recorded: a refit on bad X keeps the fitted ones
        _check_feature_names(self, X, reset=True)
        _check_layout(self, signals, reset=True)
        return self

    def transform(self, X: ArrayLike) -> np.ndarray:
        """Preprocessed signals, float32 (n_samples, [n_channels,] n_timepoints')."""
        self._check_params()
        _check_feature_names(self, X, reset=False)
        X = self._validate(X)
        signals = _check_layout(self, X, reset=False)
        self._warn_short_for_high_pass(signals.shape[-1])
        out = preprocess_signal(signals, self.fs, target_fs=self.target_fs, band=self.band,
                                normalization=self.normalization, name=type(self).__name__)
        return out[:, 0] if X.ndim == 2 else out

    def get_feature_names_out(self, input_features: ArrayLike | None = None) -> np.ndarray:
        """Names of the columns of :meth:`transform`'s output, after ``fit`` on 2-D X.

        Not resampled (``target_fs`` None or ``fs``), output column i is the signal at the instant
        of input column i and keeps its name: ``feature_names_in_``, or ``x0``, ``x1``, ... after an
        array. Resampled, the columns are other instants, named after the class:
        ``signalpreprocessor0``, ``signalpreprocessor1``, ... (n_timepoints' of them).

        Args:
            input_features: None, or the input column names: ``feature_names_in_`` or, after
                fitting on an array, any ``n_features_in_`` names.

        Returns:
            the names as an object array.

        Raises:
            NotFittedError: before ``fit``, which gives the number of columns (also for
                ``set_output(transform="pandas")``).
            ValueError: after ``fit`` on 3-D X, whose output has channels and no columns.
        """
        check_is_fitted(self, "n_timepoints_")  # the tag requires_fit=False would let check_is_fitted() pass
        self._check_params()
        if not hasattr(self, "n_features_in_"):
            raise ValueError(
                f"{type(self).__name__} was fitted on 3-D X (n_samples, n_channels, n_timepoints): its output has no "
                'columns to name, and cannot be a DataFrame (set_output(transform="pandas")); fit on 2-D X '
                '(n_samples, n_timepoints) to name them, or keep set_output(transform="default") for 3-D X'
            )
        if self.target_fs is None or self.target_fs == self.fs:
            return OneToOneFeatureMixin.get_feature_names_out(self, input_features)
        return ClassNamePrefixFeaturesOutMixin.get_feature_names_out(self, input_features)

    @property
    def _n_features_out(self) -> int:
        """Resampled output columns (for ``ClassNamePrefixFeaturesOutMixin``): the data layer's length."""
        return resample(np.zeros(self.n_timepoints_), self.fs, self.target_fs).shape[-1]

    def _warn_short_for_high_pass(self, n_timepoints: int) -> None:
        """Warn when signals last less than two periods of the band's low corner: a high-pass of
        each short window on its own bends its waveform (on MIT-BIH record 208, about one 0.7 s
        beat window in six high-passed at 0.5 Hz correlates below 0.9 with the same beat cut from
        the filtered record)."""
        low = self.band[0] if self.band is not None else None
        if low and n_timepoints / self.fs < 2 / low:
            without = "band=None" if self.band[1] is None else f"band=(None, {self.band[1]!r})"
            _warn_user(f"{type(self).__name__}: signals of {n_timepoints / self.fs:.3g} s high-passed at {low:g} Hz "
                       f"each on its own (shorter than 2 periods, {2 / low:.3g} s) have their waveform bent by the "
                       "filter: band-pass whole records before cutting windows (msresnet1d.data.load_beats does), or "
                       f"leave the high-pass out ({without})")

    def _validate(self, X: ArrayLike) -> np.ndarray:
        return check_array(X, allow_nd=True, dtype=(np.float64, np.float32), ensure_all_finite="allow-nan",
                           estimator=self, input_name="X")

    def _check_params(self) -> None:
        name = type(self).__name__

        def rate(value: Any) -> bool:
            return is_number(value) and 0 < value < np.inf

        if not rate(self.fs):
            raise ValueError(f"{name}: fs must be the positive sampling rate of X in Hz (it has no default: 360.0 "
                             f"for MIT-BIH, 300.0 for CinC 2017), got {self.fs!r}")
        if self.target_fs is not None and not rate(self.target_fs):
            raise ValueError(f"{name}: target_fs must be a positive rate in Hz or None, got {self.target_fs!r}")
        if self.normalization not in ("zscore", "robust", None):
            raise ValueError(f"{name}: normalization must be 'zscore', 'robust' or None, got {self.normalization!r}")
        if self.band is not None:
            canonical_band(self.band, name)  # its shape: the parameter is kept as given
            try:
                check_band(self.fs, *self.band)
            except ValueError as e:
                raise ValueError(f"{name}: band={tuple(self.band)!r}: {e}") from None

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.allow_nan = True
        tags.input_tags.three_d_array = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
