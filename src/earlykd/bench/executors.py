"""Where jobs run: in this process, in a pool of local worker processes, or as Ray tasks.

Every executor gives `submit(fn, *args) -> concurrent.futures.Future`, a `capacity` (jobs worth
keeping in flight) and `close()`. Each worker gets its own torch thread budget so that
workers x threads does not oversubscribe the cores.
"""
from __future__ import annotations

import multiprocessing
import os
import socket
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor

from ..errors import EarlykdError, check
from ..threads import MAX_THREADS, cores


def _limit_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch
    torch.set_num_threads(threads)


def _watch_parent(parent: int) -> None:
    """A worker whose sweep died (even by SIGKILL) exits too, so it never races a re-run."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _init_worker(threads: int, parent: int) -> None:
    _limit_threads(threads)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


class InlineExecutor:
    """Runs each job in this process when submitted (--workers 0; debugging, tests)."""
    capacity = 1

    def __init__(self, threads: int):
        self.threads = threads

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # reported per job by the sweep
            future.set_exception(exc)
        return future

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class LocalExecutor:
    """A pool of `workers` spawned processes, each with `threads` torch threads."""

    def __init__(self, workers: int, threads: int):
        self.capacity, self.threads = 2 * workers, threads
        # workers killed on Ctrl-C (abort) leave a queue's semaphore to multiprocessing's resource tracker, which
        # removes it and would say so on stderr; the tracker starts with the pool and takes this environment
        quiet = "ignore::UserWarning:multiprocessing.resource_tracker"
        os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), quiet]))
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_worker, initargs=(threads, os.getpid()))

    def submit(self, fn, *args) -> Future:
        return self.pool.submit(fn, *args)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def abort(self) -> None:
        """Stop now (Ctrl-C): queued jobs are dropped and running ones killed; their run directories resume."""
        processes = list((getattr(self.pool, "_processes", None) or {}).values())   # no public way before 3.14
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(5)
        self.pool.shutdown(wait=True, cancel_futures=True)


def _ray_call(threads: int, fn, *args):
    _limit_threads(threads)
    return fn(*args)


PROBE_SECONDS = 10


def probe_address(address: str) -> None:
    """Fail in seconds, in one line, when a Ray address's host:port takes no connection (Ray itself
    retries for minutes). 'auto', 'local' and addresses without a port are left to Ray."""
    host, sep, port = address.split("://")[-1].rstrip("/").rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS).close()
    except socket.timeout:
        raise EarlykdError(f"cannot reach Ray at {address}: no answer within {PROBE_SECONDS} s") from None
    except ConnectionRefusedError:
        raise EarlykdError(f"cannot reach Ray at {address}: connection refused (is the cluster up? "
                           "`ray start --head` prints its address)") from None
    except OSError as exc:
        raise EarlykdError(f"cannot reach Ray at {address}: {exc.strerror or exc}") from None


class RayExecutor:
    """Ray tasks of `threads` CPUs (and `gpus` GPUs) each; without an address, a local Ray instance of
    workers x threads CPUs. Run directories must be on a file system that every node shares."""

    def __init__(self, workers: int, threads: int, address: str | None = None, gpus: float = 0):
        try:
            import ray
        except ImportError:
            raise EarlykdError("the Ray executor needs Ray: pip install 'earlykd[ray]'") from None
        self.ray, self.threads, self.owned = ray, threads, not ray.is_initialized()
        if self.owned and address:
            probe_address(address)
        if self.owned:
            kwargs = {"address": address} if address else {"num_cpus": workers * threads, "include_dashboard": False}
            try:
                ray.init(log_to_driver=False, **kwargs)
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError...
                raise EarlykdError(f"cannot start or reach Ray{' at ' + address if address else ''}: "
                                   f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        total = int(ray.cluster_resources().get("CPU", workers * threads))
        self.capacity = 2 * max(1, total // threads)
        self.task = ray.remote(num_cpus=threads, num_gpus=gpus, max_retries=0)(_ray_call)

    def submit(self, fn, *args) -> Future:
        return self.task.remote(self.threads, fn, *args).future()

    def close(self) -> None:
        if self.owned:
            self.ray.shutdown()

    def abort(self) -> None:
        self.close()   # an owned local instance takes its tasks with it


def check_executor(kind: str, workers: int | None = None, threads: int | None = None, address: str | None = None,
                   gpus: float = 0) -> None:
    check(kind in ("local", "ray"), f"unknown executor '{kind}' (local or ray)")
    check(workers is None or workers >= 0, f"--workers must be >= 0, got {workers}")
    check(threads is None or 1 <= threads <= MAX_THREADS, f"--threads must be in [1, {MAX_THREADS}], got {threads}")
    check(address is None or kind == "ray", "--address needs --executor ray")
    check(not gpus or kind == "ray", "--gpus needs --executor ray")


def make_executor(kind: str, workers: int | None = None, threads: int | None = None, address: str | None = None,
                  gpus: float = 0):
    check_executor(kind, workers, threads, address, gpus)
    workers = 1 if workers is None else workers
    threads = threads or max(1, cores() // max(1, workers))
    if kind == "ray":
        return RayExecutor(max(1, workers), threads, address, gpus or 0)
    return InlineExecutor(threads) if workers == 0 else LocalExecutor(workers, threads)
