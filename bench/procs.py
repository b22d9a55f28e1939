"""Processes the bench starts: pinned with taskset, logged to files, always stopped.

Every process is started in its own session so a stop reaches its children (gunicorn
workers, fetcher workers) and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class BenchError(Exception):
    """A step of the bench failed; the message says which and where its log is."""


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), 0.2):
            return True
    except OSError:
        return False


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    """`argv` run on the CPUs `cpus` (a taskset list), or as it is when `cpus` is None."""
    return ["taskset", "-c", cpus, *argv] if cpus is not None else list(argv)


class Proc:
    """One started process (and its session), with its log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        *,
        cpus: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log = log
        command = pinned(argv, cpus)
        full_env = dict(os.environ)
        full_env.update(env or {})
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """The process id (taskset execs the command, so it is the command's)."""
        return self.popen.pid

    def tail(self, lines: int = 15) -> str:
        """The end of the log, for error messages."""
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def wait_port(self, port: int, timeout_s: float = 60.0) -> None:
        """Return once `port` accepts connections; raise BenchError if the process died."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.popen.returncode} before listening on "
                    f"{port}; log {self.log}:\n{self.tail()}"
                )
            if port_open(port):
                return
            time.sleep(0.1)
        raise BenchError(
            f"{self.name} not listening on {port} after {timeout_s:.0f} s; "
            f"log {self.log}:\n{self.tail()}"
        )

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the session, then SIGKILL what is left after `timeout_s`."""
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout_s)
        # The leader may be gone while children of its session live on (gunicorn workers).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(2.0)


def children(pid: int) -> list[int]:
    """Direct children of `pid` (from /proc)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except (OSError, ValueError):
        return []


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) `pid` has used, from /proc/PID/stat."""
    # Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """VmRSS of `pid` in MB (1e6 bytes), from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise BenchError(f"/proc/{pid}/status has no VmRSS line")


def run(
    argv: Sequence[str],
    what: str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 600.0,
) -> str:
    """Run a command to completion; its stdout, or BenchError with its output."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            env=full_env,
            cwd=cwd,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what}: no result after {timeout_s:.0f} s: {' '.join(argv)}") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()
        raise BenchError(
            f"{what} failed (exit {done.returncode}): {' '.join(argv)}\n" + "\n".join(output[-20:])
        )
    return done.stdout
