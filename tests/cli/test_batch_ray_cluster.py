"""``voicekit transcribe --cluster ray://HOST:PORT`` and ``RAY_ADDRESS`` against a Ray cluster that
was started on its own, with ``ray start --head``, the way a user runs one.

The head runs on loopback with its own temporary folder, HOME and ports, and with Ray's token
authentication on (``RAY_AUTH_MODE=token``, which Ray turns on by itself from 2.59 whenever a
token exists): a job without the token is refused with a line that says what to set, a job with
it runs on the cluster's workers. The head is started with ``--block`` in a session of its own and
stopped by SIGTERM (its own orderly shutdown of the processes it started), then anything left in
that session is killed: ``ray stop`` would stop every Ray on the machine, not just this one.
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from voicekit.testing.data import librivox_clips, speech
from voicekit.testing.wer import wer

pytest.importorskip("ray", reason="batch transcription on Ray needs the voicekit[ray] extra")

VOICEKIT = [sys.executable, "-m", "voicekit.cli.main"]
RAY = [sys.executable, "-c", "import sys; from ray.scripts.scripts import main; sys.exit(main())"]
pytestmark = [pytest.mark.slow, pytest.mark.realspeech]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@attrs.frozen
class Head:
    gcs_port: int
    client_port: int
    token: str
    token_path: str
    temp_dir: str
    home: str


def _clean_env(home: str) -> dict[str, str]:
    """This machine's environment without any Ray settings, and a HOME of the test's own (so no
    ~/.ray/auth_token of the user's is read, written or sent anywhere)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = home
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ray start exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"the Ray head did not open port {port} in {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def ray_head() -> Iterator[Head]:
    # A short path: Ray puts unix sockets in its temp folder (at most 107 bytes a path).
    root = tempfile.mkdtemp(prefix="vkray-", dir="/tmp")
    home, temp_dir = os.path.join(root, "home"), os.path.join(root, "ray")
    os.makedirs(home)
    token = secrets.token_hex(32)
    token_path = os.path.join(root, "token")
    with open(token_path, "w") as f:
        f.write(token)
    gcs, client, agent, agent_grpc, runtime_env, metrics, dashboard = _free_ports(7)
    env = _clean_env(home) | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token_path}
    log = Path(root) / "head.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [*RAY, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
             "--num-cpus", "2", "--ray-client-server-port", str(client), "--include-dashboard", "false",
             "--dashboard-port", str(dashboard), "--dashboard-agent-listen-port", str(agent),
             "--dashboard-agent-grpc-port", str(agent_grpc), "--runtime-env-agent-port", str(runtime_env),
             "--metrics-export-port", str(metrics), "--temp-dir", temp_dir, "--disable-usage-stats"],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        _wait_port(gcs, proc, log, 180)
        _wait_port(client, proc, log, 180)
        yield Head(gcs, client, token, token_path, temp_dir, home)
    finally:
        proc.send_signal(signal.SIGTERM)  # ray start --block stops what it started
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever of this cluster's session is left
        except ProcessLookupError:
            pass
        proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def _recordings(folder: Path) -> dict[str, str | None]:
    folder.mkdir(parents=True, exist_ok=True)
    refs: dict[str, str | None] = {}
    for i, (path, text) in enumerate(librivox_clips()):
        shutil.copy(path, folder / f"book_{i}.wav")
        refs[f"book_{i}.wav"] = text
    for word in ("goforward", "numbers"):
        shutil.copy(speech(word), folder / f"cmd_{word}.wav")
        refs[f"cmd_{word}.wav"] = None
    return refs


def _check_outputs(out: Path, refs: dict[str, str | None], stdout: str) -> None:
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(n).stem + ".txt" for n in refs)
    assert sorted(stdout.split()) == sorted(str(out / (Path(n).stem + ".txt")) for n in refs)
    pairs = [(ref, (out / (Path(n).stem + ".txt")).read_text()) for n, ref in refs.items() if ref]
    assert wer([r for r, _ in pairs], [h for _, h in pairs]) <= 0.25
    assert "forward" in (out / "cmd_goforward.txt").read_text().lower()


def _ran_on(head: Head, stderr: str) -> set[str]:
    """The worker processes named by ``-v``, each checked to be a worker of this head (its log
    file is in the head's session folder), not of a Ray the CLI might have started itself."""
    pids = set(re.findall(r"worker ready on \S+:(\d+)", stderr))
    assert pids, stderr
    for pid in pids:
        assert glob.glob(os.path.join(head.temp_dir, "session_*", "logs", f"worker-*-{pid}.*")), (pid, stderr)
    return pids


def _run(args: list[str], env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VOICEKIT, *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_job_without_the_token_is_refused_with_the_fix(ray_head: Head, tmp_path: Path) -> None:
    shutil.copy(speech("goforward"), tmp_path / "a.wav")
    env = _clean_env(ray_head.home)
    # Ray retries a refused GCS connection for 20 s by default; the answer is the same after 2
    env["RAY_gcs_server_port_wait_time_s"] = "2"
    r = _run(["transcribe", str(tmp_path / "a.wav"), "--cluster", f"127.0.0.1:{ray_head.gcs_port}",
              "-o", str(tmp_path / "out")], env, timeout=180)
    assert r.returncode == 1, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"voicekit: error: the Ray cluster at '127.0.0.1:{ray_head.gcs_port}' needs token "
                           "authentication — set RAY_AUTH_MODE=token"), r.stderr
    assert "RAY_AUTH_TOKEN_PATH" in last and "Traceback" not in r.stderr
    # a wrong token is named as such
    env |= {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    r = _run(["transcribe", str(tmp_path / "a.wav"), "--cluster", f"127.0.0.1:{ray_head.gcs_port}",
              "-o", str(tmp_path / "out")], env, timeout=180)
    assert r.returncode == 1
    assert "refused this job's token" in r.stderr.strip().splitlines()[-1], r.stderr
    assert env["RAY_AUTH_TOKEN"] not in r.stderr and ray_head.token not in r.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_ray_client_address_runs_on_the_cluster(ray_head: Head, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    refs = _recordings(inp)
    env = _clean_env(ray_head.home) | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": ray_head.token}
    r = _run(["transcribe", str(inp), "--cluster", f"ray://127.0.0.1:{ray_head.client_port}", "-o", str(out),
              "-v"], env)
    assert r.returncode == 0, r.stderr
    assert f"{len(refs)} input(s): {len(refs)} transcribed, 0 skipped (output complete), 0 failed" in r.stderr
    _check_outputs(out, refs, r.stdout)
    assert 1 <= len(_ran_on(ray_head, r.stderr)) <= 2  # the cluster has 2 CPUs: at most 2 workers
    assert ray_head.token not in r.stderr + r.stdout


def test_ray_address_environment_variable_with_token_file(ray_head: Head, tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    refs = _recordings(inp)
    env = _clean_env(ray_head.home) | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": ray_head.token_path,
                                       "RAY_ADDRESS": f"127.0.0.1:{ray_head.gcs_port}"}
    r = _run(["transcribe", str(inp / "*.wav"), "--cluster", "auto", "--workers", "1", "-o", str(out), "-v"], env)
    assert r.returncode == 0, r.stderr
    _check_outputs(out, refs, r.stdout)
    assert len(_ran_on(ray_head, r.stderr)) == 1
    # the same job again: everything is complete, nothing is sent to the cluster
    r = _run(["transcribe", str(inp / "*.wav"), "--cluster", "auto", "-o", str(out)], env)
    assert r.returncode == 0 and f"{len(refs)} skipped" in r.stderr and r.stdout == ""
