"""The training engine shared by the 1D (ECG) and 2D (image) paths.

:class:`Trainer` runs epochs over a task's training batches, selects the best epoch on the
validation split (never the test split), checkpoints atomically after every epoch and can resume
exactly: epoch ``e`` draws its batch order from ``(seed, e)`` and seeds torch with
``(seed, e)``, and the optimizer, scheduler and RNG states are restored, so a resumed run ends
with the same weights as an uninterrupted one. Under ``torchrun`` the model is wrapped in
DistributedDataParallel and only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import logging
import math
import os
import stat
import tempfile
import time
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

try:
    import fcntl
except ImportError:  # Windows: no flock, so run folders are not locked there
    fcntl = None

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.loader import epoch_generator
from ..atomic import file_version, temporary_files, uncreatable, write_text
from ..models.fuse import fuse_batchnorm
from ..models.tta import with_tta
from .checkpoint import (FORMAT_VERSION, atomic_save, check_compatible, code_version, load_checkpoint, rng_state,
                         set_rng_state)
from .config import TrainConfig
from .configured import resolve_model, same_model_call
from .distributed import DistContext
from .ema import WeightEMA
from .metrics import check_probabilities, classification_report, format_report, json_safe
from .optim import build_loss, build_optimizer, build_scheduler
from .tasks import DATABASES, Task, resolve_data

log = logging.getLogger(__name__)

# A checkpoint can only be resumed by a run that agrees on these keys.
RESUME_KEYS = ("task", "model", "model_kwargs", "data", "epochs", "batch_size", "optimizer", "lr", "momentum",
               "weight_decay", "schedule", "warmup_epochs", "loss", "focal_gamma", "class_weights", "unscored_weight",
               "balanced_sampler", "label_smoothing", "grad_clip", "ema_decay", "seed", "init", "bf16", "channels_last",
               "tta", "monitor", "select_epoch", "early_stopping")


def database_folder(task: str, data_dir: str | None) -> Path | None:
    """The folder ``[data] data_dir`` names for ``task`` (the database folder it is or holds, for
    ECG tasks), resolved (symlinks, relative spellings); None when not given or not found."""
    from ..data import DataError, find_database

    if data_dir is None:
        return None
    try:
        folder = find_database(DATABASES[task], data_dir) if task in DATABASES else Path(data_dir).expanduser()
        return folder.resolve(strict=True)
    except (DataError, OSError):
        return None


def check_same_config(saved: TrainConfig, cfg: TrainConfig, path: str | Path, source: str | None = None) -> None:
    """Raise ValueError if ``cfg`` differs from a run's ``saved`` config on :data:`RESUME_KEYS`
    (``[data]`` and ``[model_kwargs]`` completed with the defaults on both sides), naming
    ``source`` (default: ``checkpoint <path>``) and each differing key. ``data.data_dir`` is
    compared as the database folder it names, not as text: the same folder spelt otherwise (through a symlink, relative,
    as the folder holding ``mitdb/`` or as ``mitdb/`` itself) is the same run's data."""
    before, now = resolve_model(resolve_data(saved)), resolve_data(cfg)
    if not same_model_call(now, before):  # else now's model options are before's, completed already
        now = resolve_model(now)
    before, now = before.to_dict(), now.to_dict()
    folder = database_folder(cfg.task, now["data"].get("data_dir"))
    if folder is not None and folder == database_folder(saved.task, before["data"].get("data_dir")):
        before["data"]["data_dir"] = now["data"]["data_dir"]
    hint = ("; the learning-rate schedule spans a run's epochs, so a run cannot be lengthened: train the longer "
            "run in another folder" if now["epochs"] > before["epochs"] else "")
    check_compatible({"config": before}, now, path, RESUME_KEYS, source, ("then" if source else "checkpoint", "now"),
                     hint)


def check_same_world_size(ckpt: dict[str, Any], world_size: int, path: str | Path) -> None:
    """Raise ValueError if the ``last.pt`` ``ckpt`` (read from ``path``) was trained in another number
    of processes than ``world_size``: a step's batch and the schedule's length depend on it.
    Checkpoints from before the number was kept are taken as trained in ``world_size``."""
    trained_in = ckpt.get("world_size", world_size)
    if trained_in != world_size:
        how = "without torchrun" if trained_in == 1 else "torchrun's --nproc_per_node x --nnodes"
        raise ValueError(f"{path}: the run trained in {trained_in} process(es), this resume has {world_size}: a "
                         f"step's batch ({trained_in} x batch_size) and the learning-rate schedule's length depend "
                         f"on it; resume with {trained_in} ({how})")


def _differing(before: Any, now: Any) -> str:
    """How two entries of a split differ, for a message: for lists of names, their count and a
    few names that only one of them holds; else both values."""
    if isinstance(before, (list, tuple)) and isinstance(now, (list, tuple)):
        only = sorted(set(map(str, before)) ^ set(map(str, now)))
        shown = f"; in one only: {', '.join(only[:5])}{', ...' if len(only) > 5 else ''}" if only else \
            " (the same names in another order)"
        return f"{len(before)} then, {len(now)} now{shown}"
    return f"{before} then, {now} now"


#: A run folder's lock file: a run holds an exclusive ``flock`` on it while it trains (:func:`lock_run_dir`).
RUN_LOCK = ".lock"


#: The files a run writes in its folder, each atomically (``checkpoints/`` holds ``last.pt`` and
#: ``best.pt``): a run starting in the folder removes the temporary files of these a killed run
#: left, and only these.
RUN_FILES = ("config.json", "log.csv", "metrics.json", "curves.png", "confusion_matrix.png", "ecg_strip.png")
#: Every file a run writes, by its path in the run folder.
RUN_OUTPUTS = (*RUN_FILES, "checkpoints/last.pt", "checkpoints/best.pt")
#: errno values of a file system that does not support flock (Lustre without -o flock, some FUSE mounts).
_NO_FLOCK = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK}
#: Seconds a starting run retries a lock held for a moment (by another command's :func:`check_run_dir`).
_LOCK_PATIENCE = 1.0
#: Seconds between the progress lines of an epoch printed where there is no progress bar (output
#: not a terminal: ``nohup ... > log``), so that a log shows a long epoch advancing.
PROGRESS_LINE_S = 60.0


def lock_run_dir(run_dir: str | Path, create: bool = True, flag: str = "--out") -> int | None:
    """Take the lock of the run folder ``run_dir`` (an existing folder) on its :data:`RUN_LOCK`
    file: with ``create``, the exclusive ``fcntl.flock`` a training run holds until the returned
    descriptor is closed or the process ends, however it ends (the kernel releases it: a killed
    run leaves no stale lock; the file stays), its process id written in the file for the message
    another run gets; without, a shared lock on an existing file, a probe that fails only while a
    run holds the exclusive one. A lock held for a moment (another command's probe) is waited
    for, up to about a second. No lock is taken (None) where there is no ``fcntl`` (Windows) or
    the file system does not support ``flock`` (with a warning). ``flag``: the command's flag
    that names the run folder, which the refusals advise choosing another of.

    Raises:
        FileExistsError: another process holds it (another train or resume of the same folder).
        OSError: the lock file cannot be opened.
    """
    if fcntl is None:
        return None
    path = Path(run_dir) / RUN_LOCK
    # not through a symbolic link (whose target would be truncated and written), nor blocking on a FIFO
    flags = (os.O_RDWR | os.O_CREAT if create else os.O_RDONLY) | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.EISDIR):
            raise
        raise FileExistsError(_not_a_plain_file(path, "a symbolic link" if e.errno == errno.ELOOP else "a folder",
                                                flag)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FileExistsError(_not_a_plain_file(path, "not a regular file", flag))
    deadline = time.monotonic() + _LOCK_PATIENCE
    while True:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if create else fcntl.LOCK_SH) | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            try:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"  # the lock is advisory
            except OSError:
                holder = "unknown"
            os.close(fd)
            raise FileExistsError(f"run folder {run_dir} is in use by another msresnet1d train (process {holder}); "
                                  f"wait for it to end, or choose another {flag}") from None
        except OSError as e:
            os.close(fd)
            if e.errno not in _NO_FLOCK:
                raise
            warnings.warn(f"run folder {run_dir}: its file system does not support flock ({e.strerror}), so the run "
                          "is not locked: do not start two trains in it at once", stacklevel=2)
            return None
        except BaseException:
            os.close(fd)
            raise
    if not create:
        return fd
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _not_a_plain_file(path: Path, what: str, flag: str) -> str:
    return (f"run folder {path.parent}: its {path.name} is {what}: a run writes only plain files of its own there; "
            f"remove {path} (or choose another {flag})")


def check_unused(run_dir: Path, resume: bool, flag: str = "--out") -> None:
    """Refuse a run folder that holds a started run (its ``checkpoints/last.pt``), unless resuming.
    ``flag``: as :func:`check_run_dir`'s; a script (``--runs``) resumes its runs by itself, so its
    advice is to run the command again."""
    if not resume and (run_dir / "checkpoints" / "last.pt").exists():
        advice = ("pass --resume to continue it or choose --out" if flag == "--out" else
                  f"another process started it meanwhile: run the same command again to continue it, or choose "
                  f"another {flag}")
        raise FileExistsError(f"run folder {run_dir} already holds a run; {advice}")


def check_run_dir(run_dir: str | Path, resume: bool, flag: str = "--out") -> None:
    """Refuse, without creating anything, a run folder that is a file, that holds a folder where a
    run writes one of its files (:data:`RUN_OUTPUTS`: a folder ``metrics.json`` is no finished run,
    and the run would fail only as it wrote it), whose nearest existing parent folder is not
    writable (or that could not be created there:
    :func:`~msresnet1d.atomic.uncreatable`), that another process is training in (its lock,
    :func:`lock_run_dir`, is held), or, unless resuming, that holds a started run or files a run
    writes but no run (:func:`check_no_foreign_files`): cheap, so
    :func:`~msresnet1d.training.run.train` asks before the data load (and again once
    :meth:`Trainer.prepare_run_dir` holds the lock, for a run that started meanwhile). ``flag``:
    the command's flag that names the run folder (a script's ``--runs``, under which its run
    folders are), which the refusals advise choosing another of."""
    run_dir = Path(run_dir)
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise FileExistsError(f"run folder {run_dir} is a file; choose another {flag}")
    for path in (run_dir / name for name in RUN_OUTPUTS):
        if os.path.isdir(path) and not os.path.islink(path):  # a link is replaced by the file (write_text)
            raise FileExistsError(f"run folder {run_dir}: {path} is a folder, where a run writes a file; move it "
                                  f"away, or choose another {flag}")
    problem = uncreatable(run_dir / "checkpoints" / "last.pt")  # where the run writes, down to a checkpoint
    if problem:
        raise OSError(f"run folder {run_dir} cannot be {'written' if os.path.isdir(run_dir) else 'created'}: {problem}")
    if os.path.lexists(run_dir / RUN_LOCK) and (fd := lock_run_dir(run_dir, create=False, flag=flag)) is not None:
        os.close(fd)
    check_unused(run_dir, resume, flag)
    if not resume:
        check_no_foreign_files(run_dir, flag)


def check_no_foreign_files(run_dir: Path, flag: str = "--out") -> None:
    """Refuse a folder that holds files a run writes (:data:`RUN_FILES`, ``checkpoints/best.pt``)
    but no run, which would replace them: neither ``checkpoints/last.pt``, nor the :data:`RUN_LOCK`
    a run takes first, nor a ``config.json`` a run wrote (:func:`_is_run_config`); ``flag`` as
    :func:`check_run_dir`'s."""
    if (not os.path.isdir(run_dir) or os.path.lexists(run_dir / RUN_LOCK)
            or os.path.lexists(run_dir / "checkpoints" / "last.pt") or _is_run_config(run_dir / "config.json")):
        return
    found = [name for name in (*RUN_FILES, "checkpoints/best.pt") if os.path.lexists(run_dir / name)]
    if found:
        raise FileExistsError(f"run folder {run_dir} holds {', '.join(found)} but no run (no checkpoints/last.pt, "
                              f"{RUN_LOCK} or config.json of a run): a run would replace them; choose another {flag} "
                              "(a new or empty folder)")


def _is_run_config(path: Path) -> bool:
    """Whether ``path`` is a JSON object of :class:`~.config.TrainConfig` keys, among them ``task``
    and ``model`` (a run's ``config.json`` holds them all; the values are not checked)."""
    try:
        values = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):  # none, or not JSON (UnicodeDecodeError is a ValueError)
        return False
    return isinstance(values, dict) and {"task", "model"} <= set(values) <= {f.name for f in fields(TrainConfig)}


def split_contents(task: Task) -> dict[str, Any]:
    """What each split of ``task`` holds (records, class counts; the database folder aside, so
    that a copy elsewhere compares equal): what checkpoints keep as ``splits``."""
    return {key: value for key, value in task.splits.items() if key != "database"}


def check_same_splits(ckpt: dict, task: Task, source: str) -> None:
    """Raise ValueError if ``task``, rebuilt from the data, does not split it as the run that
    wrote ``ckpt`` did. Checkpoints keep ``splits`` (the database folder aside, so that a copy
    elsewhere passes): MIT-BIH's records and beats per class of each split, CinC 2017's record
    counts and test record names, Fashion-MNIST's image counts. A difference means other data: the
    embedded sample for the full database, a partial or edited copy, or records or labels changed
    since, and then the rebuilt test split may even hold records the model trained on. Checkpoints
    from before ``splits`` was stored are compared on their ``test_names`` (CinC 2017's) only."""
    saved = ckpt.get("splits", {"test_names": ckpt["test_names"]} if "test_names" in ckpt else {})
    now = split_contents(task)
    where = task.splits.get("database", "the data found")
    tested, names = saved.get("test_names"), now.get("test_names")
    if tested is not None and names is not None and set(tested) != set(names):
        other = len(set(names) - set(tested))
        raise ValueError(f"{source}: its run tested {len(tested)} records, this rebuild of its splits from {where} "
                         f"tests {len(names)}, {other} of them not in the run's test split: the database's records or "
                         "labels changed since, and the model may have trained on records it would now be tested on")
    for key in sorted(set(saved) & set(now) - {"test_names"}):  # the test records are compared as a set, above
        if saved[key] != now[key]:
            raise ValueError(f"{source}: its run's {key} differs in this rebuild of its splits from {where} "
                             f"({_differing(saved[key], now[key])}): that is other data than the run trained and "
                             "was tested on (the embedded sample, or a partial or edited copy?); give the database "
                             "it trained on (--data-dir, or MSRESNET1D_DATA)")


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch threads (None: as they are), then give the caller's
    count back: the thread count is the whole process's."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def deterministic_cuda(device: torch.device) -> Iterator[None]:
    """On a CUDA ``device``, run the block with cuDNN's deterministic algorithms (``benchmark``'s
    timing-based choice off) and without TF32 in convolutions and matrix products, so that a GPU
    run repeats itself (a resume ends as the uninterrupted run) and computes in float32 as a CPU
    does; then give the caller's settings back (process-wide flags, as the thread count). On
    another device nothing is changed."""
    if device.type != "cuda":
        yield
        return
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9; reading allow_tf32 raises once a caller used this spelling
        no_tf32 = [(cudnn.conv, "fp32_precision", "ieee"), (matmul, "fp32_precision", "ieee")]
    else:
        no_tf32 = [(cudnn, "allow_tf32", False), (matmul, "allow_tf32", False)]
    wanted = [(cudnn, "deterministic", True), (cudnn, "benchmark", False), *no_tf32]
    previous = [(owner, name, getattr(owner, name)) for owner, name, _ in wanted]
    try:
        for owner, name, value in wanted:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in previous:
            setattr(owner, name, value)


def seed_torch(seed: int, device: torch.device) -> None:
    """Seed torch's CPU generator and, for a run on a GPU, that GPU's: not every GPU's, as
    ``torch.manual_seed`` does (a caller's generators of the others are left alone)."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


@dataclass
class History:
    """Per-epoch rows (what ``log.csv`` holds) and the best validation epoch so far."""

    rows: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    best_score: float = -math.inf
    stale_epochs: int = 0


class Trainer:
    """Train ``model`` on ``task`` with ``cfg``, writing the run folder ``run_dir`` (rank 0 only).

    Run folder: ``config.json``, ``log.csv`` (one row an epoch), ``metrics.json`` (written last),
    ``checkpoints/last.pt`` (every epoch; with ``cfg.ema_decay`` also the weights' moving
    average) and ``checkpoints/best.pt`` (the weights validation chose: the moving average
    when there is one; with ``cfg.select_epoch = "last"``, the last epoch's: validation is then
    logged but chooses nothing), and PNG plots written by :mod:`msresnet1d.training.plots`.
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, task: Task, run_dir: str | Path,
                 dist: DistContext | None = None, quiet: bool = False) -> None:
        self.cfg, self.task = cfg, task
        self.dist = dist or DistContext()
        self.device = self.dist.device
        if cfg.channels_last:
            model.set_channels_last()
        self.model = model.to(self.device)
        self.run_dir = Path(run_dir)
        self._lock: int | None = None  # the run folder's lock, held from prepare_run_dir to release_run_dir
        self.quiet = quiet or not self.dist.is_main
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, len(task.train))
        scored = [task.class_names.index(c) for c in task.scored]
        self.loss_fn = build_loss(cfg, task.train_labels, len(task.class_names), scored).to(self.device)
        self.train_model = self.dist.wrap(self.model)
        self.ema = WeightEMA(self.model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.history = History()
        self.start_epoch = 0

    @property
    def evaluated(self) -> nn.Module:
        """The model that validation, best.pt and the test use: the weights' moving average
        when ``cfg.ema_decay`` is set, else the trained model itself."""
        return self.ema.module if self.ema is not None else self.model

    # ------------------------------------------------------------------ run folder
    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def prepare_run_dir(self, resume: bool = False, flag: str = "--out") -> None:
        """Create the run folder (rank 0), checked to be writable, and take its lock
        (:func:`lock_run_dir`) until :meth:`release_run_dir`; a used or impossible one was refused
        before the data load (:func:`check_run_dir`, which :func:`~msresnet1d.training.run.train`
        calls), and is refused again here, under the lock, if another run took it meanwhile. Its
        config.json is written by :meth:`write_config`, once a resume has checked the checkpoint's
        config (a refused resume leaves the folder as it was). ``flag`` names the run folder in the
        refusals' advice (:func:`check_run_dir`)."""
        if not self.dist.is_main:
            return
        try:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"run folder {self.run_dir} is not writable: {e}") from None
        try:
            self._lock = lock_run_dir(self.run_dir, flag=flag)
            check_unused(self.run_dir, resume, flag)  # a run started during this one's data load
            fd, probe = tempfile.mkstemp(dir=self.run_dir, prefix=".write-test.")  # a new file, never one there
            os.close(fd)
            os.unlink(probe)
            self._remove_temporaries()
        except FileExistsError:  # another process trains in it, or has used it
            self.release_run_dir()
            raise
        except OSError as e:
            self.release_run_dir()
            raise OSError(f"run folder {self.run_dir} is not writable: {e}") from None

    def _remove_temporaries(self) -> None:
        """Remove the temporary files (:func:`~msresnet1d.atomic.temporary_files`) of the run's own
        files that a killed run left, and only those: another command's writing in the folder, or a
        file of a name like theirs (an editor's ``.config.json.swp``), is left alone. Under the
        lock, so no run is writing them."""
        for path in (self.run_dir / name for name in RUN_OUTPUTS):
            for stale in temporary_files(path):
                if stale.is_symlink() or stale.is_file():  # a folder of that name is none of the run's
                    stale.unlink(missing_ok=True)

    def release_run_dir(self) -> None:
        """Release the run folder's lock taken by :meth:`prepare_run_dir` (if it was taken)."""
        lock, self._lock = self._lock, None
        if lock is not None:
            os.close(lock)

    def write_config(self) -> None:
        """The run's config as ``config.json`` (rank 0)."""
        if self.dist.is_main:
            write_text(self.run_dir / "config.json", json.dumps(self.cfg.to_dict(), indent=2) + "\n")

    # ------------------------------------------------------------------ checkpoints
    def _state(self, epoch: int) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "code": code_version(),  # a resume under other code is said
            "world_size": self.dist.world_size,  # a resume with another number of processes is refused
            "epoch": epoch,
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_state(),
            "history": {"rows": self.history.rows, "best_epoch": self.history.best_epoch,
                        "best_score": self.history.best_score, "stale_epochs": self.history.stale_epochs},
            "class_names": list(self.task.class_names),
            "task_state": self.task.state,
            "database": self.task.splits.get("database"),  # the folder found, so a resume cannot switch it
            "splits": split_contents(self.task),
        }

    def resume(self, ckpt: dict[str, Any] | None = None, version: tuple[int, int, int, int] | None = None) -> None:
        """Continue from ``checkpoints/last.pt`` (no-op with a warning if there is none); ``log.csv``
        is written again from the checkpoint's history, which a run killed just after saving
        ``last.pt`` had not yet added its epoch's row to. ``ckpt``: the file as the caller read it
        (:func:`~.run.train`, before the data load), when it was at ``version``
        (:func:`~msresnet1d.atomic.file_version`); read here if not given, or if the file has changed
        since (another resume continued the run)."""
        path = self.ckpt_dir / "last.pt"
        if not path.exists():
            log.warning("--resume: no checkpoint at %s, starting from scratch", path)
            return
        if ckpt is None or version != file_version(path):
            ckpt = load_checkpoint(path)
        check_same_config(TrainConfig.from_dict(ckpt["config"], f"checkpoint {path}"), self.cfg, path)
        check_same_world_size(ckpt, self.dist.world_size, path)
        for key in ("threads", "eval_batch_size", "device"):  # allowed (another machine), but said
            if ckpt["config"].get(key) != getattr(self.cfg, key):
                log.warning("--resume: the run trained with %s=%s, it continues with %s=%s: float rounding differs "
                            "with it, so it will not end exactly as an uninterrupted run", key,
                            ckpt["config"].get(key), key, getattr(self.cfg, key))
        if ckpt.get("code") != code_version():  # allowed (a fix to finish a long run with), but said
            log.warning("--resume: %s was written by msresnet1d %s, this is %s: the remaining epochs run other code "
                        "than the first ones (train the run again in a new folder for figures of one version)", path,
                        ckpt.get("code", "of a version before checkpoints named theirs"), code_version())
        before, now = ckpt.get("database"), self.task.splits.get("database")
        if before is not None and now is not None and Path(before).resolve() != Path(now).resolve():
            raise ValueError(f"{path}: the run trained on the database in {before}, the resume would read {now}; "
                             "give data.data_dir (or MSRESNET1D_DATA) as the run had it")
        check_same_splits(ckpt, self.task, str(path))
        self.model.load_state_dict(ckpt["model"])
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        h = ckpt["history"]
        self.history = History(h["rows"], h["best_epoch"], h["best_score"], h["stale_epochs"])
        self.start_epoch = ckpt["epoch"] + 1
        if self.history.best_epoch == ckpt["epoch"]:  # best.pt, read once: it holds that epoch, or is written
            if self._best_epoch_saved() != ckpt["epoch"]:
                self._save_best(ckpt["epoch"])  # killed between last.pt and best.pt: the weights just loaded are it
        elif self.cfg.select_epoch == "best" and self.history.best_epoch >= 0 and self.dist.is_main:
            self._selected_weights()  # checked before the remaining epochs train, not when the test needs them
        if self.dist.is_main:
            self._write_log()  # killed before log.csv took the epoch: a run that has no epoch left would never add it
        if not self.quiet:
            tqdm.write(f"resumed {path}: {ckpt['epoch'] + 1} of {self.cfg.epochs} epochs done")

    def _best_epoch_saved(self) -> int | None:
        """The epoch (0-based) whose weights ``best.pt`` holds; None without one, or a damaged one."""
        path = self.ckpt_dir / "best.pt"
        try:
            return load_checkpoint(path)["epoch"] if path.exists() else None
        except ValueError:  # damaged: the selected epoch's weights, in last.pt, are written again
            return None

    def _save_best(self, epoch: int) -> None:
        """``best.pt``: the evaluated weights (the moving average, with ``ema_decay``) of ``epoch``."""
        if self.dist.is_main:
            atomic_save({"format": FORMAT_VERSION, "code": code_version(), "epoch": epoch, "config": self.cfg.to_dict(),
                         "model": self.evaluated.state_dict(), "class_names": list(self.task.class_names),
                         "task_state": self.task.state, "splits": split_contents(self.task)}, self.ckpt_dir / "best.pt")

    def _save(self, epoch: int, is_best: bool) -> None:
        """``last.pt``, then ``best.pt`` if this epoch is selected: killed in between, the resume finds
        the selected epoch's weights in ``last.pt`` and writes ``best.pt`` from them."""
        if not self.dist.is_main:
            return
        atomic_save(self._state(epoch), self.ckpt_dir / "last.pt")
        if is_best:
            self._save_best(epoch)
        self._write_log()

    def _write_log(self) -> None:
        if not self.history.rows:
            return
        buffer = io.StringIO()  # columns of every row: a resume under a newer version may log more than the first
        columns = dict.fromkeys(key for row in self.history.rows for key in row)
        writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="")
        writer.writeheader()
        writer.writerows(self.history.rows)
        write_text(self.run_dir / "log.csv", buffer.getvalue())

    # ------------------------------------------------------------------ epochs
    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training batches; returns mean loss, throughput and last LR."""
        seed = int(epoch_generator(self.cfg.seed, epoch, self.dist.rank).initial_seed())
        seed_torch(seed, self.dist.device)  # dropout
        self.task.train.set_epoch(epoch)
        start = time.perf_counter()
        bar = tqdm(self.task.train, desc=f"epoch {epoch + 1}/{self.cfg.epochs}", unit="batch", leave=False,
                   disable=True if self.quiet else None)
        lines = not self.quiet and bar.disable  # no bar (not a terminal): a line every PROGRESS_LINE_S instead
        steps, last_line = 0, start

        def after_step(mean_loss: float, seen: int) -> None:
            nonlocal steps, last_line
            if self.ema is not None:
                self.ema.update(self.model)
            now = time.perf_counter()
            bar.set_postfix(loss=f"{mean_loss:.4f}", samples_s=f"{seen / (now - start):.0f}")
            steps += 1
            if lines and now - last_line >= PROGRESS_LINE_S:
                last_line = now
                tqdm.write(f"epoch {epoch + 1}/{self.cfg.epochs}: batch {steps}/{len(self.task.train)}, loss "
                           f"{mean_loss:.4f}, {seen / (now - start):.0f} samples/s, {(now - start) / 60:.1f} min")

        try:
            mean_loss, seen, accuracy = train_one_epoch(self.train_model, bar, self.loss_fn, self.optimizer,
                                                        self.scheduler, grad_clip=self.cfg.grad_clip,
                                                        bf16=self.cfg.bf16, device=self.device, on_batch=after_step)
        except TrainingError as e:
            raise self._stopped(e, epoch) from None
        elapsed = time.perf_counter() - start
        # over every rank's shard: without validation the loss selects the epoch, and all ranks must agree
        mean_loss = self.dist.weighted_mean(mean_loss, seen)
        accuracy = self.dist.weighted_mean(accuracy, seen)
        for module in (self.model, *([self.ema.module] if self.ema is not None else [])):
            self.dist.broadcast_buffers(module)  # rank 0's statistics on every rank: one validation score, one choice
        try:  # the last step's update, which no loss has seen; after the broadcast, the same on every rank
            check_finite_weights(self.model, self.evaluated)
        except TrainingError as e:
            raise self._stopped(e, epoch) from None
        return {"train_loss": mean_loss, "train_accuracy": accuracy,
                "train_samples_per_s": seen * self.dist.world_size / elapsed, "train_seconds": elapsed,
                "lr": self.scheduler.get_last_lr()[0]}

    def _stopped(self, error: TrainingError, epoch: int) -> TrainingError:
        """``error`` with the epoch and what is kept (no checkpoint of this epoch is written)."""
        last = self.ckpt_dir / "last.pt"
        kept = (f"the last good checkpoint is kept in {last}" if last.is_file() else
                "no checkpoint was saved (it failed before the first epoch ended)")
        return TrainingError(f"{error} at epoch {epoch + 1}; {kept}. Try a lower lr, grad_clip, or check the "
                             "input data.")

    def evaluate(self, split: str) -> dict:
        """Metrics of :attr:`evaluated` on ``"val"`` or ``"test"`` (see :meth:`Task.predict`), run
        by a copy with its BatchNorms folded into the convolutions (:func:`fuse_batchnorm`), with
        the config's test-time augmentation (:func:`~msresnet1d.models.tta.with_tta`); in float32
        also under ``cfg.bf16`` (which autocasts the training steps), as ``evaluate`` and
        ``predict`` run a checkpoint, so that they reproduce the run's figures."""
        model = with_tta(fuse_batchnorm(self.evaluated), self.cfg.tta)
        y_true, probabilities = self.task.predict(model, split, self.device)
        try:
            check_probabilities(probabilities)
        except ValueError as e:  # validation comes before the epoch's checkpoints, the test after the last
            kept = "the epoch's checkpoints were not written" if split == "val" else "the checkpoints are kept"
            raise TrainingError(f"on the {split} split: {e}; {kept}") from None
        return classification_report(y_true, probabilities, self.task.class_names, self.task.scored)

    def fit(self) -> History:
        """Train from ``start_epoch`` to ``cfg.epochs``, with validation, checkpoints and early stopping.
        An epoch whose validation score is undefined (NaN, e.g. a class absent from the validation
        records under ``macro_auc``) is never selected."""
        for epoch in range(self.start_epoch, self.cfg.epochs):
            if self.cfg.early_stopping and self.history.stale_epochs >= self.cfg.early_stopping:
                break  # a resumed run that had already stopped early
            row: dict[str, float] = {"epoch": epoch + 1, **self.train_epoch(epoch)}
            if self.task.has_validation:
                val = self.evaluate("val")
                if epoch == self.start_epoch and self.dist.is_main:
                    warn_absent_validation_classes(val, self.cfg.monitor)
                row.update({f"val_{k}": val[k] for k in ("accuracy", "macro_f1", "macro_auc") if k in val})
                if "cinc_score" in val:
                    row["val_cinc_score"] = val["cinc_score"]
                score = val[self.cfg.monitor]
            else:
                score = -row["train_loss"]
            if math.isnan(score) and self.cfg.select_epoch == "best":
                log.warning("epoch %d: validation %s is undefined (NaN); this epoch cannot be selected",
                            epoch + 1, self.cfg.monitor)
            is_best = self.cfg.select_epoch == "last" or score > self.history.best_score
            if is_best:
                self.history.best_epoch, self.history.best_score, self.history.stale_epochs = epoch, score, 0
            else:
                self.history.stale_epochs += 1
            self.history.rows.append(row)
            self._save(epoch, is_best)
            if not self.quiet:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "lr"))
                chosen = is_best and self.cfg.select_epoch == "best"  # with "last", every epoch replaces the previous
                tqdm.write(f"epoch {epoch + 1}/{self.cfg.epochs}: {shown}{'  *best*' if chosen else ''}")
            if self.cfg.early_stopping and self.history.stale_epochs >= self.cfg.early_stopping:
                log.info("early stopping after epoch %d (no %s gain for %d epochs)", epoch + 1, self.cfg.monitor,
                         self.cfg.early_stopping)
                break
        return self.history

    def load_best(self) -> None:
        """Load the best validation epoch's weights into :attr:`evaluated` (every rank reads rank
        0's file)."""
        self.dist.barrier()
        if self.history.best_epoch < 0:
            raise TrainingError(f"no epoch was selected: validation {self.cfg.monitor} was undefined (NaN) at every "
                                f"epoch (e.g. a class absent from the validation records); the final weights are in "
                                f"{self.ckpt_dir / 'last.pt'}. Choose another monitor or validation records, or "
                                "select_epoch = \"last\"")
        self.evaluated.load_state_dict(self._selected_weights())

    def _selected_weights(self) -> dict[str, torch.Tensor]:
        """The weights ``best.pt`` holds, checked to be the selected epoch's (TrainingError: they are lost)."""
        path = self.ckpt_dir / "best.pt"
        try:
            best = load_checkpoint(path) if path.exists() else None
        except ValueError as e:  # damaged
            raise TrainingError(f"{e}; the run's history selected epoch {self.history.best_epoch + 1}: the selected "
                                "weights are lost; train the run again in a new folder") from None
        if best is None or best["epoch"] != self.history.best_epoch:
            held = "is missing" if best is None else f"holds epoch {best['epoch'] + 1}"
            raise TrainingError(f"{path} {held}, but the run's history selected epoch {self.history.best_epoch + 1}: "
                                f"the selected weights are lost; train the run again in a new folder")
        return best["model"]

    def test(self) -> dict:
        """Evaluate the selected model on the test split, once; :meth:`write_metrics` records it."""
        self.load_best()
        report = self.evaluate("test")
        result = {"test": report, "best_epoch": self.history.best_epoch + 1, "select_epoch": self.cfg.select_epoch}
        if self.task.has_validation:
            result |= {"monitor": self.cfg.monitor, "best_val_score": self.history.best_score}
        else:  # the score is the negative training loss: not to be read as a validation score
            chose = "train_loss" if self.cfg.select_epoch == "best" else "none (select_epoch = last)"
            result |= {"monitor": f"{chose} (no validation split)", "best_val_score": None,
                       "best_train_loss": -self.history.best_score}
        result |= {"epochs_run": len(self.history.rows), "splits": self.task.splits}
        return result

    def write_metrics(self, result: dict) -> None:
        """``metrics.json`` (rank 0), the last file a run writes: a run folder that holds it is finished."""
        if self.dist.is_main:
            write_text(self.run_dir / "metrics.json", json.dumps(json_safe(result), indent=2) + "\n")

    def summary_table(self, result: dict) -> str:
        how = (f"last epoch, {result['best_epoch']}" if self.cfg.select_epoch == "last"
               else f"best epoch {result['best_epoch']} by validation {self.cfg.monitor}" if self.task.has_validation
               else f"best epoch {result['best_epoch']} by training loss (no validation split)")
        return format_report(result["test"], f"{self.task.test_title} ({how}):")


def warn_absent_validation_classes(report: dict, monitor: str) -> None:
    """Warn when a scored class has no example in the validation split (its ``report``): its F1
    is undefined there until something is predicted as it (then 0), so macro-F1 averages the other
    scored classes or penalises any prediction of it; macro AUC leaves it out, the CinC score
    counts it 0. The epoch is chosen without it."""
    absent = [name for name in report["scored_classes"] if report["per_class"][name]["support"] == 0]
    if absent and monitor != "accuracy":
        warnings.warn(f"the validation split ({report['n']:,} examples) holds no example of scored "
                      f"class{'es' if len(absent) > 1 else ''} {', '.join(absent)}, so the epoch is chosen without "
                      f"{'them' if len(absent) > 1 else 'it'} (validation {monitor}: macro-F1 leaves an absent class "
                      "out while nothing is predicted as it, else counts its F1 as 0, and so penalises any such "
                      "prediction; macro AUC leaves it out, the CinC score counts 0); choose validation records "
                      "that hold every scored class",
                      stacklevel=2)


def check_finite_weights(*modules: nn.Module) -> None:
    """Raise :class:`TrainingError` naming the first parameter or buffer of ``modules`` (the
    model and its moving average) that holds a value that is not finite."""
    for module in dict.fromkeys(modules):
        for name, tensor in (*module.named_parameters(), *module.named_buffers()):
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise TrainingError(f"weights not finite after the epoch's last step ({name}; the loss before that "
                                    "step was finite)")


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, ...]],
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    grad_clip: float = 0.0,
    bf16: bool = False,
    device: torch.device = torch.device("cpu"),
    on_batch: Callable[[float, int], None] | None = None,
) -> tuple[float, int, float]:
    """One optimisation pass over ``batches`` of ``(x, y)`` or ``(x, extra, y)``.

    Steps the scheduler every batch, clips the gradient norm when ``grad_clip > 0``, runs the
    forward pass under bfloat16 autocast when ``bf16``, and calls ``on_batch(mean loss, samples
    seen)`` after each batch. Returns (mean loss, samples seen, accuracy): the accuracy of the
    training batches as the model saw them (training mode, augmented), d2l's "train acc"; NaN
    for targets that are not class indices (regression).

    Raises:
        TrainingError: the loss is not finite (the weights are not updated by that batch), or,
            with ``grad_clip``, the gradient's norm (the weights are not updated either).
    """
    model.train()
    total, seen, correct = 0.0, 0, 0
    for step, batch in enumerate(batches, start=1):
        *inputs, target = (t.to(device, non_blocking=True) for t in batch)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            output = model(*inputs)
        loss = loss_fn(output.float(), target)
        if not torch.isfinite(loss):
            raise TrainingError(f"non-finite loss ({loss.item()}) at batch {step} (after {seen} samples)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            norm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            if not torch.isfinite(norm):  # clipping would scale the gradient by NaN
                raise TrainingError(f"non-finite gradient norm ({norm.item()}) at batch {step} (after {seen} samples)")
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(target)
        seen += len(target)
        if not target.is_floating_point():
            correct += int((output.argmax(dim=1) == target).sum())
        if on_batch is not None:
            on_batch(total / seen, seen)
    if not seen or target.is_floating_point():  # no batch, or regression targets
        return total / max(seen, 1), seen, float("nan")
    return total / seen, seen, correct / seen
