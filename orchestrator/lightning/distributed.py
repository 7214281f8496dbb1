"""DDP on one machine: the rendezvous on loopback only, the other ranks started and watched here.

``trainer=ddp_cpu`` and ``trainer=ddp`` set ``strategy: ddp_loopback``. The first process (rank
zero) picks a rendezvous file, a loopback address and a port, and starts one process per other
rank by running the same command line again (as Lightning's own launcher does), with
``LOCAL_RANK`` set: Lightning then treats the processes as created externally (its documented
torchrun-style contract) and launches nothing itself. Rank zero watches the others, so that a
failure in any rank ends every rank and the run is FAILED with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Callable, Optional

import torch

from .ranks import worker_rank  # noqa: F401  (re-exported)
#: The strategy name the trainer presets use: Lightning's DDP, with the rendezvous on loopback
#: (:func:`join_process_group`) and the ranks started here (:class:`RankWatch`).
STRATEGY_NAME = "ddp_loopback"


class RankFailed(RuntimeError):
    """Another DDP rank failed (an error, or killed): every rank is stopped and the run FAILED."""


def rank_error_file(rank: int) -> Optional[str]:
    """Where rank ``rank`` leaves the reason it failed, for rank zero to report."""
    rendezvous = os.environ.get("ORCHESTRATOR_RENDEZVOUS")
    return f"{rendezvous}.rank{rank}.error" if rendezvous else None


def join_process_group(trainer) -> None:
    """Open the process group through the file rendezvous before Lightning would open its own
    with torch's TCP store (which listens on every interface even when told 127.0.0.1):
    Lightning finds it open and uses it. Called by every rank, right before fitting."""
    import datetime

    if torch.distributed.is_initialized():
        return
    device = trainer.strategy.root_device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(
        "nccl" if device.type == "cuda" else "gloo",
        init_method=f"file://{os.environ['ORCHESTRATOR_RENDEZVOUS']}",
        rank=int(os.environ.get("LOCAL_RANK", "0")),
        world_size=trainer.num_devices * trainer.num_nodes,
        timeout=datetime.timedelta(minutes=30),
    )


def prepare_environment() -> dict[str, Optional[str]]:
    """In rank zero, before the Trainer is built: the rendezvous, a loopback address and port,
    and ``LOCAL_RANK=0``. Returns the variables as they were, for :func:`restore_environment`.
    In the other ranks (started with all of these set), nothing to do."""
    import shutil
    import socket
    import tempfile

    names = ("ORCHESTRATOR_RENDEZVOUS", "MASTER_ADDR", "MASTER_PORT", "GLOO_SOCKET_IFNAME",
             "LOCAL_RANK", "NODE_RANK")
    if worker_rank():
        return {}
    before = {name: os.environ.get(name) for name in names}
    folder = tempfile.mkdtemp(prefix="orchestrator-ddp-")
    import atexit

    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["ORCHESTRATOR_RENDEZVOUS"] = os.path.join(folder, "rendezvous")
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(probe.getsockname()[1])
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    os.environ["LOCAL_RANK"] = "0"  # Lightning: the processes are created here, not by it
    os.environ["NODE_RANK"] = "0"
    return before


def restore_environment(before: dict[str, Optional[str]]) -> None:
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def rank_command(rank: int) -> tuple[list[str], Optional[str]]:
    """The command line and folder that start rank ``rank``: this command again, in the same
    Hydra output folder, writing no second copy of the config."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    if not HydraConfig.initialized():
        from ..errors import OrchestratorError

        raise OrchestratorError(
            "strategy=ddp_loopback starts its other ranks by running the command line again, so "
            "it runs from `python -m orchestrator ...`, not from orchestrator.run() in a program."
        )
    command = [sys.executable, "-m", "orchestrator", *sys.argv[1:],
               f'hydra.run.dir="{HydraConfig.get().run.dir}"', "hydra.output_subdir=null",
               f"hydra.job.name=ddp_rank_{rank}"]
    return command, get_original_cwd()


class RankWatch:
    """Rank zero's watch over the processes it started for the other ranks.

    When one exits with a non-zero status (an error, or killed), the others are killed at once,
    and :meth:`failure` says which rank failed and why. Rank zero's training then fails too: a
    collective with a dead peer raises (gloo) and :class:`~orchestrator.lightning.Training`
    reports the rank's failure. If rank zero stays blocked instead (NCCL waits for its timeout),
    the watch records the failure through ``abort`` after ``grace`` seconds and ends the process.
    """

    def __init__(self, world_size: int, poll: float = 0.2, grace: float = 10.0):
        self.world_size = world_size
        self.procs: list[subprocess.Popen] = []
        self.poll, self.grace = poll, grace
        self.abort: Optional[Callable[[str], None]] = None
        self.settled = False  # rank zero's training has ended, with or without an error
        self._failure: Optional[str] = None
        self._found = None

    def start(self) -> None:
        """Start the other ranks and watch them."""
        import atexit
        import threading

        for rank in range(1, self.world_size):
            command, cwd = rank_command(rank)
            env = {**os.environ, "LOCAL_RANK": str(rank), "NODE_RANK": "0",
                   "WORLD_SIZE": str(self.world_size)}
            self.procs.append(subprocess.Popen(command, env=env, cwd=cwd))
        atexit.register(self.kill_children)  # rank zero ended before its training did
        self._found = threading.Event()
        threading.Thread(target=self._watch, name="orchestrator-rank-watch", daemon=True).start()

    def _watch(self) -> None:
        while not self.settled:
            for rank, proc in enumerate(self.procs, start=1):
                code = proc.poll()
                if code not in (None, 0):
                    self._failure = self._reason(rank, proc, code)
                    self.kill_children()
                    self._found.set()
                    self._abort_if_stuck()
                    return
            time.sleep(self.poll)

    @staticmethod
    def _reason(rank: int, proc, code: int) -> str:
        import signal

        path = rank_error_file(rank)
        detail = ""
        if path and os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as handle:
                detail = handle.read().strip()
        if not detail:
            detail = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        return f"DDP rank {rank} (pid {proc.pid}) failed: {detail}"

    def failure(self, wait: float = 0.0) -> Optional[str]:
        """The failure of another rank, waiting up to ``wait`` seconds for the watch to see it."""
        if self._found is not None and wait > 0:
            self._found.wait(wait)
        return self._failure

    def kill_children(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()  # SIGKILL: a rank blocked in a collective ignores SIGTERM

    def join(self, timeout: float = 60.0) -> None:
        """After a successful run: let the other ranks finish their own exit, then reap them."""
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()

    def _abort_if_stuck(self) -> None:
        deadline = time.monotonic() + self.grace
        while not self.settled and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.settled:
            return
        print(f"Error: {self._failure}. Rank 0 was blocked waiting for it; every rank is stopped.",
              file=sys.stderr)
        if self.abort is not None:
            try:
                self.abort(self._failure)
            except Exception as error:  # still end the process
                print(f"Could not record the failure: {error}", file=sys.stderr)
        os._exit(1)


def end_process_group() -> None:
    """Destroy the DDP process group, so that every rank's process can exit (NCCL's threads
    keep a process alive otherwise)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
