"""Executors: run tasks and hand back their results as they finish, with few tasks in flight.

* :class:`InlineExecutor` runs tasks in the calling process (``workers=0``: debugging, tiny runs, and one
  GPU driven by one process), reading the next task's files while the current one runs
  (:func:`~stellarnn.runner.prefetch.read_ahead`);
* :class:`LocalExecutor` is the default: a pool of worker processes over batches;
* :class:`DaskExecutor` runs on a Dask distributed cluster: an existing scheduler
  (``--scheduler tcp://host:8786``) or a :class:`distributed.LocalCluster` it starts.

All share one interface: ``with executor: for result in executor.run(tasks): ...``.  ``tasks``
is consumed lazily and at most ``max_in_flight`` tasks are submitted and not yet collected, so
memory stays flat however many spectra a run has.  Results are yielded in completion order.
A task that raises (e.g. the pipeline cannot be built) raises from ``run``.

Local worker processes die with the runner, even after ``kill -9`` of it (which runs no
clean-up code): each worker asks the kernel for ``SIGKILL`` when its parent dies
(``prctl(PR_SET_PDEATHSIG)``, Linux) and also runs a watchdog thread that exits the worker
once its parent process id changes (any POSIX system).  The multiprocessing resource tracker
then sees its last client go and exits too.
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Iterable, Iterator

from .prefetch import read_ahead
from .task import Task, TaskResult, read_task, run_task, set_worker_index


#: seconds between two checks of the parent process id by a worker's watchdog thread
PARENT_WATCH_SECONDS = 0.5
#: prctl option: signal delivered to this process when its parent dies (linux/prctl.h)
PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, interval: float = PARENT_WATCH_SECONDS) -> None:
    """Make this (worker) process end when process ``parent_pid`` ends, however it ends.

    On Linux the kernel sends ``SIGKILL`` on the parent's death (``PR_SET_PDEATHSIG``); in any
    case a daemon thread polls ``os.getppid()`` every ``interval`` s and calls ``os._exit(1)``
    once it differs from ``parent_pid`` (the process was re-parented: its parent is gone).
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no prctl: the watchdog remains
            pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="stellarnn-parent-watchdog", daemon=True).start()


def start_worker(parent_pid: int, counter) -> None:
    """Initializer of a local worker process: die with the parent, take the next worker number from ``counter``."""
    die_with_parent(parent_pid)
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    set_worker_index(index)


class InlineExecutor:
    """Run each task in this process, one after the other, the next ``prefetch`` tasks' files read meanwhile.

    Parameters
    ----------
    prefetch : int
        Tasks whose files a background thread reads ahead while the current task runs
        (:func:`~stellarnn.runner.prefetch.read_ahead`; default 1); 0 reads each task when it comes
        up.  The rows are the same either way.
    """

    name = "inline"
    n_workers = 1

    def __init__(self, prefetch: int = 1):
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        self.prefetch = int(prefetch)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, tasks: Iterable[Task]) -> Iterator[TaskResult]:
        reads = read_ahead(tasks, read_task, self.prefetch)
        try:
            for task, read in reads:
                yield run_task(task, read)
        finally:
            reads.close()  # stops the read-ahead thread now, also when this generator is abandoned


class LocalExecutor:
    """A pool of ``workers`` processes (``spawn`` start method by default: safe with torch threads).

    Each worker reads a task's files and then runs it; with several workers per GPU (``workers`` a
    multiple of the GPU count) one worker's reading overlaps another's inference.

    Workers die with this process, even when it is killed with ``SIGKILL``
    (:func:`die_with_parent`), and are numbered 0 ... workers - 1 as they start (a pipeline's
    ``device="cuda"`` then means GPU ``number mod n_gpus``, :func:`stellarnn.runner.task.worker_device`).

    Parameters
    ----------
    workers : int
        Number of worker processes (>= 1).
    max_in_flight : int, optional
        Tasks submitted but not yet collected (default ``2 * workers``).
    start_method : str
        ``spawn`` (default), ``forkserver`` or ``fork``.
    """

    name = "local"

    def __init__(self, workers: int, max_in_flight: int | None = None, start_method: str = "spawn"):
        if workers < 1:
            raise ValueError(f"workers must be >= 1 for a process pool, got {workers}")
        self.n_workers = int(workers)
        self.max_in_flight = int(max_in_flight or 2 * workers)
        self.start_method = start_method
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self):
        context = multiprocessing.get_context(self.start_method)
        self.pool = ProcessPoolExecutor(self.n_workers, mp_context=context, initializer=start_worker,
                                        initargs=(os.getpid(), context.Value("i", 0)))
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.pool is not None:
            self.pool.shutdown(wait=exc_type is None, cancel_futures=True)
            self.pool = None
        return False

    def run(self, tasks: Iterable[Task]) -> Iterator[TaskResult]:
        if self.pool is None:
            raise RuntimeError("LocalExecutor.run outside its 'with' block")
        pending = set()
        task_iter = iter(tasks)
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.max_in_flight:
                try:
                    pending.add(self.pool.submit(run_task, next(task_iter)))
                except StopIteration:
                    exhausted = True
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()


class DaskExecutor:
    """Tasks on a Dask distributed cluster.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``).  Without it a
        :class:`distributed.LocalCluster` of ``n_workers`` single-threaded worker processes is
        started for the run and closed after it.
    n_workers : int
        Workers of the LocalCluster (ignored with ``scheduler``).
    max_in_flight : int, optional
        Tasks submitted but not yet collected (default ``2 *`` the cluster's worker threads).
    """

    name = "dask"

    def __init__(self, scheduler: str | None = None, n_workers: int = 2, max_in_flight: int | None = None):
        if scheduler is None and n_workers < 1:
            raise ValueError(f"n_workers must be >= 1, got {n_workers}")
        self.scheduler = scheduler
        self.n_workers = int(n_workers)
        self.max_in_flight = max_in_flight
        self.client = None
        self.cluster = None

    def __enter__(self):
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - dependency is pinned
            raise RuntimeError("the Dask executor needs the 'distributed' package") from exc
        if self.scheduler:
            try:
                self.client = Client(self.scheduler, timeout="20s")
            except OSError as exc:
                raise RuntimeError(f"cannot reach the Dask scheduler at {self.scheduler}: {exc}") from exc
        else:
            self.cluster = LocalCluster(n_workers=self.n_workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        threads = sum(self.client.nthreads().values()) or 1
        self.n_workers = len(self.client.nthreads()) or self.n_workers
        if self.max_in_flight is None:
            self.max_in_flight = 2 * threads
        return self

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None
        return False

    def run(self, tasks: Iterable[Task]) -> Iterator[TaskResult]:
        from distributed import as_completed

        if self.client is None:
            raise RuntimeError("DaskExecutor.run outside its 'with' block")
        task_iter = iter(tasks)
        queue = as_completed()
        n_pending = 0
        for task in task_iter:
            queue.add(self.client.submit(run_task, task, pure=False, key=f"stellarnn-task-{os.getpid()}-"
                                                                        f"{task.task_id}-{id(task)}"))
            n_pending += 1
            if n_pending >= self.max_in_flight:
                break
        for fut in queue:
            result = fut.result()
            fut.release()
            yield result
            nxt = next(task_iter, None)
            if nxt is not None:
                queue.add(self.client.submit(run_task, nxt, pure=False,
                                             key=f"stellarnn-task-{os.getpid()}-{nxt.task_id}-{id(nxt)}"))


def make_executor(workers: int | None = None, scheduler: str | None = None, dask: bool = False,
                  max_in_flight: int | None = None, prefetch: int = 1):
    """The executor for CLI-style options.

    ``scheduler`` or ``dask=True`` choose Dask (a LocalCluster of ``workers`` processes when no
    scheduler address is given); otherwise ``workers=0`` runs inline (reading ``prefetch`` tasks
    ahead, :class:`InlineExecutor`) and ``workers>=1`` (default: the CPU count) a local process pool.
    """
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if scheduler or dask:
        return DaskExecutor(scheduler, workers or 2, max_in_flight)
    if workers is None:
        workers = os.cpu_count() or 1
    if workers == 0:
        return InlineExecutor(prefetch)
    return LocalExecutor(workers, max_in_flight)
