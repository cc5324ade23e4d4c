"""Running one function over many records in worker processes, with a progress bar."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from itertools import chain
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")

#: Whether this is Linux, asked once: workers are forked there (:func:`start_method`) and ask for the parent-death
#: signal (:func:`_die_with_parent`, prctl being Linux's).
_LINUX = sys.platform.startswith("linux")
_PR_SET_PDEATHSIG = 1  # linux/prctl.h

#: Upper bound of the default number of workers (reading records is mostly CPU-bound).
MAX_DEFAULT_WORKERS = 4


def usable_cpus() -> int:
    """CPUs this process may use (its affinity where the OS has one, else all of them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    """CPUs this process may use, at most :data:`MAX_DEFAULT_WORKERS`."""
    return max(1, min(MAX_DEFAULT_WORKERS, usable_cpus()))


def process_map(func: Callable[[T], R], items: Sequence[T], workers: int | None = None, desc: str = "") -> list[R]:
    """``[func(item) for item in items]`` in ``workers`` processes, results in order.

    ``workers`` defaults to :func:`default_workers`; 1 runs everything in this process. Workers
    are forked on Linux (they start without re-importing torch) and spawned elsewhere (forking
    a process that has loaded torch is unsafe on macOS; Windows cannot fork), which needs the
    usual ``if __name__ == "__main__":`` guard around a script's calls; ``func`` and ``items``
    must be picklable (module-level functions, ``functools.partial``).
    A worker's warnings are given again here, in order (so the caller's filters, records and
    formatting apply). An exception raised in a worker is re-raised here, the only one reported.
    On any exception (a worker's, Ctrl-C, a SIGTERM turned into KeyboardInterrupt) the other
    workers are stopped at once, not after the chunks they are reading.
    """
    workers = default_workers() if workers is None else workers
    progress = dict(desc=desc, total=len(items), unit="record", disable=None, leave=False)
    if workers <= 1 or len(items) < 2:
        return [func(item) for item in tqdm(items, **progress)]
    try:  # refused here: a pickling error inside the pool can deadlock it (CPython 3.12-3.13)
        pickle.dumps((func, items[0]))
    except Exception as e:
        raise TypeError(f"process_map: func and items go to worker processes, so they must be picklable "
                        f"(a module-level function, or functools.partial of one): {e}") from e
    chunksize = max(1, len(items) // (workers * 8))
    context = multiprocessing.get_context(start_method())
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
        _stop(pool)
        raise
    pool.shutdown()
    return results


#: How long :func:`_stop` waits for a stopped pool's thread to end, in seconds.
STOP_TIMEOUT = 10.0


def _stop(pool: ProcessPoolExecutor) -> None:
    """Stop ``pool``'s workers at once, and wait (at most :data:`STOP_TIMEOUT`) for its thread to end.

    A worker stopped while sending a result leaves part of it in the pipe, and the pool's thread
    waits for the rest, for ever (Python waits for that thread at exit: the program hung after its
    error message). Once the workers are gone, this process holds the pipe's last writing end:
    closing it gives that thread an end of file, which it takes as a broken pool.

    That thread must have ended before the next pool forks its workers. It takes the pool's lock
    while it cleans up; a fork copies the lock as it is, held, with no thread left to release it;
    and the stopped pool, left in a reference cycle for the garbage collector, takes that lock
    when it is freed, which a worker's collector may do at any moment (even in Python's after-fork
    code, before the worker asks for the parent-death signal): the worker hung, and the call too.
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public way before 3.14
    for process in processes:
        process.terminate()
    for process in processes:
        process.join()
    results = getattr(pool, "_result_queue", None)
    if results is not None:
        results._writer.close()
    thread = getattr(pool, "_executor_manager_thread", None)  # shutdown forgets it
    pool.shutdown(wait=False, cancel_futures=True)
    if thread is not None:
        thread.join(STOP_TIMEOUT)


def start_method() -> str:
    """How :func:`process_map` starts its workers: "fork" on Linux, "spawn" elsewhere."""
    return "fork" if _LINUX else "spawn"


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
    if not _LINUX:
        return
    try:
        granted = ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM) == 0
    except (OSError, AttributeError):  # a C library without prctl: nothing to ask
        return
    if granted and os.getppid() != parent:  # the parent died before the request
        os._exit(1)
