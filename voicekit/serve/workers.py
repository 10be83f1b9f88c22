"""``voicekit serve --workers N``: N worker processes behind one port, and the supervisor that runs them.

One ``voicekit serve`` process runs every conversation on one trio thread, so it uses one core.
With ``--workers N`` the command becomes a small supervisor that starts N workers, each an
ordinary ``voicekit serve`` (the same options, its own models, its own admission control), and:

* **One port.** Each worker listens with ``SO_REUSEPORT`` on the same address and port; the kernel
  spreads new connections across the workers (a hash of the client's address and port, so a
  client that retries after a refusal lands on a worker picked afresh). The supervisor holds a
  bound, non-listening socket on the port for its whole life: port 0 becomes one free port
  that all workers share, a port another program listens on is a clear error at start, and no
  other program can take the port while a worker restarts.
* **Restarts.** A worker that exits while the supervisor is not stopping is started again (after
  1 s, doubling to 30 s while it keeps dying within a minute of its start). A worker that fails
  before it ever listened (a bad option, a missing model) stops the whole command with its error.
* **Signals.** SIGTERM is forwarded to every worker, which drains as a single server does (no new
  conversation, the running ones finish up to ``--drain-timeout``, the rest closed with 1012); a
  second SIGTERM stops them at once. Ctrl-C (SIGINT) stops them at once. The command exits when
  every worker has.
* **Logs.** Every line a worker writes to stderr is relayed with ``[worker K pid P]`` in front.
* **Per worker / for the whole.** ``--max-sessions``, the loop-lag and backlog limits and the
  pending-connection pools apply to each worker (each is one event loop, the thing they protect).
  ``/readyz`` answers for all of them: 200 while any worker would take a new conversation (one
  that lands on a full worker is refused with the retryable ``busy`` answer, and the client's
  retry is balanced afresh); 503 when none would. ``/metrics`` (prometheus-client's multiprocess
  mode, in a temporary directory the supervisor removes at exit) shows all the workers: counters
  and histograms summed, including workers that have died; gauges summed (sessions active, the
  limit) or the largest (loop lag, backlog, ready) over the live workers.

``--workers auto`` is one worker per CPU this process may run on. docs/scaling.md has the
measurements behind the default (one process) and when to use more.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import attrs
import trio

from voicekit.cli.serve import TOKEN_ENV
from voicekit.errors import ConfigError
from voicekit.serve.agent import AgentRecipe
from voicekit.serve.config import ServeConfig, SessionRecipe
from voicekit.serve.metrics import MULTIPROC_ENV
from voicekit.serve.server import VoiceServer

__all__ = ["WORKER_ENV", "Supervisor", "WorkerServer", "make_server", "parse_workers", "supervise", "worker_main"]

#: Set by the supervisor in each worker's environment: ``K:READY_FD:COUNT:STATE_FILE`` (K = 1 .. COUNT).
WORKER_ENV: Final = "VOICEKIT_SERVE_WORKER"
#: A worker's entry in the shared state file: the monotonic time it last saw itself ready, 0 if not.
_SLOT: Final = struct.Struct("d")
#: A sibling's "ready" counts for /readyz only if it said so this recently (its event loop runs).
FRESH: Final = 1.0
RESTART_DELAY: Final = 1.0
MAX_RESTART_DELAY: Final = 30.0
STABLE_AFTER: Final = 60.0


def parse_workers(value: str | int) -> int:
    """``--workers``: a positive number, or ``auto`` (the CPUs this process may run on)."""
    if isinstance(value, int):
        count = value
    elif str(value).strip().lower() == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            return max(1, os.cpu_count() or 1)
    else:
        try:
            count = int(str(value).strip())
        except ValueError:
            count = 0
    if count < 1:
        raise ConfigError(f"--workers must be a positive number or 'auto' (one per CPU), got {value!r}")
    return count


# -- the worker side ---------------------------------------------------------------------------

@attrs.frozen
class WorkerInfo:
    """What the supervisor told this worker (from :data:`WORKER_ENV`)."""

    index: int
    ready_fd: int
    state_file: str
    count: int

    @classmethod
    def from_env(cls) -> WorkerInfo | None:
        text = os.environ.get(WORKER_ENV)
        if not text:
            return None
        index, fd, count, path = text.split(":", 3)
        return cls(int(index), int(fd), path, int(count))


def _reuseport_socket(family: int, address: Any) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _addresses(host: str, port: int) -> list[tuple[int, Any]]:
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    seen: list[tuple[int, Any]] = []
    for family, _, _, _, address in infos:
        if (family, address) not in seen:
            seen.append((family, address))
    return seen


class WorkerServer(VoiceServer):
    """A :class:`VoiceServer` run by the supervisor: it listens on the shared port with
    ``SO_REUSEPORT``, tells the supervisor when it listens, publishes its readiness for its
    siblings' ``/readyz``, and drains when the supervisor goes away."""

    def __init__(self, recipe: SessionRecipe | AgentRecipe, config: ServeConfig, info: WorkerInfo) -> None:
        super().__init__(recipe, config)
        self.info = info
        self._state_fd = os.open(info.state_file, os.O_RDWR)
        self._state = mmap.mmap(self._state_fd, _SLOT.size * info.count)

    async def _listen(self) -> list[trio.SocketListener]:
        cfg = self.config
        listeners: list[trio.SocketListener] = []
        try:
            for family, address in _addresses(cfg.host, cfg.port):
                sock = _reuseport_socket(family, address)
                sock.listen(socket.SOMAXCONN)
                listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        except OSError as exc:
            for listener in listeners:
                await listener.aclose()
            raise ConfigError(f"worker {self.info.index} cannot listen on {cfg.host}:{cfg.port}: "
                              f"{exc.strerror or exc}") from exc
        with contextlib.suppress(OSError):
            os.write(self.info.ready_fd, b"listening\n")
            os.close(self.info.ready_fd)
        return listeners

    def _update_ready(self) -> None:
        super()._update_ready()
        stamp = time.monotonic() if self.readiness()[0] else 0.0
        _SLOT.pack_into(self._state, (self.info.index - 1) * _SLOT.size, stamp)

    def probe_readiness(self) -> tuple[bool, str]:
        ready, why = self.readiness()
        if ready or self.draining:
            return ready, why
        now = time.monotonic()
        for k in range(1, self.info.count + 1):
            if k != self.info.index and now - _SLOT.unpack_from(self._state, (k - 1) * _SLOT.size)[0] < FRESH:
                return True, "ready"  # a sibling would take it: a refused client's retry may land there
        return ready, why

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            url = await nursery.start(super().serve)
            nursery.start_soon(self._watch_supervisor, nursery.cancel_scope)
            task_status.started(url)

    async def _watch_supervisor(self, cancel: trio.CancelScope) -> None:
        """Our stdin is a pipe from the supervisor: when it closes, the supervisor is gone (killed):
        drain and stop rather than serve on, unsupervised."""
        stdin = trio.lowlevel.FdStream(os.dup(0))
        async with stdin:
            while await stdin.receive_some(1024):
                pass
        print(f"voicekit: worker {self.info.index}: the supervisor went away; draining", file=sys.stderr)
        if not self.draining:
            await self.drain()
        cancel.cancel()


def make_server(recipe: SessionRecipe | AgentRecipe, config: ServeConfig) -> VoiceServer:
    """A plain :class:`VoiceServer`, or a :class:`WorkerServer` in a process the supervisor started."""
    info = WorkerInfo.from_env()
    return VoiceServer(recipe, config) if info is None else WorkerServer(recipe, config, info)


def worker_main(argv: list[str] | None = None) -> int:
    """A worker's entry point: ``python -m voicekit.serve.workers ARGS.json`` (started by
    :func:`supervise`): ``voicekit serve`` with the supervisor's parsed options."""
    from voicekit.cli.serve import run
    from voicekit.errors import VoicekitError, one_line

    path = Path((argv or sys.argv[1:])[0])
    args = argparse.Namespace(**json.loads(path.read_text()))
    try:
        return run(args)
    except VoicekitError as exc:
        print(f"voicekit: error: {one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# -- the supervisor side ---------------------------------------------------------------------------

def reserve_port(host: str, port: int) -> tuple[int, list[socket.socket]]:
    """Bound, non-listening ``SO_REUSEPORT`` sockets on ``host:port`` (a free port for 0) that the
    workers join. A plain bind first, so that a port some other program (or another
    ``voicekit serve --workers``) listens on is refused, not silently shared."""
    try:
        addresses = _addresses(host, port)
        if port == 0:
            addresses = addresses[:1]
        held: list[socket.socket] = []
        for family, address in addresses:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
                if port == 0:
                    port = probe.getsockname()[1]
                    address = (address[0], port, *address[2:])
            held.append(_reuseport_socket(family, address))
        return port, held
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port "
                          "(0 = any free port) or stop what uses it") from exc


def _worker_options(args: argparse.Namespace, port: int) -> dict[str, Any]:
    """The worker's options: the supervisor's, for one worker on the reserved port."""
    options = {k: v for k, v in vars(args).items() if not callable(v)}
    options.update(workers="1", port=port, token=None)  # the token goes by the environment, not a file
    json.dumps(options)  # plain data only
    return options


@attrs.define(eq=False)
class _Slot:
    index: int
    proc: trio.Process | None = None
    started_at: float = 0.0
    listening: bool = False
    delay: float = RESTART_DELAY
    restarts: int = 0


class Supervisor:
    """Runs ``count`` workers: each ``command`` (default: ``voicekit serve`` with ``options``), which
    must serve through :func:`make_server` (a bench passes a command of its own)."""

    def __init__(self, options: dict[str, Any], count: int, port: int, folder: Path, host: str,
                 token: str | None = None, command: list[str] | None = None) -> None:
        self.token = token
        self.count = count
        self.port = port
        self.folder = folder
        self.host = host
        self.slots = [_Slot(k) for k in range(1, count + 1)]  # worker 1 .. count
        self.stopping = False
        self.interrupted = False
        self.failed: tuple[int, int] | None = None  # (worker, exit code) of a worker that never listened
        self.state_file = folder / "ready"
        self.state_file.write_bytes(b"\0" * _SLOT.size * count)
        self.args_file = folder / "args.json"
        self.args_file.write_text(json.dumps(options))
        self.command = command or [sys.executable, "-m", "voicekit.serve.workers", str(self.args_file)]
        self.all_listening = trio.Event()

    def _env(self, slot: _Slot, ready_fd: int) -> dict[str, str]:
        env = dict(os.environ)
        env[WORKER_ENV] = f"{slot.index}:{ready_fd}:{self.count}:{self.state_file}"
        env[MULTIPROC_ENV] = str(self.folder / "metrics")
        if self.token:
            env[TOKEN_ENV] = self.token
        return env

    async def run(self) -> int:
        (self.folder / "metrics").mkdir(exist_ok=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._signals, signals)
                nursery.start_soon(self._announce)
                async with trio.open_nursery() as workers:
                    for slot in self.slots:
                        workers.start_soon(self._keep, slot)
                nursery.cancel_scope.cancel()
        if self.failed is not None:
            k, code = self.failed
            print(f"voicekit: worker {k} failed before it listened (exit status {code}); stopped", file=sys.stderr)
            return code or 1
        print("voicekit: all workers stopped", file=sys.stderr)
        return 130 if self.interrupted else 0

    async def _announce(self) -> None:
        await self.all_listening.wait()
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        print(f"voicekit: {self.count} workers serving at http://{host}:{self.port}/ "
              f"(pids {', '.join(str(s.proc.pid) for s in self.slots if s.proc)}); press Ctrl-C to stop",
              file=sys.stderr)

    async def _signals(self, signals: Any) -> None:
        terms = 0
        async for signum in signals:
            self.stopping = True
            self.interrupted = self.interrupted or signum == signal.SIGINT
            if signum == signal.SIGTERM:
                terms += 1
                print("voicekit: SIGTERM: draining every worker" if terms == 1 else
                      "voicekit: second SIGTERM: stopping every worker now", file=sys.stderr)
            self._send(signum)

    def _send(self, signum: int) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.send_signal(signum)

    async def _keep(self, slot: _Slot) -> None:
        """Run worker ``slot`` until the supervisor stops, restarting it when it dies."""
        while not self.stopping:
            code = await self._run_once(slot)
            if self.stopping:
                return
            if not slot.listening and slot.restarts == 0:  # never came up: a bad option, not bad luck
                self.failed = (slot.index, code)
                self.stopping = True
                self._send(signal.SIGTERM)
                return
            lived = time.monotonic() - slot.started_at
            slot.delay = RESTART_DELAY if lived > STABLE_AFTER else min(MAX_RESTART_DELAY, slot.delay * 2)
            print(f"voicekit: worker {slot.index} (pid {slot.proc.pid if slot.proc else '?'}) exited with "
                  f"status {code}; restarting it in {slot.delay:g} s", file=sys.stderr)
            with trio.move_on_after(slot.delay):
                while not self.stopping:
                    await trio.sleep(0.05)
            slot.restarts += 1

    async def _run_once(self, slot: _Slot) -> int:
        ready_r, ready_w = os.pipe()
        stdin_r, stdin_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            proc = await trio.lowlevel.open_process(
                self.command, stdin=stdin_r, stderr=err_w, pass_fds=(ready_w,), env=self._env(slot, ready_w),
                process_group=0)  # Ctrl-C reaches the supervisor only; it forwards it
        finally:
            for fd in (ready_w, stdin_r, err_w):
                os.close(fd)
        slot.proc, slot.started_at, slot.listening = proc, time.monotonic(), False
        print(f"voicekit: worker {slot.index} started (pid {proc.pid})", file=sys.stderr)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._relay, slot, err_r, proc.pid)
                nursery.start_soon(self._wait_listening, slot, ready_r)
                code = await proc.wait()
                nursery.cancel_scope.deadline = trio.current_time() + 2  # the last log lines
        finally:
            os.close(stdin_w)  # the worker's "supervisor is gone" signal, should it still run
            _clear_slot(self.state_file, slot.index)
            _mark_dead(proc.pid, self.folder / "metrics")
        return code

    async def _wait_listening(self, slot: _Slot, fd: int) -> None:
        async with trio.lowlevel.FdStream(fd) as ready:
            if await ready.receive_some(64):
                slot.listening = True
                if all(s.listening for s in self.slots):
                    self.all_listening.set()

    async def _relay(self, slot: _Slot, fd: int, pid: int) -> None:
        prefix = f"[worker {slot.index} pid {pid}] ".encode()
        out = sys.stderr.buffer if hasattr(sys.stderr, "buffer") else None
        pending = b""
        async with trio.lowlevel.FdStream(fd) as stream:
            while data := await stream.receive_some(65536):
                *lines, pending = (pending + data).split(b"\n")
                self._write(out, b"".join(prefix + line + b"\n" for line in lines))
            if pending:
                self._write(out, prefix + pending + b"\n")

    @staticmethod
    def _write(out: Any, data: bytes) -> None:
        if not data:
            return
        try:
            if out is not None:
                out.write(data)
                out.flush()
            else:
                sys.stderr.write(data.decode(errors="replace"))
                sys.stderr.flush()
        except (OSError, ValueError):
            pass


def _clear_slot(path: Path, index: int) -> None:
    """Clear a worker's readiness slot (it exited: it takes nothing)."""
    with contextlib.suppress(OSError), open(path, "r+b") as f:
        f.seek((index - 1) * _SLOT.size)
        f.write(_SLOT.pack(0.0))


def _mark_dead(pid: int, folder: Path) -> None:
    """Drop a dead worker's live gauges from the metrics (its counters stay in the sums)."""
    try:
        from prometheus_client import multiprocess
    except ImportError:
        return
    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]


def supervise(args: argparse.Namespace, count: int, token: str | None) -> int:
    """Run ``count`` workers of ``voicekit serve`` with the options ``args`` and ``token`` (the
    ``--token`` or its environment variable, as the command read it); returns the exit status."""
    port, held = reserve_port(args.host, args.port)
    folder = Path(tempfile.mkdtemp(prefix="voicekit-serve-"))
    try:
        sup = Supervisor(_worker_options(args, port), count, port, folder, args.host, token)
        return trio.run(sup.run)
    finally:
        for sock in held:
            sock.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(worker_main())
