"""Deployments and `lacgan serve`: a local Prefect server (SQLite, 127.0.0.1) when none is configured, and a
process serving the deployments, so that from another shell

    prefect deployment run augment/demo
    prefect deployment run augment/bp4d --param bp4d_root=/data/BP4D
    prefect deployment run augment/demo --param openface_bin=/opt/OpenFace/build/bin \
        --param openface_grouping=frame --param openface_model=model/main_clnf_general.txt

runs the job (OpenFace parameters: openface_bin, openface_model, openface_grouping "sequence" | "static" |
"frame", openface_timeout; the job's `test_fold`, and `config`, a dict of job changes such as
'{"lacgan": {"train": {"steps": 3000}}}' composed by pipelines.job before any step runs; Prefect checks their
types). Served: augment/demo (embedded cohort, demo presets),
augment/bp4d (paper presets; bp4d_root given at run time), augment/demo-ganimation (the demo with
baseline=ganimation: GANimation through the same steps and the side-by-side page; `--param baseline=ganimation`
does the same on augment/bp4d), and one deployment per step (plan/default, generate/default,
counterfactual/default, score/default, report/default, compare/default, train_lacgan/default,
train_detectors/default) whose parameters are given at run time.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

SERVER_READY_TIMEOUT = 180.0  # seconds; the server needs 6-21 s on 2 idle cores, much more when loaded


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_healthy(api_url: str, timeout: float = SERVER_READY_TIMEOUT, proc: subprocess.Popen | None = None) -> None:
    """Poll API_URL/health until it answers 200; a clear error when the server process exits or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"no healthy Prefect API at {api_url} after {timeout:.0f} s")


def start_server(host: str = "127.0.0.1", port: int | None = None, log_path=None) -> tuple[str, subprocess.Popen]:
    """`prefect server start` (SQLite under PREFECT_HOME) as a child process; returns (api_url, process)."""
    port = port or free_port(host)
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    api_url = f"http://{host}:{port}/api"
    try:
        wait_healthy(api_url, proc=proc)
    except BaseException:
        stop_server(proc)
        raise
    return api_url, proc


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def deployments(out_root: str = "runs"):
    from flows.augment import (augment, compare, counterfactual, generate, plan, report, score, train_detectors,
                               train_lacgan)

    root = Path(out_root).resolve()
    deps = [augment.to_deployment(name="demo", parameters={"out": str(root / "demo" / "augment"), "preset": "demo"},
                                  description="augment on the embedded cohort with the demo presets"),
            augment.to_deployment(name="bp4d", parameters={"out": str(root / "bp4d"), "preset": "bp4d"},
                                  description="augment on BP4D with the paper presets; give --param bp4d_root=..."),
            augment.to_deployment(name="demo-ganimation", parameters={
                "out": str(root / "demo-ganimation" / "augment"), "preset": "demo", "baseline": "ganimation"},
                description="the demo, and GANimation through the same steps, side by side with LAC-GAN")]
    for step in (plan, generate, counterfactual, score, report, compare, train_lacgan, train_detectors):
        deps.append(step.to_deployment(name="default", description=f"the {step.name} step alone"))
    return deps


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) != 0


def serve(out_root: str = "runs", host: str = "127.0.0.1", port: int | None = None) -> int:
    """Serve the deployments until interrupted; start a local server first unless PREFECT_API_URL is set."""
    from prefect.settings import PREFECT_API_URL

    proc = None
    api_url = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()
    if not api_url:
        log = Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect")) / "server.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        if port is None:
            port = 4200 if port_free(host, 4200) else free_port(host)  # Prefect's usual port when it is free
        api_url, proc = start_server(host, port, log)
        print(f"started a local Prefect server at {api_url} (log: {log}); in another shell:\n"
              f"  export PREFECT_API_URL={api_url}\n  prefect deployment run augment/demo", flush=True)
    else:
        wait_healthy(api_url, timeout=30)
    os.environ["PREFECT_API_URL"] = api_url  # the runner's flow-run subprocesses inherit it
    try:
        from prefect import serve as prefect_serve
        from prefect.settings import temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            prefect_serve(*deployments(out_root))
    finally:
        if proc is not None:
            stop_server(proc)
    return 0
