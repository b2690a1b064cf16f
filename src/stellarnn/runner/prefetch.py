"""Read the next tasks' files while the current task runs: one read-ahead thread, a bounded lead.

On a GPU the pipeline's share of a task can be shorter than reading its FITS files, which then
dominates a worker that does one after the other.  :func:`read_ahead` keeps the next ``depth``
tasks' reads (:func:`~stellarnn.runner.task.read_task`) going in one background thread while the
caller processes the current task, so reading and inference overlap.

* The task iterator is consumed in the caller's thread (the runner claims items in its database
  there, lazily); only the reading moves to the thread.
* A read's result -- including its per-file failures (unreadable files become flagged rows, as
  without read-ahead) -- is handed back unchanged; an exception raised by a read is raised in the
  caller when that task comes up.
* The thread is a daemon and is stopped when the generator ends, is closed, or is left by an
  exception (e.g. ``KeyboardInterrupt``): reads not started are cancelled, the current one is waited
  for (at most :data:`JOIN_SECONDS`).  A run killed outright takes the thread with it.
"""
from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import Future
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: name of the read-ahead thread (tests look for it)
READ_AHEAD_THREAD = "stellarnn-read-ahead"
#: seconds to wait for the read in progress when the generator is closed
JOIN_SECONDS = 60.0


def read_ahead(tasks: Iterable[T], read: Callable[[T], R], depth: int = 1) -> Iterator[tuple[T, R]]:
    """Yield ``(task, read(task))`` in task order, reading up to ``depth`` tasks ahead in a background thread.

    Parameters
    ----------
    tasks : iterable
        Consumed lazily in the caller's thread, ``depth + 1`` tasks ahead of the one yielded at most.
    read : callable
        Called once per task, in the read-ahead thread, one task after the other.
    depth : int
        Tasks read ahead of the one being processed; 0 reads each task in the caller's thread when it
        comes up (no thread).
    """
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if depth == 0:
        for task in tasks:
            yield task, read(task)
        return
    inbox: queue.Queue = queue.Queue()

    def work() -> None:
        while True:
            job = inbox.get()
            if job is None:
                return
            task, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(read(task))
            except BaseException as exc:  # handed to the caller with its task
                future.set_exception(exc)

    thread = threading.Thread(target=work, name=READ_AHEAD_THREAD, daemon=True)
    thread.start()
    pending: deque[tuple[T, Future]] = deque()
    task_iter = iter(tasks)
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) <= depth:  # the next task plus ``depth`` ahead
                try:
                    task = next(task_iter)
                except StopIteration:
                    exhausted = True
                    break
                future: Future = Future()
                inbox.put((task, future))
                pending.append((task, future))
            if not pending:
                return
            task, future = pending.popleft()
            yield task, future.result()
    finally:
        for _, future in pending:
            future.cancel()
        inbox.put(None)
        thread.join(JOIN_SECONDS)
