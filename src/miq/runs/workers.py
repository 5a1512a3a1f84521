"""Running per-file rating jobs: in this process, in local worker processes, or on a Dask cluster.

All three give the same outcomes (same rows, same output files); only where the work runs
differs. In this process, a thread reads the next file while the current one is rated. Each worker loads the model once (cached per process) and runs it with one inference
thread unless the model was loaded with more. A file whose worker raises or dies becomes one
error row; the run goes on.

* ``workers=N`` — N local processes (``spawn``: safe with ONNX Runtime's threads), each rating
  one file with the next queued behind it. A worker that dies (e.g. killed for memory) is replaced and the one file it was
  rating is retried once; the workers die with the parent process, however it ends.
* ``scheduler=ADDRESS`` — a Dask distributed scheduler (``tcp://host:8786``) or a
  ``distributed.Client``; needs the ``dask`` extra. The workers must see the input files and the
  output folder at the same paths (a shared file system), and have miq installed.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import connection

from ..errors import MiqError, install_hint
from .file_job import FileJob, FileOutcome, failed_outcome, rate_file
from .file_job import read_ahead as read_ahead_file

__all__ = ["ModelSpec", "run_jobs"]


@dataclass(frozen=True)
class ModelSpec:
    """How a worker loads the run's model: ``path`` of model.json (None = the worker's own
    bundled model), inference ``threads``, ``device``, and the ONNX ``sha256`` it must have."""

    path: str | None
    threads: int
    device: str
    sha256: str | None
    n_levels: int = 11

    @classmethod
    def of(cls, model) -> ModelSpec:
        return cls(
            None if model.package.is_bundled else str(model.path),
            int(getattr(model, "threads", None) or 1),
            str(getattr(model, "device", "cpu")),
            model.package.weight_sha256("onnx"),
            model.n_levels,
        )


@lru_cache(maxsize=2)
def worker_model(spec: ModelSpec):
    """The model of a spec, loaded once per worker process."""
    from ..model.runtime import load_model

    model = load_model(spec.path, threads=spec.threads, device=spec.device)
    found = model.package.weight_sha256("onnx")
    if spec.sha256 and found != spec.sha256:
        raise MiqError(
            f"{model.path}: this worker's model differs from the run's (sha256 {found[:12]}… "
            f"instead of {spec.sha256[:12]}…); install the same miq version on every worker"
        )
    return model


def rate_in_worker(job: FileJob, spec: ModelSpec) -> FileOutcome:
    """Rate one file in a worker; any failure becomes an error outcome instead of an exception."""
    try:
        model = worker_model(spec)
    except MiqError as exc:
        return failed_outcome(job, f"worker cannot load the model ({exc})", spec.n_levels)
    return _rate_or_fail(job, model)


def _rate_or_fail(job: FileJob, model, preread=None) -> FileOutcome:
    """`rate_file`, with any unexpected exception (a bug, a resource failure) turned into
    an error outcome for this file, so that it never ends the run."""
    try:
        return rate_file(job, model, preread)
    except Exception as exc:
        return failed_outcome(
            job, f"unexpected error ({type(exc).__name__}: {exc})", model.n_levels
        )


def run_jobs(
    jobs: dict[int, FileJob],
    model,
    *,
    workers: int = 1,
    scheduler=None,
    read_ahead: bool = True,
) -> Iterator[tuple[int, FileOutcome]]:
    """Yield ``(index, outcome)`` for every job, in completion order. ``read_ahead`` (in this
    process only): read the next file in a thread while the current one is rated."""
    if scheduler is not None:
        yield from _run_dask(jobs, ModelSpec.of(model), scheduler)
    elif workers > 1 and len(jobs) > 1:
        yield from _run_processes(jobs, ModelSpec.of(model), workers)
    else:
        yield from _run_here(jobs, model, read_ahead)


def _nothing(job: FileJob) -> None:
    return None


def _run_here(
    jobs: dict[int, FileJob], model, read_ahead: bool = True
) -> Iterator[tuple[int, FileOutcome]]:
    """In this process; a thread reads the next file while the model rates the current one
    (decoding compressed TIFFs and ONNX Runtime both release the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    order = list(jobs)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="miq-read-ahead") as reader:

        def ahead(job: FileJob):
            return reader.submit(read_ahead_file if read_ahead else _nothing, job)

        upcoming = ahead(jobs[order[0]]) if order else None
        for position, index in enumerate(order):
            job = jobs[index]
            try:
                preread = upcoming.result()
            except Exception:  # reading ahead failed unexpectedly: rate_file reads it itself
                preread = None
            if position + 1 < len(order):
                upcoming = ahead(jobs[order[position + 1]])
            outcome = _rate_or_fail(job, model, preread)
            del preread
            yield index, outcome


def _run_processes(
    jobs: dict[int, FileJob],
    spec: ModelSpec,
    workers: int,
    task: Callable[[FileJob, ModelSpec], FileOutcome] = rate_in_worker,
) -> Iterator[tuple[int, FileOutcome]]:
    """Rate the jobs in ``workers`` local processes.

    Each worker holds at most `_QUEUED` files, sent down its own pipe and rated in the order
    sent, so the parent always knows which file each worker is rating: the first it has not
    returned. When a worker dies (killed for memory, a crash in native code) only that file is
    charged: it is rated again in a new worker, and reported as "worker process died twice"
    when it kills that one too; the files queued behind it go to the new worker free, and the
    other workers go on undisturbed. The workers end with this generator, and with this process
    however it ends (`_die_with_parent`). ``task(job, spec)``: what a worker runs (a
    module-level function)."""
    context = multiprocessing.get_context("spawn")
    pending = deque(jobs)  # input order
    attempts: dict[int, int] = {}
    crew: list[_Worker] = []

    def refill(worker: _Worker) -> None:
        while pending and len(worker.queued) < _QUEUED:
            index = pending.popleft()
            worker.give(index, jobs[index])

    try:
        crew = [_Worker(context, spec, task) for _ in range(min(workers, len(jobs)))]
        for worker in crew:
            refill(worker)
        while any(w.queued for w in crew):
            busy = [w for w in crew if w.queued]
            ready = set(connection.wait([x for w in busy for x in (w.conn, w.process.sentinel)]))
            for slot, worker in enumerate(crew):
                if not worker.queued or not {worker.conn, worker.process.sentinel} & ready:
                    continue
                finished, died = worker.collect()
                charged: list[tuple[int, FileOutcome]] = []
                if died:  # charge the file it was rating, and only it; the others wait again
                    index = worker.queued.popleft()
                    attempts[index] = attempts.get(index, 0) + 1
                    if attempts[index] > 1:
                        message = f"worker process died twice on this file ({worker.death()})"
                        charged.append((index, failed_outcome(jobs[index], message, spec.n_levels)))
                        pending.extendleft(reversed(worker.queued))
                    else:
                        pending.extendleft(reversed([index, *worker.queued]))
                    worker.queued.clear()
                    crew[slot] = worker = _Worker(context, spec, task)
                refill(worker)  # before yielding: the worker rates while the outcomes are written
                yield from finished
                yield from charged
            for worker in crew:
                refill(worker)
    finally:
        _stop(crew)


_QUEUED = 2  # files a worker holds: the one it rates and the next (it never waits for us)


class _Worker:
    """One local worker process, the pipe to it, and the files sent to it that it has not
    returned, in order (``queued[0]``: the one it is rating)."""

    def __init__(self, context, spec: ModelSpec, task) -> None:
        try:
            self.conn, child = context.Pipe(duplex=True)
            self.process = context.Process(
                target=_worker_main, args=(child, spec, task, os.getpid()), name="miq-worker"
            )
            self.process.start()
        except OSError as exc:  # out of processes, memory or file descriptors
            raise MiqError(
                f"cannot start a worker process ({exc.strerror or exc}); use fewer --workers"
            ) from None
        child.close()
        self.queued: deque[int] = deque()

    def give(self, index: int, job: FileJob) -> None:
        """Send a file to rate (a worker that died meanwhile is found by `collect`)."""
        self.queued.append(index)
        try:
            self.conn.send((index, job))
        except OSError:
            pass

    def collect(self) -> tuple[list[tuple[int, FileOutcome]], bool]:
        """The outcomes this worker has sent (taken off ``queued``), and whether it died; a
        dead worker's pipe is closed."""
        finished = []
        died = False
        try:
            while self.queued and self.conn.poll():
                index, outcome = self.conn.recv()
                self.queued.remove(index)
                finished.append((index, outcome))
        except Exception:  # EOF: it died (a result torn by its death fails to unpickle)
            died = True
        if died or self.process.exitcode is not None:
            self.process.join(5)
            if self.process.exitcode is None:  # alive but its pipe is broken: stop it
                self.process.kill()
                self.process.join()
            self.conn.close()
            return finished, True
        return finished, False

    def death(self) -> str:
        """How the (ended) worker process ended, in words."""
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"killed by {name}" + ("; out of memory?" if -code == signal.SIGKILL else "")
        return f"exit code {code}"


def _stop(crew: list[_Worker]) -> None:
    """End the workers: idle ones are asked to exit, busy ones (the run was interrupted) are
    terminated, so that their temporary files are removed; any still alive after 5 s is killed."""
    for worker in crew:
        try:
            if not worker.queued:
                worker.conn.send(None)
            elif worker.process.exitcode is None:
                worker.process.terminate()
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + 5
    for worker in crew:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.exitcode is None:
            worker.process.kill()
            worker.process.join()
        worker.conn.close()


def _worker_main(conn, spec: ModelSpec, task, parent_pid: int) -> None:
    """A worker process: rate the files the parent sends, one at a time, until told to stop
    (None) or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent; it stops us
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    _die_with_parent(parent_pid)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        index, job = message
        try:
            outcome = task(job, spec)
        except Exception as exc:
            outcome = failed_outcome(
                job, f"unexpected error ({type(exc).__name__}: {exc})", spec.n_levels
            )
        try:
            conn.send((index, outcome))
        except (EOFError, OSError):
            return
        except Exception as exc:  # the outcome cannot be sent back (pickling failed)
            message = f"unexpected error (cannot return the result: {type(exc).__name__})"
            conn.send((index, failed_outcome(job, message, spec.n_levels)))


def _exit_on_sigterm(signum, frame) -> None:
    """SIGTERM in a worker: exit through Python (temporary files of atomic writes are removed)."""
    raise SystemExit(128 + signum)


def _die_with_parent(parent_pid: int) -> None:
    """End this process when its parent ends, however the parent ends (even SIGKILL).

    On Linux the kernel's parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); in every
    case also a watchdog thread that polls the parent's pid every 0.5 s (elsewhere the only
    means). The parent may die before the signal is set: then exit at once. (The kernel sends
    the signal when the *thread* that started the worker ends: `_run_processes` starts and
    stops its workers from the thread that iterates it.)"""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog alone
            pass
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="miq-parent-watchdog", daemon=True
    ).start()


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _watch_parent(parent_pid: int, every_s: float = 0.5) -> None:
    while True:
        time.sleep(every_s)
        if os.getppid() != parent_pid:
            os._exit(1)


def _client(scheduler):
    try:
        from distributed import Client
    except ImportError:
        raise MiqError("--scheduler needs Dask distributed: " + install_hint("dask")) from None
    if isinstance(scheduler, Client):
        return scheduler, False
    try:
        return Client(scheduler, timeout="20s"), True
    except (OSError, TimeoutError, ValueError) as exc:
        raise MiqError(f"{scheduler}: cannot reach the Dask scheduler ({exc})") from None


def _run_dask(
    jobs: dict[int, FileJob], spec: ModelSpec, scheduler
) -> Iterator[tuple[int, FileOutcome]]:
    client, owned = _client(scheduler)  # first: a clear error when distributed is missing
    from distributed import as_completed

    try:
        futures = {
            client.submit(rate_in_worker, job, spec, pure=False): index
            for index, job in jobs.items()
        }
        for future in as_completed(futures):
            index = futures[future]
            try:
                outcome = future.result()
            except Exception as exc:  # the worker died or the task was lost
                outcome = failed_outcome(
                    jobs[index], f"Dask task failed ({type(exc).__name__}: {exc})", spec.n_levels
                )
            future.release()
            yield index, outcome
    finally:
        if owned:
            client.close()
