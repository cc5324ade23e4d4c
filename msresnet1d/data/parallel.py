"""Running one function over many records in worker processes, with a progress bar."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from itertools import chain
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")

_PR_SET_PDEATHSIG = 1  # linux/prctl.h

#: Upper bound of the default number of workers (reading records is mostly CPU-bound).
MAX_DEFAULT_WORKERS = 4


def default_workers() -> int:
    """CPUs this process may use, at most :data:`MAX_DEFAULT_WORKERS`."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_WORKERS, usable))


def process_map(func: Callable[[T], R], items: Sequence[T], workers: int | None = None, desc: str = "") -> list[R]:
    """``[func(item) for item in items]`` in ``workers`` processes, results in order.

    ``workers`` defaults to :func:`default_workers`; 1, or a platform that cannot fork, runs
    everything in this process. Workers are forked (they start without re-importing torch);
    ``func`` and ``items`` must be picklable (module-level functions, ``functools.partial``).
    A worker's warnings are given again here, in order (so the caller's filters, records and
    formatting apply). An exception raised in a worker is re-raised here, the only one reported.
    On any exception (a worker's, Ctrl-C, a SIGTERM turned into KeyboardInterrupt) the other
    workers are stopped at once, not after the chunks they are reading.
    """
    workers = default_workers() if workers is None else workers
    progress = dict(desc=desc, total=len(items), unit="record", disable=None, leave=False)
    if workers <= 1 or len(items) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return [func(item) for item in tqdm(items, **progress)]
    chunksize = max(1, len(items) // (workers * 8))
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=context,
                               initializer=_die_with_parent, initargs=(os.getpid(),))
    try:
        # Futures of our own, not pool.map's, which cancels the pending ones on an error: the pool's
        # thread then fails marking them broken once the workers are stopped (Python 3.11, CPython
        # gh-107219: a second traceback, "InvalidStateError: CANCELLED", after the real error).
        futures = [pool.submit(_apply, func, items[i : i + chunksize]) for i in range(0, len(items), chunksize)]
        results = []
        try:
            for result, given in tqdm(chain.from_iterable(future.result() for future in futures), **progress):
                _warn_again(given)
                results.append(result)
        except Exception as e:  # a worker's: the warnings its chunk gave before it, first
            _warn_again(getattr(e, "warnings_given", []))
            raise
    except BaseException:
        for process in list((getattr(pool, "_processes", None) or {}).values()):  # no public way before 3.14
            process.terminate()
        pool.shutdown(wait=False)
        raise
    pool.shutdown()
    return results


Given = list[tuple[type[Warning], str]]
"""A worker's warnings, (category, message) each, for the parent to give again."""


def _apply(func: Callable[[T], R], chunk: Sequence[T]) -> list[tuple[R, Given]]:
    """``func`` of each item, with the warnings it gave. An exception carries the warnings given
    before it in the chunk (``warnings_given``), for the parent to give before raising it."""
    done, given = [], []
    for item in chunk:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # all of them: the parent's filters decide
            try:
                result = func(item)
            except Exception as e:
                e.warnings_given = given + [(w.category, str(w.message)) for w in caught]  # type: ignore[attr-defined]
                raise
        done.append((result, [(w.category, str(w.message)) for w in caught]))
        given += done[-1][1]
    return done


def _warn_again(given: Given) -> None:
    """Give a worker's warnings in this process: the caller's filters, records and formatting apply."""
    for category, message in given:
        warnings.warn(message, category, stacklevel=3)  # process_map's caller's line


def _die_with_parent(parent: int) -> None:
    """Worker initializer: on Linux, ask the kernel for SIGTERM when the parent dies, so that a
    run killed while reading (SIGKILL, an out-of-memory kill) leaves no workers behind."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler (train's raises KeyboardInterrupt)
    try:
        granted = ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM) == 0
    except (OSError, AttributeError):  # not Linux: nothing to ask
        return
    if granted and os.getppid() != parent:  # the parent died before the request
        os._exit(1)
