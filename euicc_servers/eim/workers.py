"""Several eIM processes serving one address and one state directory (``euicc-sim eim
--workers N``).

Rules:

1. The parent binds the listening socket once (``--port 0``: a free port, which every
   worker then serves and which becomes the default eimFqdn) and starts N worker processes
   (spawned: fresh interpreters) that accept connections from it; the kernel hands each
   connection to one of them.
2. Every worker opens the same SQLite state (WAL; each change is one ``BEGIN IMMEDIATE``
   transaction, so two workers serving the same eUICC see each other's writes in order: a
   package is signed once, a result stored once). A worker keeps rows it read or wrote
   (eUICC records, orders) from one transaction to the next only while no other connection
   committed in between (SQLite's ``data_version``, checked at every BEGIN); otherwise only
   values keyed by their exact bytes outlive a transaction.
3. The background work (campaign waves, pushes, webhooks) runs in worker 0 only.
4. Each worker serves HTTPS with a certificate of its own, issued at its start under the
   same CI (clients verify the chain, as with one process).
5. When one worker ends, the others are stopped and the parent returns its exit status;
   Ctrl-C or SIGTERM stop them all.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import signal
import socket
from collections.abc import Iterator
from typing import Any

__all__ = ["WorkerPool", "serve_workers"]

log = logging.getLogger(__name__)


def _worker(args: argparse.Namespace, sock: socket.socket, index: int, level: int) -> None:
    """One worker: the eIM of ``args`` served on ``sock`` (rules 2-4)."""
    logging.basicConfig(level=level, format=f"%(levelname)s eim-worker-{index} %(message)s")
    from ..common.serve import serve
    from .app import create_app
    from .serve import build_from_args

    server = build_from_args(args)
    try:
        serve(
            create_app(server.core, scheduler=index == 0),
            host=args.host,
            port=args.port,
            tls=server.tls,
            limits=server.core.settings.limits,
            sock=sock,
        )
    finally:
        server.core.store.close()


class WorkerPool:
    """N worker processes on one socket (rule 1); a context manager that stops them."""

    def __init__(self, args: argparse.Namespace, workers: int) -> None:
        if workers < 1:
            raise ValueError("at least one worker")
        # The options only: a command's ``run`` and other callables do not go to a worker.
        self.args = argparse.Namespace(**{k: v for k, v in vars(args).items() if not callable(v)})
        self.workers = workers
        self.processes: list[Any] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((args.host, args.port))
        self.sock.listen(2048)
        self.port: int = self.sock.getsockname()[1]
        self.args.port = self.port
        if not self.args.address:
            self.args.address = f"{args.host}:{self.port}"

    def start(self) -> None:
        """Start the workers."""
        context = multiprocessing.get_context("spawn")
        level = logging.getLogger().getEffectiveLevel()
        for index in range(self.workers):
            process = context.Process(
                target=_worker,
                args=(self.args, self.sock, index, level),
                name=f"eim-worker-{index}",
            )
            process.start()
            self.processes.append(process)

    def wait(self) -> int:
        """Block until a worker ends (rule 5); its exit status."""
        sentinels = [p.sentinel for p in self.processes]
        ended = multiprocessing.connection.wait(sentinels)
        for process in self.processes:
            if process.sentinel in ended:
                log.warning("%s ended (exit status %s)", process.name, process.exitcode)
                return int(process.exitcode or 0)
        return 0

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every worker (SIGTERM: uvicorn finishes what is in flight; then SIGKILL)."""
        for process in self.processes:
            if process.is_alive():
                process.terminate()
        for process in self.processes:
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join()
        self.sock.close()

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_workers(args: argparse.Namespace, workers: int) -> int:
    """Serve the eIM of ``args`` from ``workers`` processes until one ends or the parent is
    stopped (Ctrl-C, SIGTERM: exit status 0)."""
    pool = WorkerPool(args, workers)
    log.info("eIM on %s:%d from %d worker processes", args.host, pool.port, workers)
    with pool, _sigterm_raises():
        try:
            return pool.wait()
        except KeyboardInterrupt:
            return 0
