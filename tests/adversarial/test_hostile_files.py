"""Hostile files: property-based over header fields and truncation points.

Whatever the bytes, the file entry points (``probe``, ``open_source``/``FileSource``, ``PCMSource``)
either stream frames or raise a typed voicekit error with a one-line message: never another
exception, never a hang (each example is bounded), and the CLI never leaves an output behind when it
fails.
"""

from __future__ import annotations

import concurrent.futures
import io
import math
import os
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voicekit.audio import AudioFrame, PCMSource, open_source, probe
from voicekit.errors import VoicekitError
from voicekit.testing.encode import EncoderUnavailable, encode_audio

#: Seconds one example may take before it counts as a hang.
HANG_S = 30.0
COMMON = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])


def bounded(fn: Callable[[], Any], timeout: float = HANG_S) -> Any:
    """Run ``fn`` in a worker thread; a run longer than ``timeout`` fails the test as a hang."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        future = pool.submit(fn)
        try:
            return future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            pytest.fail(f"hang: no answer within {timeout} s")
    finally:
        pool.shutdown(wait=False)


def decode(path: Path) -> list[AudioFrame] | VoicekitError:
    """Everything the file yields through the public entry points, or the typed error they raised."""

    async def read() -> list[AudioFrame]:
        source = open_source(path, sample_rate=16000)
        try:
            return [f async for f in source.frames()]
        finally:
            await source.aclose()

    try:
        probe(path)
    except VoicekitError:
        pass  # the source must then refuse it too, or stream it: both are checked below
    try:
        return trio.run(read)
    except VoicekitError as exc:
        return exc


def check(outcome: list[AudioFrame] | VoicekitError, path: Path) -> None:
    if isinstance(outcome, VoicekitError):
        msg = str(outcome)
        assert msg and "\n" not in msg and "Traceback" not in msg, msg
        return
    t = 0.0
    for frame in outcome:
        assert frame.sample_rate == 16000 and frame.channels == 1
        assert math.isclose(frame.timestamp, t, abs_tol=1e-6)
        t = frame.end
    if outcome:
        pcm = np.frombuffer(b"".join(f.pcm for f in outcome), "<i2")
        assert pcm.size == sum(f.samples for f in outcome)


def wav_bytes(*, fmt_tag: int = 1, channels: int = 1, rate: int = 16000, bits: int = 16,
              byte_rate: int | None = None, block_align: int | None = None, data_size: int | None = None,
              riff_size: int | None = None, fmt_size: int = 16, payload: bytes = b"",
              extra_chunk: bytes = b"") -> bytes:
    block = block_align if block_align is not None else max(1, channels * bits // 8)
    br = byte_rate if byte_rate is not None else rate * block
    fmt = struct.pack("<HHIIHH", fmt_tag & 0xFFFF, channels & 0xFFFF, rate & 0xFFFFFFFF, br & 0xFFFFFFFF,
                      block & 0xFFFF, bits & 0xFFFF)
    fmt = (fmt + b"\0" * 64)[: max(0, fmt_size)] if fmt_size != 16 else fmt
    body = (b"WAVE" + b"fmt " + struct.pack("<I", fmt_size & 0xFFFFFFFF) + fmt + extra_chunk
            + b"data" + struct.pack("<I", (len(payload) if data_size is None else data_size) & 0xFFFFFFFF)
            + payload)
    size = len(body) if riff_size is None else riff_size
    return b"RIFF" + struct.pack("<I", size & 0xFFFFFFFF) + body


EDGE_U32 = st.sampled_from([0, 1, 2, 3, 7, 8, 44, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF])
U32 = st.one_of(EDGE_U32, st.integers(0, 0xFFFFFFFF))
U16 = st.one_of(st.sampled_from([0, 1, 2, 3, 6, 8, 0xFFFE, 0xFFFF]), st.integers(0, 0xFFFF))
RATE = st.one_of(st.sampled_from([0, 1, 8000, 16000, 44100, 48000, 0xFFFFFFFF]), st.integers(0, 0xFFFFFFFF))
BITS = st.one_of(st.sampled_from([0, 1, 4, 8, 12, 16, 20, 24, 32, 64, 0xFFFF]), st.integers(0, 0xFFFF))


def payload_for(seed: int, n: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


@COMMON
@given(fmt_tag=st.sampled_from([0, 1, 2, 3, 6, 7, 0x11, 0x55, 0xFFFE, 0xFFFF]), channels=U16, rate=RATE,
       bits=BITS, byte_rate=st.none() | U32, block_align=st.none() | U16, data_size=st.none() | U32,
       riff_size=st.none() | U32, fmt_size=st.sampled_from([0, 2, 14, 16, 18, 40, 0xFFFFFFFF]),
       n=st.integers(0, 6000), seed=st.integers(0, 2**16))
def test_wav_header_fields(tmp_path_factory: pytest.TempPathFactory, fmt_tag: int, channels: int, rate: int,
                           bits: int, byte_rate: int | None, block_align: int | None, data_size: int | None,
                           riff_size: int | None, fmt_size: int, n: int, seed: int) -> None:
    path = tmp_path_factory.mktemp("wav") / "hostile.wav"
    path.write_bytes(wav_bytes(fmt_tag=fmt_tag, channels=channels, rate=rate, bits=bits, byte_rate=byte_rate,
                               block_align=block_align, data_size=data_size, riff_size=riff_size,
                               fmt_size=fmt_size, payload=payload_for(seed, n)))
    check(bounded(lambda: decode(path)), path)


def _valid_files(folder: Path) -> dict[str, bytes]:
    """Small real files in several containers, encoded by FFmpeg through PyAV."""

    rate = 16000
    t = np.arange(rate // 2) / rate
    tone = (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = {"pcm16.wav": wav_bytes(payload=(tone * 32767).astype("<i2").tobytes()),
           "float.wav": wav_bytes(fmt_tag=3, bits=32, payload=tone.astype("<f4").tobytes()),
           "u8.wav": wav_bytes(bits=8, payload=((tone + 1) * 127.5).astype(np.uint8).tobytes())}
    for name, codec, fmt in (("a.flac", "flac", None), ("a.mp3", "libmp3lame", None),
                             ("a.ogg", "libopus", "ogg"), ("a.m4a", "aac", None)):
        r = 48000 if codec == "libopus" else rate
        try:
            out[name] = encode_audio(np.resize(tone, r // 2), r, codec, container_format=fmt, dest=folder / name)
        except EncoderUnavailable:
            continue  # this FFmpeg build lacks the encoder
    return out


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return _valid_files(tmp_path_factory.mktemp("valid"))


@COMMON
@given(data=st.data())
def test_truncation_points_and_flipped_bytes(tmp_path_factory: pytest.TempPathFactory,
                                             valid_files: dict[str, bytes], data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(valid_files)), label="file")
    raw = bytearray(valid_files[name])
    cut = data.draw(st.integers(0, len(raw)), label="cut")
    flips = data.draw(st.lists(st.tuples(st.integers(0, max(0, len(raw) - 1)), st.integers(0, 255)),
                               max_size=8), label="flips")
    for pos, value in flips:
        raw[pos] = value
    path = tmp_path_factory.mktemp("cut") / name
    path.write_bytes(bytes(raw[:cut]))
    check(bounded(lambda: decode(path)), path)


@COMMON
@given(head=st.sampled_from([b"RIFF?", b"RIFF", b"#!AMR\n", b"fLaC", b"ID3", b"OggS", b"\xff\xfb", b"",
                             b"\x00\x00\x00\x20ftypM4A ", b"\x1aE\xdf\xa3"]),
       text=st.text(max_size=400), suffix=st.sampled_from([".wav", ".flac", ".mp3", ".amr", ".txt", ""]))
def test_text_and_magic_numbers(tmp_path_factory: pytest.TempPathFactory, head: bytes, text: str,
                                suffix: str) -> None:
    path = tmp_path_factory.mktemp("text") / f"file{suffix}"
    path.write_bytes(head + text.encode("utf-8", "surrogatepass"))
    outcome = bounded(lambda: decode(path))
    check(outcome, path)
    if head in (b"RIFF?", b"") and text and text.isprintable():
        assert isinstance(outcome, VoicekitError)  # text is never "transcribed"


@COMMON
@given(chunks=st.lists(st.binary(max_size=700), max_size=12), rate=st.sampled_from([8000, 16000, 44100]),
       channels=st.integers(1, 3))
async def test_pcm_streams_in_any_pieces(chunks: list[bytes], rate: int, channels: int) -> None:
    class Pieces(io.RawIOBase):
        def __init__(self) -> None:
            self.left = list(chunks)

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            return self.left.pop(0)[:n] if self.left else b""

    source = PCMSource(Pieces(), input_rate=rate, input_channels=channels)
    try:
        with trio.fail_after(HANG_S):
            frames = [f async for f in source.frames()]
    except VoicekitError as exc:
        assert "\n" not in str(exc)
        return
    total = sum(len(c) for c in chunks) // (2 * channels)
    assert total > 0 and frames


# --------------------------------------------------------------------------- through the CLI

VOICEKIT = [sys.executable, "-m", "voicekit.cli.main"]


@pytest.mark.slow
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.fixed_dictionaries({"fmt_tag": st.sampled_from([0, 1, 3, 0xFFFF]), "channels": U16,
                                     "rate": RATE, "bits": BITS, "data_size": st.none() | U32}),
       n=st.integers(0, 2000), seed=st.integers(0, 2**16), cut=st.integers(0, 80))
def test_cli_never_writes_an_output_when_it_fails(tmp_path_factory: pytest.TempPathFactory, fields: dict[str, Any],
                                                  n: int, seed: int, cut: int) -> None:
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "in.wav"
    raw = wav_bytes(payload=payload_for(seed, n), **fields)
    path.write_bytes(raw[: max(cut, len(raw) - cut)] if cut % 2 else raw[:cut])
    out = folder / "out.txt"
    reply = folder / "reply.wav"
    for args, target in ((["transcribe", str(path), "-o", str(out)], out),
                         (["run", "robot", "--input", str(path), "--output", str(reply), "--tts", "none"], reply)):
        r = subprocess.run([*VOICEKIT, *args], capture_output=True, text=True, timeout=240)
        assert "Traceback" not in r.stderr, r.stderr
        leftovers = [p.name for p in folder.iterdir() if p.name.endswith(".part")]
        assert leftovers == []
        if r.returncode != 0:
            assert not target.exists(), (args, r.stderr)
            errors = [ln for ln in r.stderr.splitlines() if ln.startswith("voicekit: error:")]
            assert len(errors) == 1, r.stderr
        target.unlink(missing_ok=True)


@pytest.mark.slow
def test_fuzz_bench_small_slice() -> None:
    """The volume fuzzer (bench/bench_fuzz.py) on a small slice: 0 crashes, 0 hangs."""
    bench = Path(__file__).resolve().parents[2] / "bench" / "bench_fuzz.py"
    r = subprocess.run([sys.executable, str(bench), "--count", "40", "--seed", "7"], capture_output=True,
                       text=True, timeout=600, env={**os.environ, "PYTHONHASHSEED": "0"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "crashes=0 hangs=0" in r.stdout, r.stdout


@pytest.mark.parametrize("body", [{"transcripts": [1.5]}, {"transcripts": ["text"]},
                                  {"transcripts": [{"sentences": [None]}]},
                                  {"transcripts": [{"sentences": [{"words": [7]}]}]},
                                  {"transcripts": [{"channel_id": float("inf")}]},
                                  {"transcripts": [{"sentences": 3}]},
                                  {"transcripts": [{"sentences": [{"words": 1.5}]}]}])
def test_hostile_result_files_are_typed_errors(body: dict[str, Any]) -> None:
    """Findings of the fuzz bench: a result file's entries of the wrong type were AttributeError/OverflowError."""
    files = pytest.importorskip("voicekit_dashscope.protocol.files")
    with pytest.raises(VoicekitError, match="result file"):
        files.parse_result_file(body)


@pytest.mark.parametrize("size", range(12, 40))
def test_wav_length_check_on_a_header_cut_anywhere(tmp_path: Path, size: int) -> None:
    """Fuzz bench finding: a RIFF header cut inside its fmt chunk made the length check raise struct.error."""
    from voicekit.audio import sources

    path = tmp_path / "cut.wav"
    path.write_bytes(wav_bytes(payload=b"\0" * 64)[:size])
    assert sources._wav_truncation(str(path), 10_000) is None
