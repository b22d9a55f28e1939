"""`fetcher serve`: one process, or a supervisor forking N workers that share the port.

The supervisor reads and validates settings and the catalog (plain files: no gRPC
object, event loop or LMDB environment exists in it), then forks; each worker builds
its own App and binds with SO_REUSEPORT. The supervisor restarts a worker that dies
(with backoff), forwards SIGTERM/SIGINT/SIGHUP to all, and exits when they are done.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from fetcher.catalog import CatalogError
from fetcher.config import Settings, SettingsError, load_settings, log_level
from fetcher.server._logging_json import Redactor, configure_logging
from fetcher.server._reload import load_snapshot

log = logging.getLogger("fetcher.server.workers")

#: Exit code of a worker (or the server) that cannot start with its settings.
EXIT_CONFIG = 2
MAX_BACKOFF_S = 30.0
# A worker that ran this long before dying restarts after the base delay again.
_HEALTHY_RUN_S = 30.0
_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD}


def secrets_redactor(settings: Settings) -> Redactor:
    """A redactor that knows the secrets the settings point at (URL passwords, env tokens)."""
    redactor = Redactor()
    urls = [s.url for s in settings.stores.values()]
    if settings.cache.l2_url:
        urls.append(settings.cache.l2_url)
    for url in urls:
        password = urlsplit(url).password
        if password:
            redactor.add(password)
    for client in settings.authz.values():
        if client.token_env and os.environ.get(client.token_env):
            redactor.add(os.environ[client.token_env])
    return redactor


def _fail(message: object) -> int:
    print(f"fetcher serve: {message}", file=sys.stderr)
    return EXIT_CONFIG


def run_serve(settings_path: str | None, workers: int | None) -> int:
    """Validate everything that can be checked without serving, then serve; the exit code."""
    try:
        settings = load_settings(settings_path)
    except SettingsError as exc:
        return _fail(exc)
    redactor = secrets_redactor(settings)
    configure_logging(settings.log.format, log_level(settings.log), redactor,
                      static={"pid": os.getpid()})
    count = settings.server.workers if workers is None else workers
    if count < 0:
        return _fail("--workers: must be >= 0 (0 = one per core)")
    count = count or os.cpu_count() or 1
    try:
        load_snapshot(settings.server.config_dir, settings.stores)
        if settings.feast.repo:
            from fetcher.feast import FeastError, load_feast_repo

            try:
                load_feast_repo(settings.feast.repo)
            except FeastError as exc:
                return _fail(f"feast.repo: {exc}")
        if settings.tracing.enabled:
            from fetcher.server._tracing import load_tracer

            load_tracer(settings.tracing)
    except (CatalogError, SettingsError) as exc:
        return _fail(exc)
    log.info("settings:\n%s", settings.describe())
    if count == 1:
        return serve_in_process(settings, 0, reuse_port=False, redactor=redactor)
    return Supervisor(settings, count, redactor).run()


def serve_in_process(
    settings: Settings, worker_index: int, *, reuse_port: bool, redactor: Redactor
) -> int:
    """Run one server in this process until it is told to stop; the exit code."""
    import uvloop

    from fetcher.server._app import serve

    try:
        code: int = uvloop.run(
            serve(settings, worker_index=worker_index, reuse_port=reuse_port, redactor=redactor)
        )
    except (CatalogError, SettingsError) as exc:
        return _fail(exc)
    return code


@dataclass(slots=True)
class _Slot:
    index: int
    pid: int = 0
    started: float = 0.0
    failures: int = 0
    restart_at: float | None = None


def _die_with_parent() -> None:
    # Linux: a worker gets SIGTERM if the supervisor itself is killed (-9).
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


class Supervisor:
    """Forks and watches the workers; the process `fetcher serve --workers N` runs as."""

    def __init__(self, settings: Settings, count: int, redactor: Redactor) -> None:
        self._settings = settings
        self._redactor = redactor
        self._slots = [_Slot(i) for i in range(count)]
        self._stopping = False
        self._code = 0

    def run(self) -> int:
        """Fork the workers and supervise them until they are all gone; the exit code."""
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        for slot in self._slots:
            self._spawn(slot)
        log.info("supervisor: %d workers on %s", len(self._slots),
                 self._settings.server.listen, extra={"workers": len(self._slots)})
        while True:
            info = signal.sigtimedwait(_SIGNALS, self._wait_s())
            signo = signal.SIGCHLD if info is None else signal.Signals(info.si_signo)
            if signo != signal.SIGCHLD and self._on_signal(signo):
                return 1
            self._reap()
            if self._stopping and not any(s.pid for s in self._slots):
                log.info("supervisor: all workers stopped")
                return self._code
            if not self._stopping:
                self._restart_due()

    def _wait_s(self) -> float:
        due = [s.restart_at for s in self._slots if s.restart_at is not None]
        if not due:
            return 1.0
        return max(0.0, min(due) - time.monotonic())

    def _spawn(self, slot: _Slot) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.setpgid(0, 0)  # a terminal's Ctrl-C reaches the supervisor only
                _die_with_parent()
                for signum in _SIGNALS:
                    signal.signal(signum, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
                configure_logging(
                    self._settings.log.format, log_level(self._settings.log), self._redactor,
                    static={"pid": os.getpid(), "worker": slot.index},
                )
                code = serve_in_process(
                    self._settings, slot.index, reuse_port=True, redactor=self._redactor
                )
            except BaseException:
                log.exception("worker %d crashed", slot.index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        slot.pid = pid
        slot.started = time.monotonic()
        slot.restart_at = None
        log.info("supervisor: worker %d started (pid %d)", slot.index, pid,
                 extra={"worker_pid": pid, "worker_index": slot.index})

    def _on_signal(self, signum: signal.Signals) -> bool:
        """Handle one signal; True when the supervisor must exit at once."""
        if signum == signal.SIGHUP:
            log.info("supervisor: SIGHUP, forwarding to the workers")
            self._send(signal.SIGHUP)
            return False
        if self._stopping:
            log.warning("supervisor: second %s, killing the workers", signum.name)
            self._send(signal.SIGKILL)
            return True
        log.info("supervisor: %s, stopping the workers", signum.name)
        self._stopping = True
        self._send(signal.SIGTERM)
        return False

    def _send(self, signum: signal.Signals) -> None:
        for slot in self._slots:
            if slot.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(slot.pid, signum)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            slot = next((s for s in self._slots if s.pid == pid), None)
            if slot is None:
                continue
            slot.pid = 0
            if self._stopping:
                if code != 0:
                    self._code = 1
                log.info("supervisor: worker %d exited (%d)", slot.index, code,
                         extra={"exit_code": code, "worker_index": slot.index})
                continue
            if code == EXIT_CONFIG:
                # Every worker has the same settings: restarting cannot help.
                log.error("supervisor: worker %d cannot start (exit 2); stopping", slot.index)
                self._stopping = True
                self._code = EXIT_CONFIG
                self._send(signal.SIGTERM)
                continue
            self._schedule_restart(slot, code)

    def _schedule_restart(self, slot: _Slot, code: int) -> None:
        ran = time.monotonic() - slot.started
        slot.failures = 1 if ran >= _HEALTHY_RUN_S else slot.failures + 1
        base = self._settings.server.worker_restart_backoff_s
        delay = min(base * 2 ** (slot.failures - 1), MAX_BACKOFF_S)
        slot.restart_at = time.monotonic() + delay
        log.warning(
            "supervisor: worker %d died (exit %d after %.1f s); restarting in %.1f s",
            slot.index, code, ran, delay,
            extra={"exit_code": code, "worker_index": slot.index, "restart_in_s": delay},
        )

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if slot.restart_at is not None and slot.restart_at <= now and not slot.pid:
                self._spawn(slot)
