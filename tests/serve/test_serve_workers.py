"""``voicekit serve --workers 2``, for real: the command as a user runs it, on a free loopback port,
with browser-protocol clients (trio-websocket, the JSON messages of voicekit.serve.protocol).

Which worker holds a conversation is read from the supervisor's stderr, where every worker line
carries ``[worker K pid P]`` and the worker's ``conversation`` line its session id.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from servekit import get, speak_when_told  # type: ignore[import-not-found]  # next to this file
from trio_websocket import ConnectionClosed, open_websocket_url

from voicekit.cli.main import main
from voicekit.serve.workers import parse_workers
from voicekit.testing.data import speech


@pytest.fixture(scope="module")
def utterance() -> bytes:
    """"go forward ten meters" and 1 s of silence (the endpointer needs 0.6 s)."""
    with wave.open(str(speech("goforward"))) as w:
        return w.readframes(w.getnframes()) + b"\0" * 32000


@attrs.define
class Serve:
    proc: trio.Process
    log: Path
    port: int = 0

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> dict[int, int]:
        """worker number -> its pid now (the latest start)."""
        return {int(k): int(p) for k, p in re.findall(r"^voicekit: worker (\d+) started \(pid (\d+)\)", self.text(),
                                                      re.M)}

    def worker_of(self, session_id: str) -> int:
        """The pid of the worker that runs ``session_id`` (its log line names it)."""
        found = re.findall(rf"^\[worker \d+ pid (\d+)\] .*\bconversation\b(?! ended).*session_id={session_id}",
                           self.text(), re.M)
        assert len(found) == 1, (session_id, found)
        return int(found[0])

    async def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        with trio.fail_after(timeout):
            while (match := re.search(pattern, self.text(), re.M)) is None:
                assert self.proc.returncode is None, f"voicekit serve exited:\n{self.text()}"
                await trio.sleep(0.05)
        return match


@asynccontextmanager
async def serving(tmp: Path, *options: str) -> AsyncIterator[Serve]:
    log = tmp / "serve.log"
    with open(log, "wb") as out:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "voicekit.cli.main", "serve", "robot", "--asr", "pocketsphinx", "--tts", "none",
             "--port", "0", "--workers", "2", "-v",
             # routing and restarts are tested here, on a shared 2-core machine where pocketsphinx can
             # fall behind: shedding and lag refusals are tested in test_serve_admission.py
             "--max-backlog", "60", "--max-loop-lag", "2", *options],
            stdout=subprocess.DEVNULL, stderr=out)
    serve = Serve(proc, log)
    try:
        match = await serve.wait_for(r"^voicekit: 2 workers serving at http://127\.0\.0\.1:(\d+)/")
        serve.port = int(match.group(1))
        yield serve
    finally:
        if proc.returncode is None:
            proc.kill()  # the workers see their stdin close and stop on their own
        with trio.move_on_after(30) as scope:
            scope.shield = True
            await proc.wait()
        for pid in serve.pids().values():  # never leave a worker behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@attrs.define
class Talk:
    """One browser-protocol conversation."""

    session_id: str = ""
    refused: str = ""
    messages: list[dict[str, Any]] = attrs.Factory(list)
    close_code: int | None = None
    go: trio.Event = attrs.Factory(trio.Event)  # set: say the utterance, then end
    closed: trio.Event = attrs.Factory(trio.Event)

    def kinds(self) -> list[str]:
        return [m["event"]["event"] for m in self.messages if m.get("type") == "event"]


async def talk(url: str, utterance: bytes, conv: Talk, *, task_status: trio.TaskStatus[None]) -> None:
    """Hello; on ``ready`` report started and stream silence in real time until ``conv.go``, then
    the utterance and ``end``; read until the server closes. A ``busy`` refusal is noted in
    ``conv.refused`` (and reported started, so the caller can retry)."""
    try:
        async with open_websocket_url(url) as ws:
            await ws.send_message(json.dumps({"type": "hello", "sample_rate": 16000, "client": "workers test"}))
            ready = json.loads(await ws.get_message())
            if ready["type"] == "error":
                conv.refused = ready["code"]
                task_status.started()
                await ws.get_message()  # until the close
                return
            assert ready["type"] == "ready", ready
            conv.session_id = ready["session_id"]
            task_status.started()
            await speak_when_told(ws, utterance, conv.go, conv.messages)
    except* ConnectionClosed as group:
        leaf: Any = group
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        conv.close_code = leaf.reason.code
    except* OSError:  # the worker went away mid-handshake (the SIGKILL test)
        conv.close_code = -1
    finally:
        conv.closed.set()


async def converse(nursery: trio.Nursery, url: str, utterance: bytes) -> Talk:
    conv = Talk()
    await nursery.start(talk, url, utterance, conv)
    return conv


async def readyz(port: int) -> tuple[int, dict[str, Any]]:
    status, _, body = await get(port, "/readyz")
    return status, json.loads(body)


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, (name, text[:2000])
    return float(match.group(1))


pytestmark = [pytest.mark.slow, pytest.mark.realspeech]


async def test_two_workers_share_a_port_restart_one_that_dies_and_drain_on_sigterm(
        tmp_path: Path, utterance: bytes) -> None:
    async with serving(tmp_path, "--max-sessions", "20") as serve, trio.open_nursery() as nursery:
        url = f"ws://127.0.0.1:{serve.port}/ws"
        first = serve.pids()
        assert sorted(first) == [1, 2] and len(set(first.values())) == 2, serve.text()
        # the kernel spreads conversations over both workers
        talks: list[Talk] = []
        while len({serve.worker_of(c.session_id) for c in talks}) < 2:
            assert len(talks) < 30, f"every conversation landed on one worker:\n{serve.text()}"
            talks.append(await converse(nursery, url, utterance))
            await serve.wait_for(rf"session_id={talks[-1].session_id}", timeout=10)
        owners = {c.session_id: serve.worker_of(c.session_id) for c in talks}
        # one scrape of /metrics sees every worker's conversations
        status, _, body = await get(serve.port, "/metrics")
        assert status == 200
        assert metric(body.decode(), "voicekit_serve_sessions_active") == len(talks)
        assert metric(body.decode(), "voicekit_serve_max_sessions") == 40  # 20 per worker

        # SIGKILL one worker: only its conversations end, the supervisor starts it again
        victim_number, victim = next((k, p) for k, p in first.items() if p in owners.values())
        victims = [c for c in talks if owners[c.session_id] == victim]
        survivors = [c for c in talks if owners[c.session_id] != victim]
        assert victims and survivors
        os.kill(victim, signal.SIGKILL)
        with trio.fail_after(10):
            for conv in victims:
                await conv.closed.wait()
        assert all(c.close_code != 1000 for c in victims)
        await serve.wait_for(rf"^voicekit: worker {victim_number} \(pid {victim}\) exited with status -9; restarting")
        match = await serve.wait_for(rf"^voicekit: worker {victim_number} started \(pid (?!{victim}\))(\d+)\)")
        reborn = int(match.group(1))
        await serve.wait_for(rf"^\[worker {victim_number} pid {reborn}\] voicekit: serving", timeout=60)
        assert not any(c.closed.is_set() for c in survivors)
        # new conversations reach the restarted worker
        fresh: list[Talk] = []
        while reborn not in {serve.worker_of(c.session_id) for c in fresh}:
            assert len(fresh) < 30, f"no conversation reached the restarted worker:\n{serve.text()}"
            fresh.append(await converse(nursery, url, utterance))
            await serve.wait_for(rf"session_id={fresh[-1].session_id}", timeout=10)
        # the killed worker's conversations still count in the sums of /metrics
        status, _, body = await get(serve.port, "/metrics")
        assert metric(body.decode(), "voicekit_serve_sessions_started_total") == len(talks) + len(fresh)
        assert metric(body.decode(), "voicekit_serve_sessions_active") == len(survivors) + len(fresh)

        # SIGTERM: every worker drains: running conversations finish, new ones are refused
        serve.proc.send_signal(signal.SIGTERM)
        await serve.wait_for(r"^voicekit: SIGTERM: draining every worker")
        for k in (1, 2):
            await serve.wait_for(rf"^\[worker {k} pid \d+\] voicekit: SIGTERM: draining", timeout=10)
        late = await converse(nursery, url, utterance)
        assert late.refused == "busy", late
        running = [*survivors, *fresh]
        with trio.fail_after(120):
            for i in range(0, len(running), 2):  # two speakers at a time: pocketsphinx on a busy machine
                for conv in running[i:i + 2]:
                    conv.go.set()
                for conv in running[i:i + 2]:
                    await conv.closed.wait()
        for conv in running:
            assert conv.close_code == 1000, (conv.close_code, conv.kinds())
            assert "reply_started" in conv.kinds() and conv.kinds()[-1] == "session_ended", conv.kinds()
        with trio.fail_after(30):
            code = await serve.proc.wait()
        assert code == 0, serve.text()
        assert "voicekit: all workers stopped" in serve.text()


async def test_readyz_answers_for_all_workers(tmp_path: Path, utterance: bytes) -> None:
    """A probe reaches a kernel-chosen worker; it says ready while any worker has room, so a load
    balancer does not take the machine out because one worker is full; 503 once none has."""
    async with serving(tmp_path, "--max-sessions", "1") as serve, trio.open_nursery() as nursery:
        url = f"ws://127.0.0.1:{serve.port}/ws"
        one = await converse(nursery, url, utterance)
        assert one.session_id
        for _ in range(12):  # both workers answer some of these
            status, body = await readyz(serve.port)
            assert status == 200 and body["ready"], body
        # the second conversation: a refusal from the full worker is retried, as the browser client does
        two = Talk()
        for _ in range(30):
            two = await converse(nursery, url, utterance)
            if two.session_id:
                break
            assert two.refused == "busy"
            await trio.sleep(0.1)
        assert two.session_id
        for conv in (one, two):  # the worker's log line comes through the supervisor a moment after `ready`
            await serve.wait_for(rf"session_id={conv.session_id}", timeout=10)
        assert serve.worker_of(two.session_id) != serve.worker_of(one.session_id)
        await trio.sleep(0.2)  # the siblings see each other full
        for _ in range(6):
            status, body = await readyz(serve.port)
            assert status == 503 and body["reason"] == "max_sessions", body
        status, _, metrics = await get(serve.port, "/metrics")
        assert metric(metrics.decode(), "voicekit_serve_ready") == 0
        nursery.cancel_scope.cancel()


async def test_a_worker_that_cannot_start_stops_the_command_with_its_error(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "voicekit.cli.main", "serve", "robot", "--asr", "no-such-asr", "--tts", "none",
             "--port", "0", "--workers", "2"], stdout=subprocess.DEVNULL, stderr=out)
        with trio.fail_after(60):
            code = await proc.wait()
    text = log.read_text()
    assert code == 1, text
    assert re.search(r"^\[worker \d pid \d+\] voicekit: error: .*no-such-asr", text, re.M), text
    assert "failed before it listened" in text


async def test_the_token_reaches_every_worker_and_no_log(tmp_path: Path) -> None:
    """``--token`` given to the supervisor: every worker asks for it (it goes by the environment,
    not in the workers' options), and no log line shows it."""
    token = "workers-token-0123456789abcdef"
    async with serving(tmp_path, "--token", token) as serve:
        url = f"ws://127.0.0.1:{serve.port}/ws"
        workers: set[int] = set()
        with trio.fail_after(120):
            while len(workers) < 2:  # the kernel spreads the connections: go on until both have served
                async with open_websocket_url(url) as ws:
                    await ws.send_message(json.dumps({"type": "hello", "sample_rate": 16000}))
                    refused = json.loads(await ws.get_message())
                    assert refused["type"] == "error" and refused["code"] == "unauthorized", refused
                async with open_websocket_url(url) as ws:
                    await ws.send_message(json.dumps({"type": "hello", "sample_rate": 16000, "token": token}))
                    ready = json.loads(await ws.get_message())
                    assert ready["type"] == "ready", ready
                    await ws.send_message(json.dumps({"type": "end"}))
                await serve.wait_for(rf"session_id={ready['session_id']}", timeout=10)
                workers.add(serve.worker_of(ready["session_id"]))
        assert token not in serve.text()


def test_workers_must_be_a_positive_number_or_auto(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "robot", "--workers", "0"]) == 1
    assert "--workers must be a positive number or 'auto'" in capsys.readouterr().err
    assert parse_workers("auto") == len(os.sched_getaffinity(0))  # the CPUs it may run on


async def test_a_port_in_use_is_refused_not_shared(tmp_path: Path) -> None:
    """Another --workers server on the same port must not silently join the first one's port."""
    async with serving(tmp_path) as serve:
        second = subprocess.run(
            [sys.executable, "-m", "voicekit.cli.main", "serve", "robot", "--asr", "pocketsphinx", "--tts", "none",
             "--port", str(serve.port), "--workers", "2"], capture_output=True, text=True, timeout=60)
        assert second.returncode == 1, second.stderr
        assert f"cannot listen on 127.0.0.1:{serve.port}" in second.stderr
