"""Running per-file rating jobs: in this process, in local worker processes, or on a Dask cluster.

All three give the same outcomes (same rows, same output files); only where the work runs
differs. In this process, a thread reads the next file while the current one is rated. Each worker loads the model once (cached per process) and runs it with one inference
thread unless the model was loaded with more. A file whose worker raises or dies becomes one
error row; the run goes on.

* ``workers=N`` — N local processes (``spawn``: safe with ONNX Runtime's threads). A worker that
  dies (e.g. killed for memory) is replaced and its in-flight files are retried once.
* ``scheduler=ADDRESS`` — a Dask distributed scheduler (``tcp://host:8786``) or a
  ``distributed.Client``; needs the ``dask`` extra. The workers must see the input files and the
  output folder at the same paths (a shared file system), and have miq installed.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import lru_cache

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
    jobs: dict[int, FileJob], spec: ModelSpec, workers: int
) -> Iterator[tuple[int, FileOutcome]]:
    context = multiprocessing.get_context("spawn")
    pending = list(jobs)[::-1]  # a stack: pop() gives input order
    attempts: dict[int, int] = {}
    in_flight_limit = 4 * workers  # bounded: outcomes do not pile up in memory
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    running: dict = {}
    try:
        while pending or running:
            while pending and len(running) < in_flight_limit:
                index = pending.pop()
                running[pool.submit(rate_in_worker, jobs[index], spec)] = index
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = False
            for future in finished:
                index = running.pop(future)
                try:
                    yield index, future.result()
                except BrokenProcessPool:
                    broken = True
                    attempts[index] = attempts.get(index, 0) + 1
                    if attempts[index] > 1:
                        yield (
                            index,
                            failed_outcome(
                                jobs[index], "worker process died twice on this file", spec.n_levels
                            ),
                        )
                    else:
                        pending.append(index)
            if broken:  # a worker died: the pool is unusable; retry its files in a new one
                for index in list(running.values()):
                    pending.append(index)
                    attempts[index] = attempts.get(index, 0) + 1
                running.clear()
                pool.shutdown(wait=False, cancel_futures=True)
                pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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
