"""Helpers for tests that start servers: free loopback ports, an ``mlflow ui``/``mlflow server``
started on 127.0.0.1 and stopped by PID, and what a process tree listens on."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SERVER_ENV = {
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_addresses(pid: int) -> set[str]:
    """The local addresses of the TCP sockets ``pid`` listens on (from ``ss``)."""
    out = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True).stdout
    return {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if f"pid={pid}," in line}


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it."""
    found, todo = {pid}, [pid]
    while todo:
        tasks = Path(f"/proc/{todo.pop()}/task")
        for task in tasks.glob("*/children") if tasks.exists() else []:
            try:
                children = task.read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


@contextlib.contextmanager
def mlflow_server(command: str, options: list[str], cwd: Path, log: Path, wait: float = 90):
    """``python -m mlflow <command> <options>`` on 127.0.0.1 and a free port, one worker; yields
    ``(url, process)`` once ``/health`` answers; stops the server and its worker by PID."""
    port = free_port()
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", command, *options, "--host", "127.0.0.1", "--port", str(port),
             "--workers", "1"],
            cwd=cwd, env={**os.environ, **SERVER_ENV}, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"mlflow {command} did not answer /health within {wait} s:\n"
                                       f"{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield url, server
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # the server and its worker, by PID
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
