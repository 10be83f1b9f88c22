"""PocketSphinx as a voicekit ASR engine: JSGF grammar, keyword spotting, or small dictation.

The mode follows the :class:`~voicekit.asr.base.ASRConfig` of each stream:

* ``grammar`` (JSGF text) — command mode: only sentences of the grammar are recognized;
* ``keywords`` — keyword spotting: each entry is a word or phrase, optionally with its own
  detection threshold written PocketSphinx-style, ``"lights on /1e-25/"``;
* neither — free dictation with the bundled US English language model.

Utterances are cut by the session's VAD markers. Audio that arrives outside an utterance is kept
in a short ring buffer so that, when ``speech_started(t)`` arrives (usually a little after the
audio it refers to), the decoder is fed from ``t - preroll``. Every call into the C decoder runs
in a worker thread through ``trio.to_thread.run_sync``, bounded by the engine's
``trio.CapacityLimiter``.
"""

from __future__ import annotations

import collections
import itertools
import math
import os
import re
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar, Literal, TypeVar

import attrs
import pocketsphinx
import trio

from voicekit.asr.base import ASRCapabilities, ASRConfig, TranscriptResult, Word
from voicekit.audio.frame import SAMPLE_WIDTH, AudioFrame
from voicekit.errors import ASRError, ConfigError
from voicekit.modelcache import shared_model
from voicekit.plugins.options import Option
from voicekit_pocketsphinx.jsgf import GrammarError, check_grammar

T = TypeVar("T")
Mode = Literal["grammar", "keywords", "dictation"]

RATE = 16000
FRAME_RATE = 100  # PocketSphinx feature frames per second (its "frate")
_BYTES_PER_S = RATE * SAMPLE_WIDTH
_KEYWORD = re.compile(r"^(?P<phrase>[^/]*?)\s*(?:/(?P<threshold>[^/]*)/)?\s*$")
_POOL_MAX = 4  # idle decoders kept per model set-up


class DecoderPool:
    """Idle decoders of one model set-up (acoustic model, dictionary, language model, options),
    shared by every engine of the process that uses that set-up. A PocketSphinx decoder holds its
    search state next to the model, so each stream needs a decoder of its own while it runs; when
    it ends, the cleaned decoder waits here for the next stream, and is never loaded again.
    ``built`` counts the decoders this pool ever loaded. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Decoder] = []
        self.built = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._idle)

    def take(self) -> _Decoder | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def give(self, dec: _Decoder) -> None:
        with self._lock:
            if len(self._idle) < _POOL_MAX:
                self._idle.append(dec)

    def build(self, engine: PocketSphinxASR) -> _Decoder:
        dec = _Decoder(engine)
        with self._lock:
            self.built += 1
        return dec


def _model_dir() -> str:
    return os.path.join(pocketsphinx.get_model_path(), "en-us")


@attrs.frozen
class Keyword:
    """One keyphrase to spot and its detection threshold (smaller: fewer misses, more false hits)."""

    phrase: str
    threshold: float


def parse_keywords(entries: tuple[str, ...], default_threshold: float) -> tuple[Keyword, ...]:
    """Read ``ASRConfig.keywords``: ``"forward"`` or ``"turn left /1e-25/"``."""
    out: list[Keyword] = []
    for entry in entries:
        m = _KEYWORD.match(entry)
        phrase = " ".join(m.group("phrase").split()).lower() if m else ""
        if m is None or not phrase:
            raise ASRError(
                f"keyword {entry!r} is not a phrase with an optional /threshold/; "
                f"write it as 'forward' or 'turn left /1e-25/'"
            )
        threshold = default_threshold
        if m.group("threshold") is not None:
            try:
                threshold = float(m.group("threshold"))
            except ValueError:
                threshold = math.nan
            if not 0.0 < threshold <= 1.0:
                raise ASRError(
                    f"keyword {entry!r}: threshold {m.group('threshold')!r} is not a number in (0, 1]; "
                    f"use a small probability such as /1e-20/ (smaller spots more, with more false hits)"
                )
        out.append(Keyword(phrase, threshold))
    return tuple(out)


class _Decoder:
    """A PocketSphinx decoder plus what we added to it; only touched from worker threads."""

    def __init__(self, engine: PocketSphinxASR) -> None:
        options = {**engine.decoder_options, "hmm": engine.hmm, "dict": engine.dictionary, "lm": None,
                   "loglevel": engine.loglevel}
        try:
            self.ps = pocketsphinx.Decoder(**options)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ConfigError(f"pocketsphinx could not start with {options} ({exc}); check hmm=, "
                              f"dictionary= and decoder_options=") from exc
        self.has_lm = False
        self.search: str | None = None
        self.in_utt = False
        for word, phones in engine.words.items():
            try:
                self.ps.add_word(word, phones, True)
            except RuntimeError as exc:
                raise ConfigError(
                    f"pocketsphinx could not add word {word!r} with phones {phones!r} ({exc}); "
                    f"use the acoustic model's phone set (ARPAbet, e.g. 'F AO R W ER D')"
                ) from exc

    def missing(self, words: list[str]) -> list[str]:
        return [w for w in words if self.ps.lookup_word(w) is None]


class PocketSphinxASR:
    """CMU PocketSphinx 5 (US English model bundled with the ``pocketsphinx`` wheel).

    Options:

    ``kws_threshold``
        default detection threshold for keywords without their own (1e-20).
    ``dictionary``, ``lm``, ``hmm``
        paths of a pronunciation dictionary, an N-gram language model (for dictation) and an
        acoustic model folder, instead of the bundled US English ones.
    ``words``
        extra pronunciations, ``{"voicekit": "V OY S K IH T"}``, for words the dictionary lacks.
    ``partial_interval``
        seconds of utterance audio between partial results (0.5).
    ``preroll``
        seconds of audio before the ``speech_started`` marker fed to the decoder (0.3).
    ``threads``
        how many decoder calls may run in worker threads at once, over all streams (2).
    ``loglevel``
        PocketSphinx's own log level on stderr (``"ERROR"``; ``"INFO"`` to debug).
    ``grammar_file``, ``keywords``
        the grammar (a JSGF file) or the keywords (a list, or one string with commas:
        ``"forward, turn left /1e-25/"``) of streams whose ``ASRConfig`` gives neither.
    ``decoder_options``
        other PocketSphinx configuration parameters, e.g. ``{"maxhmmpf": 3000, "fwdflat": False}``
        to trade dictation accuracy for speed.
    """

    capabilities: ClassVar[ASRCapabilities] = ASRCapabilities(
        name="pocketsphinx",
        family="pocketsphinx",
        mode="streaming",
        api="local",
        languages=("en",),
        grammar=True,
        word_timestamps=True,
        partials=True,
        sample_rates=(16000,),
        offline=True,
        notes="JSGF grammar or keyword spotting (ASRConfig.grammar / .keywords); "
        "otherwise dictation with a small US English language model",
        measured_wer=0.28,  # dictation, bench/bench_pocketsphinx.py (commands: 0 %)
    )
    options: ClassVar[tuple[Option, ...]] = (
        Option("kws_threshold", "float", 1e-20, "keyword-spotting threshold in (0, 1]; smaller spots more",
               minimum=0.0, maximum=1.0),
        Option("dictionary", "str", None, "pronunciation dictionary file (default: the bundled CMUdict)"),
        Option("lm", "str", None, "language model file for dictation (default: the bundled en-us model)"),
        Option("hmm", "str", None, "acoustic model folder (default: the bundled en-us model)"),
        Option("words", "json", None, "extra pronunciations as a JSON object {word: phones}"),
        Option("partial_interval", "float", 0.5, "seconds between partial results", minimum=0.0),
        Option("preroll", "float", 0.3, "seconds of audio kept before speech starts (0-1)",
               minimum=0.0, maximum=1.0),
        Option("threads", "int", 2, "decoder threads", minimum=1),
        Option("loglevel", "enum", "ERROR", "pocketsphinx's own log level",
               choices=("DEBUG", "INFO", "WARN", "ERROR", "FATAL")),
        Option("decoder_options", "json", None, "extra decoder parameters as a JSON object"),
        Option("grammar_file", "str", None, "JSGF grammar file (command mode)"),
        Option("keywords", "list", None, "keyphrases to spot (comma separated)"),
    )

    def __init__(
        self,
        *,
        kws_threshold: float = 1e-20,
        dictionary: str | os.PathLike[str] | None = None,
        lm: str | os.PathLike[str] | None = None,
        hmm: str | os.PathLike[str] | None = None,
        words: Mapping[str, str] | None = None,
        partial_interval: float = 0.5,
        preroll: float = 0.3,
        threads: int = 2,
        loglevel: str = "ERROR",
        decoder_options: Mapping[str, Any] | None = None,
        grammar_file: str | os.PathLike[str] | None = None,
        keywords: str | Sequence[str] | None = None,
    ) -> None:
        if not 0.0 < kws_threshold <= 1.0:
            raise ConfigError(f"pocketsphinx kws_threshold must be in (0, 1], not {kws_threshold!r} "
                              f"(try 1e-20; smaller spots more keywords, with more false hits)")
        if partial_interval <= 0:
            raise ConfigError(f"pocketsphinx partial_interval must be > 0 seconds, not {partial_interval!r}")
        if not 0.0 <= preroll <= 1.0:
            raise ConfigError(f"pocketsphinx preroll must be between 0 and 1 second, not {preroll!r}")
        if threads < 1:
            raise ConfigError(f"pocketsphinx threads must be at least 1, not {threads!r}")
        model = _model_dir()
        self.hmm = self._path("hmm", hmm, os.path.join(model, "en-us"), folder=True)
        self.dictionary = self._path("dictionary", dictionary, os.path.join(model, "cmudict-en-us.dict"))
        self.lm = self._path("lm", lm, os.path.join(model, "en-us.lm.bin"))
        self.custom_model = hmm is not None
        self.kws_threshold = float(kws_threshold)
        self.words = dict(words or {})
        self.partial_interval = float(partial_interval)
        self.preroll = float(preroll)
        self.loglevel = loglevel
        self.decoder_options = dict(decoder_options or {})
        known = set(pocketsphinx.Config(lm=None))
        unknown = sorted(set(self.decoder_options) - known)
        if unknown:
            raise ConfigError(f"pocketsphinx has no decoder option {', '.join(map(repr, unknown))}; "
                              f"see its config parameters (e.g. 'maxhmmpf', 'fwdflat', 'beam')")
        reserved = sorted(set(self.decoder_options) & {"hmm", "dict", "lm", "jsgf", "fsg", "kws",
                                                       "keyphrase", "samprate", "loglevel", "logfn"})
        if reserved:
            raise ConfigError(f"pocketsphinx decoder_options cannot set {', '.join(reserved)}; use the "
                              f"engine's own options (hmm=, dictionary=, lm=, loglevel=) or ASRConfig")
        self.limiter = trio.CapacityLimiter(threads)
        # defaults for streams whose ASRConfig names neither a grammar nor keywords
        self.grammar: str | None = None
        self.keywords: tuple[str, ...] = ()
        if grammar_file is not None and keywords:
            raise ConfigError("pocketsphinx got both grammar_file and keywords; give one of them")
        if grammar_file is not None:
            path = self._path("grammar_file", grammar_file, "")
            try:
                with open(path, encoding="utf-8") as f:
                    self.grammar = f.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"pocketsphinx cannot read grammar_file {path!r} ({exc}); "
                                  f"give a UTF-8 JSGF text file") from exc
            try:
                check_grammar(self.grammar)
            except GrammarError as exc:
                raise ConfigError(f"{path}: {exc}") from exc
        if keywords:
            entries = keywords.split(",") if isinstance(keywords, str) else list(keywords)
            self.keywords = tuple(e.strip() for e in entries if e.strip())
            try:
                parse_keywords(self.keywords, self.kws_threshold)
            except ASRError as exc:
                raise ConfigError(str(exc)) from exc
        # idle decoders are shared process-wide by engines with the same model set-up
        self._pool: DecoderPool = shared_model(
            ("pocketsphinx", self.hmm, self.dictionary, self.lm, self.loglevel,
             repr(sorted(self.decoder_options.items())), repr(sorted(self.words.items()))), DecoderPool)
        self._names = itertools.count(1)

    @staticmethod
    def _path(option: str, value: str | os.PathLike[str] | None, default: str, folder: bool = False) -> str:
        path = default if value is None else os.fspath(value)
        ok = os.path.isdir(path) if folder else os.path.isfile(path)
        if not ok:
            kind = "folder" if folder else "file"
            raise ConfigError(f"pocketsphinx {option} {kind} {path!r} does not exist; "
                              f"fix the path or leave {option} unset to use the bundled US English model")
        return path

    def __repr__(self) -> str:
        return f"PocketSphinxASR(kws_threshold={self.kws_threshold}, partial_interval={self.partial_interval})"

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    def effective_config(self, config: ASRConfig) -> ASRConfig:
        """The stream's config, with the engine's grammar or keywords when it names neither."""
        if config.grammar is None and not config.keywords:
            return attrs.evolve(config, grammar=self.grammar, keywords=self.keywords)
        return config

    def mode_of(self, config: ASRConfig) -> Mode:
        if config.grammar is not None and config.keywords:
            raise ASRError("pocketsphinx got both a grammar and keywords; give one of them "
                           "(ASRConfig.grammar for commands, ASRConfig.keywords for spotting)")
        if config.grammar is not None:
            return "grammar"
        return "keywords" if config.keywords else "dictation"

    def _prepare(self, dec: _Decoder | None, mode: Mode, config: ASRConfig,
                 keywords: tuple[Keyword, ...], words: list[tuple[str, int | None]]) -> _Decoder:
        """Worker thread: get a decoder and make the stream's search active."""
        dec = dec or self._pool.build(self)
        if mode == "dictation":
            if not dec.has_lm:
                try:
                    dec.ps.add_lm_file("dictation", self.lm)
                except RuntimeError as exc:
                    raise ASRError(f"pocketsphinx could not load the language model {self.lm!r} ({exc}); "
                                   f"give an ARPA or binary N-gram file as lm=") from exc
                dec.has_lm = True
            dec.ps.activate_search("dictation")
            return dec
        missing = dec.missing([w for w, _ in words])
        if missing:
            first = missing[0]
            where = next(line for w, line in words if w == first)
            place = f"JSGF grammar line {where}: word" if where is not None else "keyword word"
            lower = first.lower() != first and dec.ps.lookup_word(first.lower()) is not None
            hint = (f"write it in lower case ({first.lower()!r})" if lower else
                    f"use a word the dictionary has, or give its pronunciation with "
                    f"PocketSphinxASR(words={{{first!r}: 'PHONES'}})")
            others = f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else ""
            raise GrammarError(f"{place} {first!r} is not in the pronunciation dictionary{others}; {hint}")
        name = f"voicekit{next(self._names)}"
        if mode == "grammar":
            assert config.grammar is not None
            try:
                dec.ps.add_jsgf_string(name, config.grammar)
            except (ValueError, RuntimeError) as exc:
                raise GrammarError(f"pocketsphinx rejected the JSGF grammar ({exc}); run with "
                                   f"PocketSphinxASR(loglevel='INFO') to see its parser's message") from exc
        else:
            with tempfile.NamedTemporaryFile("w", suffix=".kws", delete=False, encoding="utf-8") as f:
                for kw in keywords:
                    f.write(f"{kw.phrase} /{kw.threshold:g}/\n")
            try:
                dec.ps.add_kws(name, f.name)
            except RuntimeError as exc:
                raise ASRError(f"pocketsphinx rejected the keywords {[k.phrase for k in keywords]} ({exc}); "
                               f"check each is a word or phrase of dictionary words") from exc
            finally:
                os.unlink(f.name)
        dec.ps.activate_search(name)
        dec.search = name
        return dec

    @staticmethod
    def _release(dec: _Decoder) -> None:
        """Worker thread: leave the decoder clean for the next stream."""
        if dec.in_utt:
            dec.ps.end_utt()
            dec.in_utt = False
        if dec.search is not None:
            if dec.has_lm:
                dec.ps.activate_search("dictation")
            dec.ps.remove_search(dec.search)
            dec.search = None

    @asynccontextmanager
    async def open_stream(self, config: ASRConfig) -> AsyncIterator[PocketSphinxStream]:
        if config.sample_rate != RATE:
            raise ASRError(
                f"pocketsphinx decodes 16000 Hz audio, not {config.sample_rate} Hz; resample first "
                f"(the session does it when the stream is opened with ASRConfig(sample_rate=16000))"
            )
        if config.language is not None and not self.custom_model \
                and not config.language.lower().replace("_", "-").startswith("en"):
            raise ASRError(f"pocketsphinx's bundled model is US English, not {config.language!r}; "
                           f"give another language's model with hmm=, dictionary= and lm=")
        config = self.effective_config(config)
        mode = self.mode_of(config)
        keywords: tuple[Keyword, ...] = ()
        words: list[tuple[str, int | None]] = []
        if mode == "grammar":
            assert config.grammar is not None
            words = [(w.text, w.line) for w in check_grammar(config.grammar).words]
        elif mode == "keywords":
            keywords = parse_keywords(config.keywords, self.kws_threshold)
            words = [(w, None) for kw in keywords for w in kw.phrase.split()]
        pooled = self._pool.take()
        try:
            dec = await self.run(self._prepare, pooled, mode, config, keywords, words)
        except BaseException:
            if pooled is not None:
                self._pool.give(pooled)
            raise
        stream = PocketSphinxStream(self, dec, mode)
        try:
            yield stream
        finally:
            stream._close()
            # decoder calls are never interrupted half-way (worker threads run to completion),
            # so whatever ended the stream, the decoder can be cleaned and used again
            with trio.CancelScope(shield=True):
                try:
                    await self.run(self._release, dec)
                    clean = True
                except Exception:
                    clean = False
            if clean:
                self._pool.give(dec)


@attrs.define
class _Utterance:
    uid: int
    start: float  # the speech_started marker
    feed_from: float  # audio earlier than this is not fed (start - preroll)
    end: float | None = None  # the speech_ended marker, once known
    origin: float | None = None  # stream time of the first sample fed to the decoder
    fed_until: float | None = None  # stream time just after the last sample fed
    since_partial: float = 0.0
    last_partial: str = ""


class PocketSphinxStream:
    """One recognition stream; see :mod:`voicekit.asr.base` for the calling protocol.

    Results wait in a bounded queue until read: a newer partial of an utterance replaces an
    unread older one, and if ``max_pending`` results are unread the oldest is dropped (and
    counted in ``dropped``), so memory stays flat even if nobody reads.
    """

    max_pending = 256

    def __init__(self, engine: PocketSphinxASR, dec: _Decoder, mode: Mode) -> None:
        self.engine = engine
        self.mode = mode
        self.dropped = 0
        self._dec = dec
        self._ring: collections.deque[AudioFrame] = collections.deque()
        self._ring_s = 2.0 + engine.preroll
        self._utt: _Utterance | None = None
        self._uids = itertools.count()
        self._results: collections.deque[TranscriptResult] = collections.deque()
        self._wake = trio.Event()
        self._finished = False
        self._closed = False
        self._lock = trio.Lock()

    # -- the ASRStream protocol ------------------------------------------------------------

    async def send_audio(self, frame: AudioFrame) -> None:
        if self._finished:
            raise ASRError("pocketsphinx stream: send_audio() after finish(); open a new stream")
        if frame.sample_rate != RATE:
            raise ASRError(f"pocketsphinx got a {frame.sample_rate} Hz frame but decodes 16000 Hz; "
                           f"resample the audio to 16000 Hz before sending it")
        if frame.channels != 1:
            frame = AudioFrame.from_array(frame.to_float_mono(), frame.sample_rate, frame.timestamp)
        async with self._lock:
            self._ring.append(frame)
            while self._ring and self._ring[0].end < frame.end - self._ring_s:
                self._ring.popleft()
            utt = self._utt
            if utt is not None:
                await self._feed(utt, [frame])

    async def speech_started(self, t: float) -> None:
        async with self._lock:
            if self._utt is not None:
                if self._utt.end is None:
                    return  # already in an utterance: a repeated start marker changes nothing
                await self._end_utterance(self._utt)  # a pending end the audio never reached
            utt = _Utterance(next(self._uids), t, max(0.0, t - self.engine.preroll))
            self._utt = utt
            await self._feed(utt, list(self._ring))

    async def speech_ended(self, t: float) -> None:
        async with self._lock:
            utt = self._utt
            if utt is None or utt.end is not None:
                return
            utt.end = max(t, utt.start)
            if utt.fed_until is not None and utt.fed_until >= utt.end - 1e-9:
                await self._end_utterance(utt)
            # otherwise the audio up to t has not arrived yet: send_audio ends it when it does

    async def finish(self) -> None:
        async with self._lock:
            if self._finished:
                return
            self._finished = True
            if self._utt is not None:
                await self._end_utterance(self._utt)
            self._closed = True
            self._wake.set()

    def __aiter__(self) -> PocketSphinxStream:
        return self

    async def __anext__(self) -> TranscriptResult:
        while True:
            if self._results:
                return self._results.popleft()
            if self._closed:
                raise StopAsyncIteration
            await self._wake.wait()
            self._wake = trio.Event()

    # -- internals -------------------------------------------------------------------------

    def _close(self) -> None:
        self._finished = self._closed = True
        self._utt = None
        self._wake.set()

    def _push(self, result: TranscriptResult) -> None:
        q = self._results
        if not result.is_final and q and not q[-1].is_final and q[-1].utterance_id == result.utterance_id:
            q[-1] = result
        else:
            if len(q) >= self.max_pending:
                drop = next((i for i, r in enumerate(q) if not r.is_final), 0)
                del q[drop]
                self.dropped += 1
            q.append(result)
        self._wake.set()

    async def _feed(self, utt: _Utterance, frames: list[AudioFrame]) -> None:
        """Feed the part of ``frames`` inside the utterance; end it if the end marker is reached."""
        chunks: list[bytes] = []
        first: float | None = None
        last: float | None = None
        for frame in frames:
            lo = max(frame.timestamp, utt.feed_from, utt.fed_until if utt.fed_until is not None else -1.0)
            hi = frame.end if utt.end is None else min(frame.end, utt.end)
            a = max(0, round((lo - frame.timestamp) * RATE))
            b = min(frame.samples, round((hi - frame.timestamp) * RATE))
            if b <= a:
                continue
            chunks.append(frame.pcm[a * SAMPLE_WIDTH : b * SAMPLE_WIDTH])
            if first is None:
                first = frame.timestamp + a / RATE
            last = frame.timestamp + b / RATE
        if chunks:
            assert first is not None and last is not None
            if utt.origin is None:
                utt.origin = first
            pcm = b"".join(chunks)
            utt.fed_until = last
            utt.since_partial += len(pcm) / _BYTES_PER_S
            want_partial = utt.since_partial >= self.engine.partial_interval
            if want_partial:
                utt.since_partial = 0.0
            hyp = await self.engine.run(self._process, pcm, want_partial, utt.origin)
            if hyp is not None and hyp[0] and hyp[0] != utt.last_partial:
                utt.last_partial = hyp[0]
                self._push(TranscriptResult(hyp[0], False, utt.uid, utt.start, utt.fed_until,
                                            hyp[1], language="en"))
        if utt.end is not None and utt.fed_until is not None and utt.fed_until >= utt.end - 1e-9:
            await self._end_utterance(utt)

    def _process(self, pcm: bytes, want_partial: bool, origin: float) \
            -> tuple[str, tuple[Word, ...]] | None:
        """Worker thread: feed audio, and read the hypothesis so far if asked."""
        dec = self._dec
        if not dec.in_utt:
            dec.ps.start_utt()
            dec.in_utt = True
        dec.ps.process_raw(pcm, False, False)
        if not want_partial:
            return None
        return self._hypothesis(origin)

    def _hypothesis(self, origin: float, final: bool = False) -> tuple[str, tuple[Word, ...]]:
        dec = self._dec.ps
        words = self._words(dec.seg(), origin, final)
        if self.mode == "keywords":
            return " ".join(w.text for w in words), words
        hyp = dec.hyp()
        text = " ".join(hyp.hypstr.split()) if hyp is not None else ""
        return text, words

    def _words(self, segments: Any, origin: float, final: bool) -> tuple[Word, ...]:
        out: list[Word] = []
        for seg in segments or ():
            text = seg.word.strip()
            if not text or text[0] in "<[(" or text.startswith("++"):
                continue  # silence, sentence markers, fillers and grammar null transitions
            text = re.sub(r"\(\d+\)$", "", text)  # alternate pronunciation marker: and(2)
            prob = getattr(seg, "prob", None) if final else None
            # posteriors come from a log table: 1.0001 is a rounded 1.0
            conf = None if prob is None or not 0.0 <= prob <= 1.001 else min(1.0, float(prob))
            out.append(Word(text, round(origin + seg.start_frame / FRAME_RATE, 3),
                            round(origin + (seg.end_frame + 1) / FRAME_RATE, 3), conf))
        return tuple(out)

    def _final(self, origin: float) -> tuple[str, tuple[Word, ...], float | None]:
        """Worker thread: end the decoder's utterance and read the result."""
        dec = self._dec
        dec.ps.end_utt()
        dec.in_utt = False
        text, words = self._hypothesis(origin, final=True)
        confidence: float | None = None
        if self.mode == "keywords":
            probs = [w.confidence for w in words if w.confidence is not None]
            confidence = min(probs) if probs else None
        elif text:
            hyp = dec.ps.hyp()
            if hyp is not None:
                confidence = min(1.0, max(0.0, float(hyp.prob)))
        return text, words, confidence

    async def _end_utterance(self, utt: _Utterance) -> None:
        self._utt = None
        end = utt.end if utt.end is not None else (utt.fed_until if utt.fed_until is not None else utt.start)
        if utt.origin is None or not self._dec.in_utt:
            self._push(TranscriptResult("", True, utt.uid, utt.start, end, language="en"))
            return
        text, words, confidence = await self.engine.run(self._final, utt.origin)
        self._push(TranscriptResult(text, True, utt.uid, utt.start, end, words,
                                    language="en", confidence=confidence))
