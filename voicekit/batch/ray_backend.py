"""Batch transcription on Ray: a pool of actors, each building the engines once.

Each worker is a Ray actor (one CPU) that builds the ASR and VAD plugins in its constructor and
then transcribes file after file; the driver hands every idle worker the next file and writes the
output when the answer comes back. Inputs are read by the workers at the path given, so on a
multi-node cluster they must be on a filesystem every node sees at the same path; outputs are
written by the driver.

A worker that dies (its process killed, its node lost) takes only the file it was working on
with it: that file goes back to the front of the queue and another worker does it; a
replacement worker is started as long as fewer than the job's worker count have been replaced.
A file on which two workers died is reported as failed (it is probably what kills them).
Outputs are written once, by the driver, when a result arrives — so none is lost or duplicated.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

from voicekit.batch.job import Item, Outcome, Reporter, transcribe_file
from voicekit.errors import ConfigError

#: How many times a worker may die on the same file before that file is reported failed.
DEATHS_PER_FILE = 2


class TranscribeWorker:
    """The engines of one worker, built once; :meth:`run` transcribes one file."""

    def __init__(self, asr_name: str, asr_options: dict[str, Any], vad_name: str, fmt: str,
                 language: str | None) -> None:
        from voicekit.plugins.build import make_asr, make_vad

        self.asr = make_asr(asr_name, **asr_options)
        self.vad = make_vad(vad_name, sample_rate=16000)
        self.fmt = fmt
        self.language = language
        self.files = 0

    def ready(self) -> str:
        import socket

        return f"{socket.gethostname()}:{os.getpid()}"

    def run(self, path: str) -> Outcome:
        self.files += 1
        return transcribe_file(self.asr, self.vad, path, fmt=self.fmt, language=self.language)


def _address(cluster: str) -> str | None:
    """``local`` → None (start a Ray here); ``auto`` → $RAY_ADDRESS if set, else None; else the address."""
    if cluster == "local":
        return None
    if cluster == "auto":
        return os.environ.get("RAY_ADDRESS") or None
    return cluster


#: Ray's own variables for a cluster with token authentication (Ray 2.52 and later; on by default
#: for new clusters from Ray 2.59 when a token exists). Read by ``ray.init`` from this process's
#: environment: voicekit passes them through untouched and never sends a token on its own.
TOKEN_HELP = ("set RAY_AUTH_MODE=token and give the cluster's token in RAY_AUTH_TOKEN, in a file named by "
              "RAY_AUTH_TOKEN_PATH, or in ~/.ray/auth_token (`ray get-auth-token` on the head node prints it)")


def _auth_refused(exc: BaseException) -> bool:
    """Somewhere in the exception chain, the cluster refused us for a missing or wrong token."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def connect_error(address: str, exc: BaseException) -> ConfigError:
    """One line naming the cluster and the fix, for a failed ``ray.init(address=...)``."""
    mode = (os.environ.get("RAY_AUTH_MODE") or "").lower()
    if _auth_refused(exc):
        if mode == "token":
            return ConfigError(f"the Ray cluster at {address!r} refused this job's token — give the cluster's own "
                               "token in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token")
        return ConfigError(f"the Ray cluster at {address!r} needs token authentication — {TOKEN_HELP}")
    if isinstance(exc, ModuleNotFoundError) and address.startswith("ray://"):
        return ConfigError(f"{address!r} is a Ray Client address, which needs pip install 'ray[client]' "
                           "(or give the cluster's GCS address HOST:6379 from one of its nodes)")
    first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
    hint = "" if mode == "token" else f"; if the cluster uses token authentication, {TOKEN_HELP}"
    return ConfigError(f"cannot reach the Ray cluster at {address!r}: {first} — check the address "
                       f"(ray://HOST:10001 or HOST:6379) and that the cluster is up{hint}")


def _connect(address: str, quiet: dict[str, Any]) -> None:
    import ray

    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, ModuleNotFoundError) as exc:
        raise connect_error(address, exc) from None
    except Exception as exc:
        if _auth_refused(exc):
            raise connect_error(address, exc) from None
        raise


class _Chatter(io.TextIOBase):
    """Where Ray's driver prints its own notices (it writes them to stdout, which holds our
    results): to stderr with ``-v``, else nowhere — the job reports what they are about itself."""

    def __init__(self, verbose: int) -> None:
        self.verbose = verbose

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if self.verbose:
            sys.stderr.write(s)
        return len(s)


def run_ray(items: Sequence[Item], reporter: Reporter, *, cluster: str, workers: int | None, asr_name: str,
            asr_options: dict[str, Any], vad_name: str, fmt: str, language: str | None) -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError("--cluster needs Ray: pip install 'voicekit[ray]' (or use --cluster none)") from None

    with contextlib.redirect_stdout(_Chatter(reporter.verbose)):
        _run(items, reporter, cluster=cluster, workers=workers,
             asr_name=asr_name, asr_options=asr_options, vad_name=vad_name, fmt=fmt, language=language)


def _run(items: Sequence[Item], reporter: Reporter, *, cluster: str, workers: int | None, asr_name: str,
         asr_options: dict[str, Any], vad_name: str, fmt: str, language: str | None) -> None:
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    address = _address(cluster)
    quiet: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
                             "configure_logging": True}
    if address is None:
        n = workers or os.cpu_count() or 1
        # address="local": always a new Ray of our own, even if another one runs on this machine
        ray.init(address="local", num_cpus=n, object_store_memory=80 * 1024 * 1024, **quiet)
    else:
        _connect(address, quiet)
    try:
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))  # type: ignore[no-untyped-call]
        n = min(n, len(items))
        remote_cls = ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)(TranscribeWorker)
        args = (asr_name, asr_options, vad_name, fmt, language)

        def start() -> Any:
            return remote_cls.remote(*args)

        actors = [start() for _ in range(n)]
        for name in ray.get([a.ready.remote() for a in actors]):
            if reporter.verbose:
                reporter.note(f"worker ready on {name}")
        idle: deque[Any] = deque(actors)
        pending: deque[Item] = deque(items)
        inflight: dict[Any, tuple[Any, Item]] = {}
        deaths: Counter[int] = Counter()
        replaced = 0
        while pending or inflight:
            while idle and pending:
                actor = idle.popleft()
                item = pending.popleft()
                inflight[actor.run.remote(item.path)] = (actor, item)
            if not inflight:
                break
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ref in ready:
                actor, item = inflight.pop(ref)
                try:
                    outcome: Outcome = ray.get(ref)
                except RayActorError:
                    deaths[item.index] += 1
                    if deaths[item.index] >= DEATHS_PER_FILE:
                        reporter.fail(item, f"{DEATHS_PER_FILE} workers died while transcribing it — "
                                            "check the file (it may crash the decoder or exhaust memory)")
                    else:
                        reporter.note(f"a worker died while transcribing {item.path}; "
                                      "it will be transcribed by another worker")
                        pending.appendleft(item)
                    if replaced < n:
                        replaced += 1
                        idle.append(start())
                    continue
                except RayTaskError as exc:
                    idle.append(actor)
                    reporter.fail(item, f"worker error: {str(exc).splitlines()[0][:200]}")
                    continue
                idle.append(actor)
                reporter.record(item, outcome)
        for item in pending:
            reporter.fail(item, "no worker left to transcribe it (every worker died) — run the command again")
    finally:
        ray.shutdown()
