"""A fleet of ``voicekit serve`` workers behind a real HAProxy (the Debian package), all on loopback.

The test starts the workers as subprocesses (``voicekit serve robot`` with pocketsphinx, text-only
replies), runs HAProxy with deploy/haproxy.cfg (only the addresses changed), and talks to the fleet
through HAProxy with the browser protocol (voicekit.serve.protocol) over trio-websocket. Which
worker served a conversation is read from the workers' own logs, where every line carries the
session id.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
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
from browserkit import (  # type: ignore[import-not-found]  # next to this file
    CHROMIUM,
    CHROMIUM_MISSING,
    chromium,
    devtools_page,
    silent_microphone,
)
from servekit import conversation_starts, get, speak_when_told, upgrade  # type: ignore[import-not-found]  # next to this file
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from voicekit.testing.data import speech

pytestmark = [pytest.mark.slow, pytest.mark.realspeech]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"


def haproxy() -> str:
    found = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if os.path.exists(p)), None)
    if found is None:
        pytest.fail("haproxy is not installed: apt-get install -y haproxy ('make test' installs it)", pytrace=False)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def utterance() -> bytes:
    """"go forward ten meters" with 1 s of silence after it (the endpointer needs 0.6 s)."""
    with wave.open(str(speech("goforward"))) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return w.readframes(w.getnframes()) + b"\0" * 32000


@attrs.define
class Worker:
    name: str
    proc: trio.Process
    port: int
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def sessions(self) -> set[str]:
        """The session ids of the conversations this worker started (from its log)."""
        return set(re.findall(r"\bconversation\b(?! ended).*?session_id=(\w+)", self.text()))

    async def ready(self) -> dict[str, Any]:
        return json.loads((await get(self.port, "/readyz"))[2])


async def start_worker(tmp: Path, name: str, *options: str) -> Worker:
    log = tmp / f"{name}.log"
    with open(log, "wb") as out:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "voicekit.cli.main", "serve", "robot", "--asr", "pocketsphinx", "--tts", "none",
             "--port", "0", "--refuse-at-upgrade", "--trusted-proxy", "127.0.0.1",
             # routing is tested here, on a shared 2-core machine where pocketsphinx can fall seconds
             # behind and the event loop lag; shedding and lag refusals are tested in
             # test_serve_admission.py
             "--max-backlog", "60", "--max-loop-lag", "2", "-v", *options],
            stdout=subprocess.DEVNULL, stderr=out)
    with trio.fail_after(60):
        while (match := re.search(r"at http://127\.0\.0\.1:(\d+)/", log.read_text(errors="replace"))) is None:
            if proc.returncode is not None:
                raise AssertionError(f"worker {name} exited early:\n{log.read_text(errors='replace')}")
            await trio.sleep(0.05)
    return Worker(name, proc, int(match.group(1)), log)


def haproxy_config(lb_port: int, stats_port: int, workers: list[Worker]) -> str:
    """deploy/haproxy.cfg with loopback addresses: every other line as in the example."""
    text = DEPLOY.read_text()
    assert "bind *:8080" in text and "bind 127.0.0.1:8404" in text
    text = text.replace("bind *:8080", f"bind 127.0.0.1:{lb_port}").replace(
        "bind 127.0.0.1:8404", f"bind 127.0.0.1:{stats_port}")
    examples = re.findall(r"^ *server worker\d+ \S+.*$", text, re.M)
    assert len(examples) == 3, examples
    ours = "\n".join(f"    server {w.name} 127.0.0.1:{w.port}" for w in workers)
    text = text.replace(examples[0], ours)
    for line in examples[1:]:
        text = text.replace(line + "\n", "")
    return text


@attrs.define
class Fleet:
    workers: list[Worker]
    lb_port: int
    stats_port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.lb_port}/ws"

    def worker_of(self, session_id: str) -> Worker:
        owners = [w for w in self.workers if session_id in w.sessions()]
        assert len(owners) == 1, (session_id, [w.name for w in owners])
        return owners[0]

    async def status(self) -> dict[str, str]:
        """HAProxy's view of each worker: UP, DOWN, ..."""
        csv = (await get(self.stats_port, "/stats;csv"))[2].decode()
        rows = [line.split(",") for line in csv.splitlines() if line.startswith("voicekit,")]
        return {row[1]: row[17] for row in rows if row[1] not in ("FRONTEND", "BACKEND")}

    async def wait_status(self, name: str, prefix: str, timeout: float = 10) -> None:
        with trio.fail_after(timeout):
            while not (await self.status()).get(name, "").startswith(prefix):
                await trio.sleep(0.1)


@asynccontextmanager
async def fleet(tmp: Path, count: int, *options: str) -> AsyncIterator[Fleet]:
    binary = haproxy()
    workers: list[Worker] = []
    lb: trio.Process | None = None
    try:
        async with trio.open_nursery() as nursery:
            async def one(i: int) -> None:
                workers.append(await start_worker(tmp, f"worker{i + 1}", *options))
            for i in range(count):
                nursery.start_soon(one, i)
        workers.sort(key=lambda w: w.name)
        lb_port, stats_port = free_port(), free_port()
        cfg = tmp / "haproxy.cfg"
        cfg.write_text(haproxy_config(lb_port, stats_port, workers))
        check = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"haproxy rejects deploy/haproxy.cfg:\n{check.stdout}{check.stderr}"
        with open(tmp / "haproxy.log", "wb") as out:
            lb = await trio.lowlevel.open_process([binary, "-db", "-f", str(cfg)], stdout=out, stderr=out)
        result = Fleet(workers, lb_port, stats_port)
        with trio.fail_after(20):
            while True:
                try:
                    if all(s.startswith("UP") for s in (await result.status()).values()):
                        break
                except OSError:
                    pass
                await trio.sleep(0.1)
        yield result
    finally:
        for proc in [*(w.proc for w in workers), *([lb] if lb else [])]:
            if proc.returncode is None:
                proc.kill()
        with trio.move_on_after(10) as scope:
            scope.shield = True
            for proc in [*(w.proc for w in workers), *([lb] if lb else [])]:
                await proc.wait()


@attrs.define
class Talk:
    """One browser-protocol conversation through the fleet."""

    session_id: str = ""
    messages: list[dict[str, Any]] = attrs.Factory(list)
    close_code: int | None = None
    close_reason: str | None = None
    go: trio.Event = attrs.Factory(trio.Event)  # set: say the utterance, then end
    closed: trio.Event = attrs.Factory(trio.Event)
    retries: int = 0

    @property
    def finals(self) -> list[str]:
        return [m["event"]["text"] for m in self.messages if m.get("type") == "event"
                and m["event"]["event"] == "transcript" and m["event"]["is_final"] and m["event"]["text"].strip()]

    @property
    def errors(self) -> list[str]:
        return [m["code"] for m in self.messages if m.get("type") == "error"]

    def event_kinds(self) -> list[str]:
        return [m["event"]["event"] for m in self.messages if m.get("type") == "event"]


class Refused(Exception):
    pass


async def talk(url: str, utterance: bytes, conv: Talk, *, task_status: trio.TaskStatus[None]) -> None:
    """Connect, say hello, report ready; stream silence in real time until ``conv.go`` is set,
    then the utterance, then ``end``; read everything until the server (or the proxy) closes.
    A retryable refusal (HTTP 503 from the proxy when no worker is ready, or ``busy`` and 1013
    from a worker) is retried after 0.5, 1, 2, 4 s, as the browser client does."""
    for attempt in range(5):
        try:
            await _talk(url, utterance, conv, task_status)
            return
        except BaseException as exc:
            if not _retryable(exc):
                raise
        conv.retries += 1
        await trio.sleep(0.5 * 2 ** attempt)
    raise AssertionError(f"no worker took the conversation after {conv.retries} retries")


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_retryable(e) for e in exc.exceptions)
    return isinstance(exc, Refused) or (isinstance(exc, ConnectionRejected) and exc.status_code == 503)


async def _talk(url: str, utterance: bytes, conv: Talk, task_status: trio.TaskStatus[None]) -> None:
    try:
        async with open_websocket_url(url) as ws:
            await ws.send_message(json.dumps({"type": "hello", "sample_rate": 16000, "client": "fleet test"}))
            ready = json.loads(await ws.get_message())
            if ready["type"] == "error" and ready["code"] == "busy":
                raise Refused(ready["message"])
            assert ready["type"] == "ready", ready
            conv.session_id = ready["session_id"]
            task_status.started()
            await speak_when_told(ws, utterance, conv.go, conv.messages)
    except ConnectionClosed as closed:
        conv.close_code, conv.close_reason = closed.reason.code, closed.reason.reason
    except BaseExceptionGroup as group:
        match, rest = group.split(ConnectionClosed)
        if rest is not None:
            raise
        assert match is not None
        leaf: Any = match
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        conv.close_code, conv.close_reason = leaf.reason.code, leaf.reason.reason
    finally:
        conv.closed.set()


async def open_talks(nursery: trio.Nursery, url: str, utterance: bytes, n: int) -> list[Talk]:
    talks = [Talk() for _ in range(n)]
    async with trio.open_nursery() as starting:  # connect concurrently, each waits for its ready
        for conv in talks:
            starting.start_soon(nursery.start, talk, url, utterance, conv)
    return talks


async def finish(talks: list[Talk], timeout: float = 60) -> None:
    """Let the conversations say their utterance and end, two at a time: pocketsphinx decodes in
    one thread per worker, and more speakers at the same moment than a busy 2-core machine can
    decode in real time would (rightly) be shed for falling behind."""
    with trio.fail_after(timeout):
        for i in range(0, len(talks), 2):
            for conv in talks[i:i + 2]:
                conv.go.set()
            for conv in talks[i:i + 2]:
                await conv.closed.wait()


def assert_finished_normally(conv: Talk) -> None:
    assert conv.close_code == 1000, (conv.close_code, conv.close_reason, conv.errors)
    assert conv.finals, conv.event_kinds()  # the worker heard the utterance ...
    assert "reply_started" in conv.event_kinds()  # ... and the robot answered it
    assert conv.event_kinds()[-1] == "session_ended"


async def test_sessions_spread_and_a_full_worker_gets_no_new_ones(tmp_path: Path, utterance: bytes) -> None:
    with trio.fail_after(150):
        async with fleet(tmp_path, 3, "--max-sessions", "2") as f, trio.open_nursery() as nursery:
            # spread: three conversations at once land on three workers (leastconn)
            talks = await open_talks(nursery, f.url, utterance, 3)
            assert {f.worker_of(c.session_id).name for c in talks} == {"worker1", "worker2", "worker3"}
            await finish(talks)
            for conv in talks:
                assert_finished_normally(conv)

            # full: worker1's two places are taken by clients that reach it directly
            w1 = f.workers[0]
            direct = await open_talks(nursery, f"ws://127.0.0.1:{w1.port}/ws", utterance, 2)
            ready = await w1.ready()
            assert ready["ready"] is False and ready["reason"] == "max_sessions", ready
            # at once, before HAProxy's next health check: a conversation routed to worker1 is
            # refused with 503 at the upgrade and HAProxy retries another worker. (On a loaded
            # machine the check may have taken worker1 out already: then none is routed to it.)
            routed_to_full = (await f.status())["worker1"].startswith("UP")
            through = await open_talks(nursery, f.url, utterance, 4)
            assert all(f.worker_of(c.session_id) is not w1 for c in through)
            await f.wait_status("worker1", "DOWN", 10)  # the health check saw the 503 of /readyz
            # worker2 and worker3 are full now too; worker1 frees up and comes back into rotation
            await finish(direct)
            for conv in direct:
                assert_finished_normally(conv)
            await f.wait_status("worker1", "UP", 10)
            (again,) = await open_talks(nursery, f.url, utterance, 1)
            assert f.worker_of(again.session_id) is w1
            await finish([*through, again])
            for conv in [*through, again]:
                assert_finished_normally(conv)
            # the workers counted it all
            metrics = (await get(w1.port, "/metrics"))[2].decode()
            if routed_to_full:
                assert re.search(r'^voicekit_serve_sessions_refused_total\{reason="max_sessions"\} [1-9]', metrics,
                                 re.M), metrics
            assert re.search(r"^voicekit_serve_sessions_started_total 4\.0$", metrics, re.M), metrics
            assert re.search(r'^voicekit_serve_turn_latency_seconds_count\{stage="handler"\} 4\.0$', metrics, re.M)
            nursery.cancel_scope.cancel()


async def test_sigterm_drains_a_worker(tmp_path: Path, utterance: bytes) -> None:
    """SIGTERM: the worker answers /readyz 503 at once, gets no new conversation, lets one that
    ends in time finish normally, closes the one that does not with 1012 at --drain-timeout (its
    client reconnects and lands on the other worker), then exits 0."""
    with trio.fail_after(200):
        async with fleet(tmp_path, 2, "--max-sessions", "6", "--drain-timeout", "20") as f, \
                trio.open_nursery() as nursery:
            talks = await open_talks(nursery, f.url, utterance, 4)
            by_worker = {w.name: [c for c in talks if f.worker_of(c.session_id) is w] for w in f.workers}
            assert sorted(map(len, by_worker.values())) == [2, 2], {k: len(v) for k, v in by_worker.items()}
            a, b = f.workers
            finishing, lingering = by_worker[a.name]
            a.proc.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                while (await a.ready())["reason"] != "draining":
                    await trio.sleep(0.05)
            finishing.go.set()  # says its utterance and ends while the worker drains
            newcomers = await open_talks(nursery, f.url, utterance, 2)
            assert all(f.worker_of(c.session_id) is b for c in newcomers)
            with trio.fail_after(30):
                await finishing.closed.wait()
            assert_finished_normally(finishing)
            assert a.proc.returncode is None  # still draining: lingering has not ended
            with trio.fail_after(30):
                await lingering.closed.wait()
            assert lingering.close_code == 1012 and lingering.close_reason == "server restarting"
            assert lingering.errors == ["restarting"]
            # what the browser client does on 1012: reconnect to the same URL, and land elsewhere
            (reconnected,) = await open_talks(nursery, f.url, utterance, 1)
            assert f.worker_of(reconnected.session_id) is b
            with trio.fail_after(15):
                await a.proc.wait()
            assert a.proc.returncode == 0, a.text()[-2000:]
            assert "drained (1 conversation(s) closed at the deadline)" in a.text()
            await finish([*by_worker[b.name], *newcomers, reconnected])
            for conv in [*by_worker[b.name], *newcomers, reconnected]:
                assert_finished_normally(conv)
            # every line the draining worker logged about a conversation names its session
            for line in a.text().splitlines():
                if re.match(r"\d{4}-\d\d-\d\dT", line) and re.search(
                        r"\] (conversation|session_ended|transcript|turn_ended|fell behind)\b", line):
                    assert "session_id=" in line, line
            nursery.cancel_scope.cancel()


async def test_sigkill_loses_only_that_workers_conversations(tmp_path: Path, utterance: bytes) -> None:
    with trio.fail_after(150):
        async with fleet(tmp_path, 2, "--max-sessions", "4") as f, trio.open_nursery() as nursery:
            talks = await open_talks(nursery, f.url, utterance, 4)
            a, b = f.workers
            lost = [c for c in talks if f.worker_of(c.session_id) is a]
            kept = [c for c in talks if f.worker_of(c.session_id) is b]
            assert len(lost) == 2 and len(kept) == 2
            a.proc.kill()
            with trio.fail_after(10):  # the clients of the dead worker see the connection end at once
                for conv in lost:
                    await conv.closed.wait()
            for conv in lost:
                assert conv.close_code == 1006, (conv.close_code, conv.close_reason)  # abnormal closure
            assert not any(c.closed.is_set() for c in kept)
            # new conversations go to the survivor, at once (HAProxy retries a refused connect)
            newcomers = await open_talks(nursery, f.url, utterance, 2)
            assert all(f.worker_of(c.session_id) is b for c in newcomers)
            await finish([*kept, *newcomers])
            for conv in [*kept, *newcomers]:
                assert_finished_normally(conv)
            await f.wait_status(a.name, "DOWN", 10)
            nursery.cancel_scope.cancel()


async def test_per_address_limit_counts_the_clients_behind_haproxy(tmp_path: Path) -> None:
    """HAProxy names each client in X-Forwarded-For (``option forwardfor``) and the workers trust
    it (``--trusted-proxy 127.0.0.1``): the per-address limit on connections that have not said
    hello counts each client, not the proxy, and a client cannot pass for another one."""
    with trio.fail_after(90):
        async with fleet(tmp_path, 1, "--max-pending-per-address", "2", "--hello-timeout", "30") as f:
            (worker,) = f.workers
            held: list[trio.SocketStream] = []
            try:
                for _ in range(2):  # client A's share: two WebSockets that never say hello
                    status, answer, stream = await upgrade(f.lb_port, "127.0.0.20", {})
                    held.append(stream)
                    assert status == 101, answer
                for spoof in ({}, {"X-Forwarded-For": "127.0.0.21"}):  # A again, also claiming to be B
                    status, answer, stream = await upgrade(f.lb_port, "127.0.0.20", spoof)
                    await stream.aclose()
                    assert status == 429 and b"too many connections from 127.0.0.20 " in answer, answer
                # client B, through the same proxy, has a share of its own
                await conversation_starts(f.lb_port, "127.0.0.21", {})
            finally:
                for stream in held:
                    await stream.aclose()
            assert re.search(r"refused .*client=127\.0\.0\.20.*proxy=127\.0\.0\.1", worker.text()), worker.text()
            assert re.search(r"\bconversation\b.*peer=127\.0\.0\.21.*proxy=127\.0\.0\.1|"
                             r"\bconversation\b.*proxy=127\.0\.0\.1.*peer=127\.0\.0\.21", worker.text()), \
                worker.text()


async def test_browser_page_reconnects_to_another_worker_after_a_drain(tmp_path: Path) -> None:
    """The real page (voicekit/serve/static) in headless Chromium, through HAProxy: when its
    worker drains and closes the conversation with 1012, the page opens a new one by itself, at
    the same URL, and HAProxy gives it to the other worker."""
    if CHROMIUM is None:
        pytest.fail(CHROMIUM_MISSING, pytrace=False)
    mic = silent_microphone(tmp_path / "mic.wav")  # played in a loop: the page never stops
    with trio.fail_after(120):
        async with fleet(tmp_path, 2, "--drain-timeout", "1") as f:
            page_url = f"http://127.0.0.1:{f.lb_port}/"
            async with chromium(f"{page_url}?autostart=1", tmp_path, mic, within=120, loop=True), \
                    devtools_page(tmp_path / "profile", page_url) as page:

                def ready(st: dict[str, Any]) -> bool:
                    assert st.get("ready") or not st.get("errors"), st.get("errors")
                    return bool(st.get("ready"))

                first = (await page.until(page.state, ready))["ready"]["session_id"]
                drained = f.worker_of(first)
                other = next(w for w in f.workers if w is not drained)
                drained.proc.send_signal(signal.SIGTERM)
                st = await page.until(page.state, lambda st: st.get("ready") and st["ready"]["session_id"] != first)
                assert st["reconnects"] == 1 and st["sessions"] == [first, st["ready"]["session_id"]], st
                assert st["close"] == {"code": 1012, "reason": "server restarting"}, st["close"]
                assert st["status"] == "listening", st["status"]
                assert [e for e in st["errors"] if "restarting" in e], st["errors"]  # what the page showed
                assert f.worker_of(st["ready"]["session_id"]) is other
                sent = st["chunksSent"]
                # the microphone streams to the new one
                await page.until(page.state, lambda st: st["chunksSent"] >= sent + 25)
                with trio.fail_after(15):
                    await drained.proc.wait()
                assert drained.proc.returncode == 0
