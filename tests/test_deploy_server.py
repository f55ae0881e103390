"""A real local Prefect server on a free port, `lacgan serve` serving the deployments against it, and a run
started from another process with `prefect deployment run ... --watch` (argument lists, no shell)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline_fixtures import make_store

REPO = Path(__file__).resolve().parents[1]


def _env(home: Path, api_url: str | None = None) -> dict:
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1",
               PREFECT_RUNNER_POLL_FREQUENCY="1", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.server
@pytest.mark.slow
def test_served_deployment_runs_from_another_process(tmp_path):
    from flows.deployments import free_port, wait_healthy

    home = tmp_path / "prefect"
    home.mkdir()
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port",
                               str(port)], env=_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    serve = None
    try:
        wait_healthy(api_url, timeout=150, proc=server)
        log = open(tmp_path / "serve.log", "wb")
        serve = subprocess.Popen([sys.executable, "-m", "flows.cli", "serve", "--runs", str(tmp_path / "runs")],
                                 env=_env(home, api_url), cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        store = make_store(tmp_path, size=32)
        plan = tmp_path / "plan.parquet"
        run = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the deployments appear once `lacgan serve` has registered them
            run = subprocess.run([sys.executable, "-m", "prefect", "deployment", "run", "plan/default",
                                  "--param", f"store={store}", "--param", f"out={plan}", "--param", "policy=balanced",
                                  "--param", "count=3", "--watch", "--watch-timeout", "90"],
                                 env=_env(home, api_url), capture_output=True, text=True, timeout=150)
            if "not found" not in (run.stdout + run.stderr).lower():
                break
            assert serve.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(2)
        assert run is not None and run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert "Completed" in run.stdout
        from pipelines.plan import read_plan

        assert len(read_plan(plan)) == 6 * 3
        listed = subprocess.run([sys.executable, "-m", "prefect", "deployment", "ls"], env=_env(home, api_url),
                                capture_output=True, text=True, timeout=60)
        assert "augment/demo" in listed.stdout and "augment/bp4d" in listed.stdout
        assert "augment/demo-ganimation" in listed.stdout
    finally:
        if serve is not None:
            _stop(serve)
        _stop(server)
