"""Batch transcription (``voicekit transcribe --cluster ...``) on a local Ray cluster, on real speech.

Each Ray test runs the CLI the way a user does; the CLI starts a local Ray (``--cluster local``,
two workers, dashboard off) and shuts it down at the end. The cloud test runs the DashScope
emulator in a subprocess behind a small loopback proxy that answers the first submissions with a
rate limit and records how many tasks are in flight.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from voicekit.testing.data import librivox_clips, speech
from voicekit.testing.wer import wer

pytest.importorskip("ray", reason="batch transcription on Ray needs the voicekit[ray] extra")

VOICEKIT = [sys.executable, "-m", "voicekit.cli.main"]
pytestmark = [pytest.mark.slow, pytest.mark.realspeech]


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VOICEKIT, *args], capture_output=True, text=True, timeout=timeout)


def _recordings(folder: Path, copies: int = 1) -> dict[str, str | None]:
    """Real speech copied under new names: {file name: reference transcript or None}."""
    folder.mkdir(parents=True, exist_ok=True)
    refs: dict[str, str | None] = {}
    for c in range(copies):
        for i, (path, text) in enumerate(librivox_clips()):
            name = f"book_{c}_{i}.wav"
            shutil.copy(path, folder / name)
            refs[name] = text
        for word in ("goforward", "numbers"):
            name = f"cmd_{c}_{word}.wav"
            shutil.copy(speech(word), folder / name)
            refs[name] = None
    return refs


def _book_wer(out: Path, refs: dict[str, str | None]) -> float:
    pairs = [(ref, (out / (Path(name).stem + ".txt")).read_text()) for name, ref in refs.items() if ref]
    return wer([r for r, _ in pairs], [h for _, h in pairs])


def test_import_voicekit_never_imports_ray() -> None:
    code = ("import sys, voicekit, voicekit.batch, voicekit.cli.main, voicekit.cli.commands; "
            "voicekit.cli.main.build_parser(); print('ray' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_batch_flags_and_output_folder_are_checked_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    shutil.copy(speech("goforward"), tmp_path / "in" / "a.wav")
    r = run("transcribe", str(tmp_path / "in" / "a.wav"), "--workers", "2")
    assert r.returncode == 1 and "--workers is for batch jobs: add --cluster" in r.stderr
    r = run("transcribe", str(tmp_path / "in"), "--cluster", "none")
    assert r.returncode == 1 and "give an output folder with -o FOLDER" in r.stderr
    (tmp_path / "file.txt").write_text("x")
    r = run("transcribe", str(tmp_path / "in"), "--cluster", "local", "-o", str(tmp_path / "file.txt"))
    assert r.returncode == 1 and "is a file, but a batch job needs a folder" in r.stderr
    r = run("transcribe", str(tmp_path / "in" / "*.mp3"), "--cluster", "local", "-o", str(tmp_path / "out"))
    assert r.returncode == 1 and "no file matches" in r.stderr
    # an output that is (a link to) an input is refused before anything runs
    os.symlink(tmp_path / "in" / "a.wav", tmp_path / "in" / "a.txt")
    r = run("transcribe", str(tmp_path / "in" / "a.wav"), "--cluster", "none", "-o", str(tmp_path / "in"))
    assert r.returncode == 1 and "is the input" in r.stderr
    assert (tmp_path / "in" / "a.wav").read_bytes() == speech("goforward").read_bytes()


def test_ray_job_outputs_failures_and_resume(tmp_path: Path) -> None:
    inp, out = tmp_path / "calls", tmp_path / "out"
    refs = _recordings(inp)
    (inp / "sub").mkdir()
    (inp / "sub" / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(200))
    r = run("transcribe", str(inp), "--cluster", "local", "--workers", "2", "-o", str(out), "-v")
    assert r.returncode == 1, r.stderr  # one file failed
    assert re.search(r"8 input\(s\): 7 transcribed, 0 skipped \(output complete\), 1 failed", r.stderr), r.stderr
    assert re.search(r"voicekit: error: .*corrupt\.wav", r.stderr)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted(Path(n).stem + ".txt" for n in refs)  # one per input, nothing for the bad file
    assert sorted(r.stdout.split()) == sorted(str(out / w) for w in written)  # each path printed as it finished
    assert _book_wer(out, refs) <= 0.25
    assert "forward" in (out / "cmd_0_goforward.txt").read_text().lower()
    # engines are built once per worker: 7 files were done by at most 2 worker processes
    workers = set(re.findall(r"worker (\S+:\d+)\)", r.stderr))
    assert 1 <= len(workers) <= 2, r.stderr

    # resume: the complete outputs are skipped, the missing ones (and the failed file) are tried again
    (out / "book_0_1.txt").unlink()
    (out / "cmd_0_numbers.txt").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    time.sleep(0.05)
    r = run("transcribe", str(inp), "--cluster", "local", "--workers", "2", "-o", str(out), "-v")
    assert r.returncode == 1
    assert re.search(r"8 input\(s\): 2 transcribed, 5 skipped \(output complete\), 1 failed", r.stderr), r.stderr
    assert len(re.findall(r"batch: done ", r.stderr)) == 2  # the engine ran for the two missing files only
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name in kept} == kept
    assert (out / "book_0_1.txt").exists() and (out / "cmd_0_numbers.txt").exists()
    # a recording newer than its transcript is transcribed again
    os.utime(inp / "book_0_2.wav")
    (inp / "sub" / "corrupt.wav").unlink()
    r = run("transcribe", str(inp), "--cluster", "local", "--workers", "1", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "7 input(s): 1 transcribed, 6 skipped" in r.stderr
    assert r.stdout.split() == [str(out / "book_0_2.txt")]


def test_ray_worker_killed_mid_job_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    refs = _recordings(inp, copies=2)  # 14 files
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "w") as err, open(tmp_path / "stdout.txt", "w") as so:
        p = subprocess.Popen([*VOICEKIT, "transcribe", str(inp / "*.wav"), "--cluster", "local", "--workers", "2",
                              "-o", str(out), "-v"], stdout=so, stderr=err, text=True)
        try:
            deadline = time.monotonic() + 180
            victim = None
            while time.monotonic() < deadline and p.poll() is None:
                text = stderr_path.read_text()
                pids = re.findall(r"worker ready on \S+:(\d+)", text)
                if len(pids) == 2 and "batch: done " in text:
                    victim = int(pids[0])
                    break
                time.sleep(0.05)
            assert victim is not None, stderr_path.read_text()
            os.kill(victim, signal.SIGKILL)  # a Ray worker process of the cluster this test's CLI started
            code = p.wait(timeout=300)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    text = stderr_path.read_text()
    assert code == 0, text
    assert "a worker died while transcribing" in text
    assert "14 input(s): 14 transcribed, 0 skipped (output complete), 0 failed" in text
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(Path(n).stem + ".txt" for n in refs)  # exactly one output per input, no temp files
    printed = (tmp_path / "stdout.txt").read_text().split()
    assert len(printed) == len(set(printed)) == 14  # each output written once
    assert _book_wer(out, refs) <= 0.25


# ------------------------------------------------------------------------- cloud file models

class _ThrottlingProxy:
    """Forwards to the emulator; answers the first ``throttle`` submissions with HTTP 429
    Throttling.RateQuota and records how many file tasks are in flight at once."""

    def __init__(self, upstream: str, throttle: int) -> None:
        import httpx

        self.upstream = upstream
        self.throttle = throttle
        self.throttled = 0
        self.active: set[str] = set()
        self.max_active = 0
        self.lock = threading.Lock()
        self.client = httpx.Client(timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "POST" and self.path.startswith("/api/v1/services/audio/asr/transcription"):
                    with proxy.lock:
                        if proxy.throttled < proxy.throttle:
                            proxy.throttled += 1
                            self._send(429, json.dumps({"code": "Throttling.RateQuota",
                                                        "message": "Requests rate limit exceeded"}).encode())
                            return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                resp = proxy.client.request(self.command, proxy.upstream + self.path, content=body, headers=headers)
                data = resp.content
                try:
                    doc = json.loads(data)
                except ValueError:
                    doc = None
                if isinstance(doc, dict) and isinstance(doc.get("output"), dict):
                    task, status = doc["output"].get("task_id"), doc["output"].get("task_status")
                    with proxy.lock:
                        if status in ("PENDING", "RUNNING"):
                            proxy.active.add(task)
                            proxy.max_active = max(proxy.max_active, len(proxy.active))
                        else:
                            proxy.active.discard(task)
                self._send(resp.status_code, data)

            def _send(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close()


def test_cloud_file_model_bounded_concurrency_and_rate_limits(tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    refs = _recordings(inp)
    emu = subprocess.Popen([*VOICEKIT, "emulate", "dashscope", "--port", "0"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    proxy = None
    try:
        assert emu.stdout is not None
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            m = re.search(r"127\.0\.0\.1:(\d+)", emu.stdout.readline())
            port = int(m.group(1)) if m else None
        assert port is not None, "the emulator did not start"
        proxy = _ThrottlingProxy(f"http://127.0.0.1:{port}", throttle=2)
        r = run("transcribe", str(inp), "--cluster", "auto", "--asr", "fun-asr", "--concurrency", "2",
                "--asr-option", f"base_url=http://127.0.0.1:{proxy.port}", "--asr-option", "api_key=sk-test",
                "--asr-option", "poll_first=0.2", "-o", str(out), timeout=600)
    finally:
        emu.kill()
        emu.wait()
        if proxy is not None:
            proxy.close()
    assert r.returncode == 0, r.stderr
    assert "no Ray workers; up to 2 file(s) in flight" in r.stderr
    assert r.stderr.count("the service asked to slow down (rate limit)") == 2  # waited out, not failed
    assert proxy.throttled == 2
    assert 1 <= proxy.max_active <= 2  # never more tasks in flight than --concurrency
    assert "7 input(s): 7 transcribed, 0 skipped (output complete), 0 failed" in r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(n).stem + ".txt" for n in refs)
    assert _book_wer(out, refs) <= 0.3


def test_driver_killed_hard_mid_job_then_rerun_finishes_and_leaves_no_part_files(tmp_path: Path) -> None:
    """kill -9 of the driver (the CLI) mid-job; the same command again finishes the job. A driver
    killed while it writes an output leaves that output's temporary file (``.NAME.XXXXXXXX.part``,
    the name voicekit.outputs gives it): such files are put in place here as the kill would leave
    them, because the write takes too short a time to hit with a signal from a test."""
    inp, out = tmp_path / "in", tmp_path / "out"
    refs = _recordings(inp, copies=2)  # 14 files
    cmd = [*VOICEKIT, "transcribe", str(inp / "*.wav"), "--cluster", "local", "--workers", "1", "-o", str(out)]
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "w") as err:
        p = subprocess.Popen([*cmd, "-v"], stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            while (time.monotonic() < deadline and p.poll() is None
                   and stderr_path.read_text().count("batch: done ") < 2):
                time.sleep(0.05)
            assert p.poll() is None, stderr_path.read_text()
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
        finally:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # the local Ray the killed CLI had started
            except ProcessLookupError:
                pass
            p.wait()
    finished = {f.name for f in out.iterdir() if not f.name.startswith(".")}
    assert 2 <= len(finished) < 14, stderr_path.read_text()
    unfinished = sorted(Path(n).stem + ".txt" for n in refs if Path(n).stem + ".txt" not in finished)
    victim = next(n for n in unfinished if n.startswith("book_"))
    stale = [out / f".{victim}.0badc0de.part", out / f".{Path(victim).stem}.partial.txt.12345678.part",
             out / f".{sorted(finished)[0]}.deadbeef.part"]
    for path in stale:
        path.write_text("half a transcript")
        os.utime(path, (time.time() - 60, time.time() - 60))
    unrelated = out / ".notes.txt.0badc0de.part"  # not the temporary file of an output of this job
    unrelated.write_text("kept")

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr
    assert f"14 input(s): {14 - len(finished)} transcribed, {len(finished)} skipped (output complete), 0 failed" \
        in r.stderr, r.stderr
    assert "removed 3 temporary file(s) (.part) left by an interrupted run" in r.stderr
    assert sorted(r.stdout.split()) == sorted(str(out / n) for n in unfinished)
    assert sorted(p.name for p in out.iterdir() if p != unrelated) == sorted(Path(n).stem + ".txt" for n in refs)
    assert not any(p.exists() for p in stale) and unrelated.exists()
    assert "half a transcript" not in (out / victim).read_text()
    assert _book_wer(out, refs) <= 0.25
