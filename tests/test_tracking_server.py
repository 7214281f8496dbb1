"""A team can point every job at one shared MLflow tracking server: a real ``mlflow server``
(PostgreSQL behind it when Debian's PostgreSQL can be started here, else SQLite) serving
artifacts itself, a parallel sweep and a single run sent to it over HTTP, everything read back
through the server. Everything started here listens on 127.0.0.1 only and is stopped by PID.
``ORCHESTRATOR_TEST_SERVER_BACKEND=sqlite`` skips PostgreSQL (to check the fallback).
Run with ``pytest -s`` to see the backend used and the throughput line."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.entities import Metric, ViewType

from conftest import cli
from servers import descendants, free_port, listening_addresses, mlflow_server

# Debian keeps PostgreSQL's server programs off PATH, under /usr/lib/postgresql/<version>/bin.
PG_BIN_DIRS = ["/usr/local/bin", "/usr/lib/postgresql/15/bin",
               *(str(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True,
                                        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0))]
ACCESS_LINE = re.compile(r'"(GET|POST|PUT|PATCH|DELETE) /(api|ajax-api)/')
SERVER_ERROR = re.compile(r'" 5\d\d ')


def pg_tool(name: str) -> str | None:
    for folder in PG_BIN_DIRS:
        if os.access(Path(folder) / name, os.X_OK):
            return str(Path(folder) / name)
    return shutil.which(name)


class Postgres:
    """A private PostgreSQL 15 cluster in a temporary directory, on 127.0.0.1 only."""

    def __init__(self):
        self.initdb, self.pg_ctl = pg_tool("initdb"), pg_tool("pg_ctl")
        if not (self.initdb and self.pg_ctl):
            raise RuntimeError("PostgreSQL's initdb/pg_ctl are not installed")
        # As root the cluster belongs to (and runs as) the postgres user: initdb refuses root.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user and not shutil.which("runuser"):
            raise RuntimeError("running as root without runuser")
        # Not under pytest's tmp_path: its parents are closed to the postgres user.
        self.root = Path(tempfile.mkdtemp(prefix="orchestrator-pg-"))
        self.data, self.sockets = self.root / "data", self.root / "sockets"
        self.sockets.mkdir()
        if self.as_user:
            import pwd

            user = pwd.getpwnam("postgres")
            for path in (self.root, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        self.port = free_port()
        self.started = False

    def _run(self, *command: str, timeout: float = 120) -> None:
        result = subprocess.run([*self.as_user, *command], capture_output=True, text=True, timeout=timeout,
                                cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stdout[-1500:]}{result.stderr[-1500:]}")

    def start(self) -> str:
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        self.started = True
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets}"
        self._run(self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.root / "postgres.log"),
                  "-w", "-t", "60", "start")
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres")
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute("CREATE DATABASE mlflow")
        finally:
            connection.close()
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/mlflow"

    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        try:
            if self.started and (self.data / "postmaster.pid").exists():
                self._run(self.pg_ctl, "-D", str(self.data), "stop", "-m", "fast", "-w", "-t", "60")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory):
    """``(url, backend, server_pid, postgres_pid_or_None, access_log)`` of a running server."""
    base = tmp_path_factory.mktemp("tracking-server")
    postgres, backend_uri, backend = None, None, "sqlite"
    try:
        if os.environ.get("ORCHESTRATOR_TEST_SERVER_BACKEND", "").lower() == "sqlite":
            raise RuntimeError("ORCHESTRATOR_TEST_SERVER_BACKEND=sqlite")
        postgres = Postgres()
        backend_uri, backend = postgres.start(), "postgresql"
    except Exception as error:  # no PostgreSQL here: the same test on SQLite
        print(f"\nPostgreSQL unavailable ({str(error).strip()[:300]}); falling back to SQLite")
        if postgres is not None:
            postgres.stop()
        postgres = None
        backend_uri = f"sqlite:///{base / 'server.db'}"
    print(f"\ntracking server backend: {backend} ({backend_uri})")
    access_log = base / "server.log"
    try:
        with mlflow_server("server", ["--backend-store-uri", backend_uri, "--serve-artifacts",
                                      "--artifacts-destination", str(base / "artifacts")],
                           cwd=base, log=access_log) as (url, server):
            yield url, backend, server.pid, postgres.pid() if postgres else None, access_log
    finally:
        if postgres is not None:
            postgres.stop()


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def api_requests(access_log: Path) -> int:
    return sum(1 for line in access_log.read_text(errors="replace").splitlines() if ACCESS_LINE.search(line))


def test_everything_listens_on_loopback_only(tracking_server):
    if not shutil.which("ss"):
        pytest.skip("ss is not installed")
    url, backend, server_pid, postgres_pid, _ = tracking_server
    server_addresses = set().union(*(listening_addresses(pid) for pid in descendants(server_pid)))
    assert server_addresses == {"127.0.0.1"}, server_addresses
    if postgres_pid is not None:
        assert listening_addresses(postgres_pid) == {"127.0.0.1"}


def test_a_parallel_sweep_goes_through_the_server(tracking_server, tmp_path):
    url, backend, _, _, access_log = tracking_server
    before = api_requests(access_log)
    started = time.perf_counter()
    result = cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "model=linear,logistic",
                 "optimizer=gd,adam", "trainer.max_epochs=3", f"tracking.uri={url}", cwd=tmp_path)
    sweep_seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-4000:]
    sweep_requests = api_requests(access_log) - before

    client = mlflow.MlflowClient(url)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    runs = client.search_runs(experiments, run_view_type=ViewType.ALL, max_results=10000)
    parents = [r for r in runs if r.data.tags.get("orchestrator.sweep") == "parent"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4
    assert all(r.info.status == "FINISHED" for r in [parent, *children])

    # every epoch's point arrived; the models load and predict; the summary downloads
    points, lost = 0, 0
    mlflow.set_tracking_uri(url)
    try:
        for child in children:
            run_id = child.info.run_id
            history = client.get_metric_history(run_id, "val/loss")
            lost += 3 - len(history)
            assert sorted(m.step for m in history) == sorted({m.step for m in history})  # no duplicates
            for key in client.get_run(run_id).data.metrics:
                points += len(client.get_metric_history(run_id, key))
            model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
            example = model.input_example
            assert example is not None
            prediction = np.asarray(model.predict(example))
            assert len(prediction) == len(example) and np.isfinite(prediction).all()
        for key in client.get_run(parent.info.run_id).data.metrics:
            points += len(client.get_metric_history(parent.info.run_id, key))
        summary = mlflow.artifacts.load_text(f"runs:/{parent.info.run_id}/summary.csv")
    finally:
        mlflow.set_tracking_uri(None)
    assert lost == 0
    rows = list(csv.DictReader(io.StringIO(summary)))
    assert {r["run_id"] for r in rows} == {c.info.run_id for c in children}
    # artifacts went through the server, not into a local store
    assert not (tmp_path / "mlruns").exists()
    assert not (tmp_path / "mlartifacts").exists()
    assert not [p for p in tmp_path.rglob("*") if p.name in {"MLmodel", "summary.csv", "mlflow.db"}]
    errors = [line for line in access_log.read_text(errors="replace").splitlines() if SERVER_ERROR.search(line)]
    assert not errors, errors[:5]

    # throughput: a fixed burst of log_batch calls (10 metrics each) against the server
    burst_run = client.create_run(parent.info.experiment_id, run_name="throughput burst")
    calls, per_call = 200, 10
    started = time.perf_counter()
    for step in range(calls):
        now = int(time.time() * 1000)
        client.log_batch(burst_run.info.run_id,
                         metrics=[Metric(f"m{i}", float(step * i), now, step) for i in range(per_call)])
    burst_seconds = time.perf_counter() - started
    client.set_terminated(burst_run.info.run_id)
    burst_points = sum(len(client.get_metric_history(burst_run.info.run_id, f"m{i}")) for i in range(per_call))
    lost += calls * per_call - burst_points
    assert lost == 0
    print(f"\ntracking server ({backend}): {1 + len(children)} runs, {points} metric points, {lost} lost, "
          f"{calls / burst_seconds:.0f} calls/s")
    print(f"tracking server ({backend}): burst of {calls} log_batch calls x {per_call} metrics = "
          f"{burst_points} points read back, in {burst_seconds:.2f} s")
    if sweep_requests:
        print(f"tracking server ({backend}): the sweep made {sweep_requests} API requests in "
              f"{sweep_seconds:.1f} s ({sweep_requests / sweep_seconds:.1f} requests/s)")


def test_a_single_run_finds_the_server_through_the_environment(tracking_server, tmp_path):
    url, backend, _, _, _ = tracking_server
    result = cli("model=linear", "trainer.max_epochs=3", "tracking.experiment=env-var",
                 cwd=tmp_path, env={"MLFLOW_TRACKING_URI": url})
    assert result.returncode == 0, result.stderr[-4000:]
    client = mlflow.MlflowClient(url)
    experiment = client.get_experiment_by_name("env-var")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "val/loss")) == 3
    mlflow.set_tracking_uri(url)
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
        assert len(model.predict(model.input_example)) == len(model.input_example)
    finally:
        mlflow.set_tracking_uri(None)
    assert not (tmp_path / "mlruns").exists()
