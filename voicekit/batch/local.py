"""Batch backends in this process: local engines one file at a time, or a cloud model with a
bounded number of files in flight.

For a cloud model the work is remote, so there is nothing to distribute: the files are sent from
here, at most ``concurrency`` at once, and when the service answers with a rate limit (HTTP 429,
``Throttling…`` codes) the file waits and is sent again with exponential back-off and jitter
(1 s, 2 s, 4 s … at most 30 s; :data:`MAX_ATTEMPTS` tries in all) instead of failing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import trio

from voicekit.batch.job import Item, Outcome, Reporter, transcribe_file, transcribe_file_async
from voicekit.plugins.build import make_vad

MAX_ATTEMPTS = 8
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 30.0


def run_sequential(items: Sequence[Item], reporter: Reporter, *, asr: Any, vad_name: str, fmt: str,
                   language: str | None) -> None:
    """One engine, one file after the other (``--cluster none`` with a local engine)."""
    vad = make_vad(vad_name, sample_rate=16000)
    for item in items:
        reporter.record(item, transcribe_file(asr, vad, item.path, fmt=fmt, language=language))


def backoff(attempt: int) -> float:
    """Seconds to wait before try ``attempt + 1`` (full jitter over an exponential cap)."""
    ceiling = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** attempt)
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def run_concurrent(items: Sequence[Item], reporter: Reporter, *, asr: Any, vad_name: str, fmt: str,
                   language: str | None, concurrency: int) -> None:
    """Up to ``concurrency`` files in flight; rate-limit answers are waited out, not failed."""

    async def main() -> None:
        pool_in, pool_out = trio.open_memory_channel[Any](concurrency)
        for _ in range(concurrency):  # each file in flight has its own VAD (a VAD keeps state)
            pool_in.send_nowait(make_vad(vad_name, sample_rate=16000))

        async def one(item: Item, vad: Any) -> None:
            try:
                outcome: Outcome | None = None
                for attempt in range(MAX_ATTEMPTS):
                    outcome = await transcribe_file_async(asr, vad, item.path, fmt=fmt, language=language)
                    if not outcome.retryable or attempt == MAX_ATTEMPTS - 1:
                        break
                    wait = backoff(attempt)
                    reporter.note(f"{item.path}: the service asked to slow down (rate limit); "
                                  f"trying again in {wait:.1f} s")
                    await trio.sleep(wait)
                assert outcome is not None
                reporter.record(item, outcome)
            finally:
                pool_in.send_nowait(vad)

        async with trio.open_nursery() as nursery:
            for item in items:
                vad = await pool_out.receive()  # waits while `concurrency` files are in flight
                nursery.start_soon(one, item, vad)

    trio.run(main)
