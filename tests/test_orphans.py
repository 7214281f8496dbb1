"""No orphan runs: a run or a sweep whose process is killed with kill -9 is closed as KILLED, with
the reason, by ``orchestrator sweep close`` or by the next run in the store; a live run never is.
Real processes and real SQLite stores; the rules themselves on runs written with chosen tags."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import mlflow
import pytest
from test_reliability import start, wait_for_training

from conftest import TINY, all_runs, cli, store_uri
from orchestrator import orphans

QUICK = ["tracking.log_model=false", "tracking.plots=false"]
LONG = ["trainer.max_epochs=1000000", "tracking.flush_seconds=0.3", *QUICK]


def by_id(uri: str) -> dict:
    return {r.info.run_id: r for r in all_runs(uri)}


def kill_hard(proc: subprocess.Popen) -> None:
    proc.kill()  # SIGKILL: the process can write nothing more
    proc.communicate(timeout=60)


def test_a_hard_killed_run_is_closed_by_the_next_run_in_the_store(tmp_path):
    proc = start(tmp_path, *LONG)
    wait_for_training(tmp_path, proc)
    uri = store_uri(tmp_path)
    (run,) = all_runs(uri)
    tags = run.data.tags
    assert tags[orphans.HOST] == orphans.this_host() and tags[orphans.PID] == str(proc.pid)
    assert tags[orphans.TIMEOUT] == "600"  # max(10 minutes, 30 x 0.3 s)
    first = int(tags[orphans.HEARTBEAT])
    time.sleep(2.5)
    (run,) = all_runs(uri)
    assert int(run.data.tags[orphans.HEARTBEAT]) > first  # refreshed as metric points are sent
    kill_hard(proc)
    (run,) = all_runs(uri)
    assert run.info.status == "RUNNING"  # nobody could end it

    new = cli(*TINY, *QUICK, cwd=tmp_path)
    assert new.returncode == 0, new.stderr[-2000:]
    runs = by_id(uri)
    killed = runs[run.info.run_id]
    assert killed.info.status == "KILLED"
    reason = killed.data.tags[orphans.CLOSED]
    assert reason == f"pid {proc.pid} on host {orphans.this_host()} is gone", reason
    assert killed.data.tags["error"] == f"closed as an orphan: {reason}"
    assert f"Run {run.info.run_id} was left RUNNING" in new.stdout + new.stderr  # a warning in the log
    (other,) = [r for r in runs.values() if r.info.run_id != run.info.run_id]
    assert other.info.status == "FINISHED" and orphans.CLOSED not in other.data.tags


def test_a_hard_killed_sweep_is_closed_by_sweep_close_and_its_finished_jobs_are_untouched(tmp_path):
    proc = start(tmp_path, "-m", "trainer.max_epochs=2,1000000", "tracking.flush_seconds=0.3", *QUICK)
    wait_for_training(tmp_path, proc, runs=2)
    kill_hard(proc)
    uri = store_uri(tmp_path)
    runs = all_runs(uri)
    parent = next(r for r in runs if r.data.tags.get("orchestrator.sweep") == "parent")
    jobs = {r.data.tags["orchestrator.sweep.job"]: r for r in runs if r is not parent}
    assert parent.info.status == "RUNNING" and jobs["1"].info.status == "RUNNING"
    assert jobs["0"].info.status == "FINISHED"
    assert parent.data.tags[orphans.PID] == str(proc.pid)  # the launching process

    closed = cli("sweep", "close", parent.info.run_id, cwd=tmp_path)
    assert closed.returncode == 0, closed.stderr[-2000:]
    assert f"closed the parent {parent.info.run_id} as KILLED" in closed.stdout, closed.stdout
    assert f"closed job 1 (run {jobs['1'].info.run_id}) as KILLED" in closed.stdout, closed.stdout
    assert "1 ended job untouched" in closed.stdout, closed.stdout
    after = by_id(uri)
    gone = f"pid {proc.pid} on host {orphans.this_host()} is gone"
    for run_id in (parent.info.run_id, jobs["1"].info.run_id):
        assert after[run_id].info.status == "KILLED"
        assert after[run_id].data.tags[orphans.CLOSED] == gone
    finished = after[jobs["0"].info.run_id]
    assert finished.info.status == "FINISHED" and orphans.CLOSED not in finished.data.tags
    assert finished.info.end_time == jobs["0"].info.end_time and "error" not in finished.data.tags

    again = cli("sweep", "close", parent.info.run_id, cwd=tmp_path)
    assert again.returncode == 0 and "Nothing is RUNNING" in again.stdout


def test_a_live_run_is_never_closed(tmp_path):
    proc = start(tmp_path, *LONG)
    try:
        wait_for_training(tmp_path, proc)
        uri = store_uri(tmp_path)
        (run,) = all_runs(uri)
        swept = cli("sweep", "close", cwd=tmp_path)  # every dead run of the store: none
        assert swept.returncode == 0, swept.stderr[-2000:]
        assert f"left run {run.info.run_id} alone: pid {proc.pid} on host" in swept.stdout, swept.stdout
        assert "0 closed" in swept.stdout
        new = cli(*TINY, *QUICK, cwd=tmp_path)  # the automatic check, as a run opens the store
        assert new.returncode == 0, new.stderr[-2000:]
        assert by_id(uri)[run.info.run_id].info.status == "RUNNING"
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-2000:]
    ended = by_id(uri)[run.info.run_id]
    assert ended.info.status == "KILLED" and orphans.CLOSED not in ended.data.tags  # its own end


def test_sweep_close_refuses_a_run_that_is_not_a_sweep_parent(tmp_path):
    done = cli(*TINY, *QUICK, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = all_runs(store_uri(tmp_path))
    for args, words in [
        ((run.info.run_id,), ["is not a sweep's parent run", "a run of its own", "Nothing was closed"]),
        (("0123456789abcdef",), ["no run with that id", "tracking.uri=", "Nothing was closed"]),
        ((run.info.run_id, "model=cnn"), ["'model=cnn' is not understood"]),
    ]:
        result = cli("sweep", "close", *args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr[-2000:])
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr  # one paragraph
        for word in words:
            assert word in result.stderr, (word, result.stderr)
    assert [r.info.status for r in all_runs(store_uri(tmp_path))] == ["FINISHED"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()  # the store named after the id, as rerun finds it
    found = cli("sweep", "close", run.info.run_id, f"tracking.uri={store_uri(tmp_path)}", cwd=elsewhere)
    assert found.returncode == 2 and "is not a sweep's parent run" in found.stderr


# The rules, on runs written with chosen tags (no process needed).

@pytest.fixture()
def store(tmp_path):
    from orchestrator.tracking import MLflowTracker

    tracker = MLflowTracker(store_uri(tmp_path))
    experiment = tracker.client.create_experiment("orchestrator")

    def make(tags: dict, parent: str | None = None) -> str:
        tags = {k: str(v) for k, v in tags.items()}
        if parent:
            tags["mlflow.parentRunId"] = parent
        return tracker.client.create_run(experiment, tags=tags).info.run_id

    return tracker, make


def status(tracker, run_id: str) -> str:
    return tracker.find_run(run_id).status


def test_rules_heartbeat_elsewhere_pid_here_and_unknown_runs(store):
    tracker, make = store
    now = time.time()
    here, me = orphans.this_host(), os.getpid()
    ns = {orphans.PID_NAMESPACE: orphans.pid_namespace()} if orphans.pid_namespace() else {}
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    runs = {
        "stale elsewhere": make({orphans.HOST: "gpu7", orphans.PID: 1, orphans.HEARTBEAT: int(now - 700),
                                 orphans.TIMEOUT: 600}),
        "fresh elsewhere": make({orphans.HOST: "gpu7", orphans.PID: 1, orphans.HEARTBEAT: int(now - 500),
                                 orphans.TIMEOUT: 600}),
        "long timeout": make({orphans.HOST: "gpu7", orphans.HEARTBEAT: int(now - 700), orphans.TIMEOUT: 1800}),
        # Alive here, its heartbeat an hour old (a long epoch): the process decides.
        "alive here": make({orphans.HOST: here, **ns, orphans.PID: me, orphans.PID_STARTED: orphans.process_started(),
                            orphans.HEARTBEAT: int(now - 3600)}),
        "reused pid": make({orphans.HOST: here, **ns, orphans.PID: me, orphans.PID_STARTED: 1000.0,
                            orphans.HEARTBEAT: int(now)}),
        "exited": make({orphans.HOST: here, **ns, orphans.PID: exited.pid, orphans.HEARTBEAT: int(now)}),
        # This host's name, another container's pids (--net=host): judged by its heartbeat.
        "other container": make({orphans.HOST: here, orphans.PID_NAMESPACE: "another:1",
                                 orphans.PID: exited.pid, orphans.HEARTBEAT: int(now)}),
        "no tags": make({}),
    }
    outcome = orphans.close_on_open(tracker, "orchestrator")
    closed = {v.run_id: v.reason for v in outcome.closed}
    assert set(closed) == {runs["stale elsewhere"], runs["reused pid"], runs["exited"]}, outcome
    assert closed[runs["stale elsewhere"]].startswith("no heartbeat since ")
    assert "timeout 600 s), on host gpu7" in closed[runs["stale elsewhere"]]
    assert closed[runs["reused pid"]].startswith(f"pid {me} on host {here} is gone (pid {me} now belongs to")
    assert closed[runs["exited"]] == f"pid {exited.pid} on host {here} is gone"
    for name in ("fresh elsewhere", "long timeout", "alive here", "no tags", "other container"):
        assert status(tracker, runs[name]) == "RUNNING", name
    left = {v.run_id: v.reason for v in outcome.left}
    assert left[runs["no tags"]].startswith("cannot tell whether it runs")
    assert left[runs["alive here"]] == f"pid {me} on host {here} is running"
    record = tracker.find_run(runs["stale elsewhere"])
    assert record.status == "KILLED" and record.tags[orphans.CLOSED] == closed[runs["stale elsewhere"]]


def test_a_parent_is_closed_once_its_jobs_have_ended_and_its_jobs_beat_for_it(store):
    tracker, make = store
    now = time.time()
    stale = {orphans.HOST: "gpu7", orphans.PID: 1, orphans.HEARTBEAT: int(now - 7200), orphans.TIMEOUT: 600}
    parent = make({"orchestrator.sweep": "parent", **stale})
    live_job = make({**stale, orphans.HEARTBEAT: int(now - 10)}, parent)
    outcome = orphans.close_on_open(tracker, "orchestrator")
    assert outcome.closed == [] and status(tracker, parent) == "RUNNING"
    assert any(v.run_id == parent and "1 of its jobs still RUNNING" in v.reason for v in outcome.left)

    tracker.attach(live_job).end("FINISHED")  # the job ended: the parent's last sign of life is old
    outcome = orphans.close_on_open(tracker, "orchestrator")
    assert [v.run_id for v in outcome.closed] == [parent]
    assert status(tracker, parent) == "KILLED"

    # A parent whose launcher is gone but whose job, elsewhere, beat a minute ago: alive.
    other = make({"orchestrator.sweep": "parent", **stale})
    make({**stale, orphans.HEARTBEAT: int(now - 60)}, other)
    job_ended = make({**stale, orphans.HEARTBEAT: int(now - 60)}, other)
    tracker.attach(job_ended).end("FINISHED")
    lines = orphans.close_sweep(tracker, other)
    assert status(tracker, other) == "RUNNING", lines
    assert any("left the parent" in line and "1 of its jobs still RUNNING" in line for line in lines), lines


def test_a_run_that_beats_or_ends_while_judged_is_left_alone(store):
    tracker, make = store
    old = int(time.time() - 7200)
    run_id = make({orphans.HOST: "gpu7", orphans.HEARTBEAT: old})
    (record,) = tracker.running_runs("orchestrator")
    verdict = orphans.judge(record)
    assert verdict.dead
    tracker.attach(run_id).set_tags({orphans.HEARTBEAT: str(old + 1)})  # a send, meanwhile
    assert not orphans.close(tracker, verdict) and status(tracker, run_id) == "RUNNING"


def test_a_failing_check_never_breaks_the_new_run(store, caplog):

    class Broken:
        uri = "broken://"

        def running_runs(self, experiment, limit):
            raise RuntimeError("store unreachable")

    assert orphans.close_on_open(Broken(), "orchestrator").closed == []
    assert "Could not close the dead runs" in caplog.text and "store unreachable" in caplog.text
    assert orphans.close_on_open(object(), "orchestrator").closed == []  # a tracker that cannot list

    tracker, make = store
    dead = make({orphans.HOST: "gpu7", orphans.HEARTBEAT: int(time.time() - 7200)})

    class ReadOnly:  # lists and reads, refuses to write
        uri = tracker.uri
        running_runs = tracker.running_runs
        find_run = tracker.find_run

        def attach(self, run_id):
            raise PermissionError("read-only store")

    outcome = orphans.close_on_open(ReadOnly(), "orchestrator")
    assert outcome.closed == [] and "could not be closed: PermissionError" in outcome.left[0].reason
    assert f"Run {dead} is dead (no heartbeat since" in caplog.text and status(tracker, dead) == "RUNNING"


def test_timeout_spans_thirty_flushes_and_at_least_ten_minutes():
    assert orphans.heartbeat_timeout(10) == 600 and orphans.heartbeat_timeout(0.3) == 600
    assert orphans.heartbeat_timeout(60) == 1800


def test_the_automatic_check_is_cheap_on_a_store_of_fifty_runs(store):
    tracker, make = store
    client = tracker.client
    now = time.time()
    for n in range(50):
        run_id = make({orphans.HOST: "gpu7", orphans.HEARTBEAT: int(now), "n": n})
        client.log_batch(run_id, metrics=[mlflow.entities.Metric("train/loss", 1.0 / (s + 1), 0, s) for s in range(20)],
                         params=[mlflow.entities.Param(f"p{i}", str(i)) for i in range(40)])
        if n % 10:
            client.set_terminated(run_id, "FINISHED")
    started = time.perf_counter()
    outcome = orphans.close_on_open(tracker, "orchestrator")
    seconds = time.perf_counter() - started
    assert len(outcome.left) == 5 and outcome.closed == []
    assert seconds < 2.0, seconds  # one search: tens of milliseconds on SQLite
