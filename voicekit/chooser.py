"""Pick a speech-recognition engine from the capability records of the installed ASR plugins.

::

    from voicekit.chooser import Requirements, choose
    pick = choose(Requirements(live=False, diarization=True, language="en", region="singapore"))
    print(pick.best.name, pick.explain())

Every installed ``voicekit.asr`` plugin publishes an :class:`~voicekit.asr.base.ASRCapabilities`
record. :func:`choose` first drops the engines that cannot meet a hard requirement (each with the
reason), then ranks the rest by how well they fit the soft ones, and explains the pick and the
runners-up. Nothing is hard-coded about particular engines: only their records are read.

Hard requirements: live vs. batch (a live session cannot use a whole-file engine), language,
region (cloud engines must be offered there; local engines run anywhere), offline, diarization,
emotion, semantic interruption, an OpenAI-compatible HTTP API, the audio's duration and size, and
— when domain terms are given with ``terms_via="hotwords"`` or ``"context"`` — that biasing
mechanism. A feature an engine offers only in some regions (``feature_regions``, e.g. hotwords in
the Chinese mainland only) counts only there.

Soft preferences (the score): the natural mode (streaming for live, file for batch, then a
non-real-time request API, then streaming a recording), partials for live use, a biasing
mechanism for domain terms, word timestamps, and a small penalty for conversational (Omni) models
used as plain recognizers — they describe non-speech sounds and give no timestamps — except when
prompt context was asked for, which is what those models are recommended for. Ties go to the
engine that runs locally, then to the vendor's current generation (then previous, then legacy),
then to the vendor's own order of recommendation; the name decides only between engines the
records cannot tell apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

import attrs

from voicekit.asr.base import ASRCapabilities
from voicekit.errors import NoEngineError as NoEngineError  # re-exported: it used to live here

REGION_ALIASES = {"beijing": "cn-beijing", "cn": "cn-beijing", "china": "cn-beijing", "singapore": "ap-southeast-1",
                  "sg": "ap-southeast-1", "intl": "ap-southeast-1", "us": "us-east-1", "virginia": "us-east-1"}


def _terms(x: Iterable[str]) -> tuple[str, ...]:
    return tuple(t for t in x if t)


@attrs.frozen
class Requirements:
    live: bool = True  # a live session (results while speaking) or a batch job on recorded files
    language: str | None = None
    terms: tuple[str, ...] = attrs.field(default=(), converter=_terms)  # domain words, names
    terms_via: Literal["any", "hotwords", "context"] = "any"
    diarization: bool = False
    emotion: bool = False
    word_timestamps: bool = False
    region: str | None = None
    duration_s: float | None = None
    file_bytes: int | None = None
    offline: bool = False  # must run on this machine
    semantic_interruption: bool = False  # the server decides interruptions by meaning
    openai_compatible: bool = False  # reachable through an OpenAI-compatible HTTP API

    def region_id(self) -> str | None:
        if self.region is None:
            return None
        r = self.region.strip().lower()
        return REGION_ALIASES.get(r, r)


@attrs.frozen
class Candidate:
    name: str
    capabilities: ASRCapabilities
    score: float
    reasons: tuple[str, ...]


@attrs.frozen
class Choice:
    best: Candidate
    runners_up: tuple[Candidate, ...]
    rejected: tuple[tuple[str, str], ...]

    def explain(self, runners_up: int = 3) -> str:
        lines = [f"best: {self.best.name} (score {self.best.score:g}) — " + "; ".join(self.best.reasons)]
        for c in self.runners_up[:runners_up]:
            tie = ""
            if c.score == self.best.score:
                tie = f" [tied; {self.best.name} wins the tie: {_tie_reason(self.best, c)}]"
            lines.append(f"runner-up: {c.name} (score {c.score:g}) — " + "; ".join(c.reasons) + tie)
        for name, why in self.rejected:
            lines.append(f"not suitable: {name} — {why}")
        return "\n".join(lines)


def _tie_reason(best: Candidate, other: Candidate) -> str:
    a, b = best.capabilities, other.capabilities
    if a.offline != b.offline:
        return "it runs locally"
    if a.generation != b.generation:
        return f"the vendor's {a.generation} generation, not {b.generation}"
    if a.vendor_rank != b.vendor_rank:
        return "listed first in the vendor's guide"
    return "by name (the records do not tell them apart)"


@attrs.frozen
class _Fit:
    """What the rules read: one engine's record against one set of requirements."""

    c: ASRCapabilities
    req: Requirements
    region: str | None  # the requested region, as a region id
    hotwords: bool  # the engine's hotword lists work in that region

    @classmethod
    def of(cls, c: ASRCapabilities, req: Requirements) -> _Fit:
        region = req.region_id()
        return cls(c, req, region, _hotwords(c, region))

    @property
    def terms_via(self) -> str | None:
        """How domain terms are to reach the engine, or ``None`` when no terms were given."""
        return self.req.terms_via if self.req.terms else None

    @property
    def regions(self) -> str:
        return ", ".join(self.c.regions)

    @property
    def hotword_regions(self) -> str:
        return ", ".join(_feature_regions(self.c, "hotwords"))

    @property
    def max_hours(self) -> float:
        return (self.c.max_duration_s or 0) / 3600

    @property
    def max_gigabytes(self) -> float:
        return (self.c.max_file_bytes or 0) / 1024 ** 3

    @property
    def context_terms(self) -> bool:
        """Domain terms given with ``terms_via="context"`` (what the Omni models are recommended for)."""
        return self.terms_via == "context"


Predicate = Callable[[_Fit], bool]

#: Hard requirements: (the engine cannot meet the requirements if ..., why — formatted with ``f``).
#: The first row that applies is the reason given.
REJECTIONS: tuple[tuple[Predicate, str], ...] = (
    (lambda f: f.req.live and f.c.mode == "file", "works on whole files only (results after the upload), not live"),
    (lambda f: f.req.offline and not f.c.offline, "a cloud service; offline was required"),
    (lambda f: bool(f.req.language) and f.req.language not in f.c.languages,
     "does not list language {f.req.language!r}"),
    (lambda f: bool(f.region) and not f.c.offline and bool(f.c.regions) and f.region not in f.c.regions,
     "not offered in {f.region} (only {f.regions})"),
    (lambda f: f.req.diarization and not f.c.diarization, "no speaker diarization"),
    (lambda f: f.req.emotion and not f.c.emotion, "no emotion labels"),
    (lambda f: f.req.semantic_interruption and not f.c.semantic_interruption, "no semantic interruption"),
    (lambda f: f.req.openai_compatible and not f.c.openai_compatible, "no OpenAI-compatible API"),
    (lambda f: f.req.openai_compatible and not f.c.feature_available("openai_compatible", f.region),
     "no OpenAI-compatible API in {f.region}"),
    (lambda f: f.terms_via == "hotwords" and f.c.hotwords and not f.hotwords, "no hotword lists in {f.region}"),
    (lambda f: f.terms_via == "hotwords" and not f.c.hotwords, "no hotword lists"),
    (lambda f: f.terms_via == "context" and not f.c.prompt_context, "no prompt context"),
    (lambda f: f.terms_via == "any" and f.c.hotwords and not (f.hotwords or f.c.prompt_context),
     "no way to bias towards domain terms (neither hotwords nor prompt context); its hotword lists work "
     "only in {f.hotword_regions}"),
    (lambda f: f.terms_via == "any" and not (f.hotwords or f.c.prompt_context),
     "no way to bias towards domain terms (neither hotwords nor prompt context)"),
    (lambda f: not f.req.live and bool(f.req.duration_s) and f.c.max_duration_s is not None
     and f.c.mode == "file" and (f.req.duration_s or 0) > f.c.max_duration_s,
     "takes at most {f.max_hours:g} h per request"),
    (lambda f: bool(f.req.file_bytes) and f.c.max_file_bytes is not None and f.c.mode == "file"
     and (f.req.file_bytes or 0) > f.c.max_file_bytes,
     "takes at most {f.max_gigabytes:g} GB per file"),
)


def rejection(c: ASRCapabilities, req: Requirements) -> str | None:
    """Why ``c`` cannot meet ``req`` at all, or ``None``."""
    fit = _Fit.of(c, req)
    return next((why.format(f=fit) for applies, why in REJECTIONS if applies(fit)), None)


def _feature_regions(c: ASRCapabilities, feature: str) -> tuple[str, ...]:
    return next((r for n, r in c.feature_regions if n == feature), c.regions)


def _hotwords(c: ASRCapabilities, region: str | None) -> bool:
    return c.hotwords and c.feature_available("hotwords", region)


def _wer_points(f: _Fit) -> float:
    # accuracy breaks ties: up to half a point for a low measured error rate on read English
    return 0.5 * max(0.0, 1 - (f.c.measured_wer or 0.0) / 0.15)


#: Soft preferences: (when, points — a number or a function of ``f``, the reason — formatted with ``f``).
#: Every row that applies adds its points and its reason, in this order.
PREFERENCES: tuple[tuple[Predicate, float | Callable[[_Fit], float], str], ...] = (
    (lambda f: f.req.live and f.c.mode == "streaming", 3, "streams results while you speak"),
    (lambda f: f.req.live and f.c.mode != "streaming", 1, "near-real-time: text after each utterance"),
    (lambda f: f.req.live and f.c.partials, 1, "partial results"),
    (lambda f: not f.req.live and f.c.mode == "file", 3,
     "built for recorded files (whole-file context, no streaming needed)"),
    (lambda f: not f.req.live and f.c.mode == "near-realtime", 2.5,
     "a non-real-time request API (recordings in chunks, no WebSocket)"),
    (lambda f: not f.req.live and f.c.mode not in ("file", "near-realtime"), 2,
     "can transcribe recordings by streaming them"),
    (lambda f: f.terms_via in ("any", "hotwords") and f.hotwords, 2, "hotword lists for the domain terms"),
    (lambda f: f.terms_via is not None and not (f.terms_via in ("any", "hotwords") and f.hotwords)
     and f.c.prompt_context, lambda f: 2 if f.context_terms else 1.5, "prompt context for the domain terms"),
    (lambda f: f.req.diarization, 0, "labels speakers"),
    (lambda f: f.req.emotion, 0, "labels emotion"),
    (lambda f: f.c.word_timestamps, lambda f: 1 if f.req.word_timestamps else 0.25, "word timestamps"),
    (lambda f: not f.c.word_timestamps and f.req.word_timestamps, 0, "no word timestamps"),
    (lambda f: f.c.measured_wer is not None, _wer_points,
     "{f.c.measured_wer:.0%} word error rate on read English (LibriVox)"),
    (lambda f: f.req.semantic_interruption, 0, "semantic interruption"),
    (lambda f: f.req.openai_compatible, 0, "OpenAI-compatible API"),
    (lambda f: "omni" in f.c.family and not f.context_terms, -1,
     "a conversational model used as a recognizer (no timestamps; may describe non-speech)"),
    (lambda f: f.c.offline, 0, "runs locally"),
    (lambda f: f.c.generation == "previous", 0, "the vendor's previous generation"),
    (lambda f: f.c.generation == "legacy", 0, "a legacy model"),
)


def score(c: ASRCapabilities, req: Requirements) -> tuple[float, tuple[str, ...]]:
    """How well ``c`` fits the soft preferences of ``req``: points, and the reasons in words."""
    fit = _Fit.of(c, req)
    pts = 0.0
    why: list[str] = []
    for applies, points, reason in PREFERENCES:
        if applies(fit):
            pts += points(fit) if callable(points) else points
            why.append(reason.format(f=fit))
    return pts, tuple(why)


def rank(engines: Iterable[tuple[str, ASRCapabilities]], req: Requirements) -> Choice:
    ok: list[Candidate] = []
    rejected: list[tuple[str, str]] = []
    for name, caps in engines:
        why = rejection(caps, req)
        if why is not None:
            rejected.append((name, why))
            continue
        pts, reasons = score(caps, req)
        ok.append(Candidate(name, caps, pts, reasons))
    if not ok:
        detail = "\n".join(f"  {n}: {w}" for n, w in rejected) or "  (no ASR plugin is installed)"
        raise NoEngineError("no installed ASR engine meets the requirements; relax one of them or install "
                            f"another plugin:\n{detail}")
    ok.sort(key=_tie_order)
    return Choice(ok[0], tuple(ok[1:]), tuple(rejected))


GENERATIONS = ("current", "previous", "legacy")


def _tie_order(c: Candidate) -> tuple[float, bool, int, float, str]:
    caps = c.capabilities
    rank = float("inf") if caps.vendor_rank is None else float(caps.vendor_rank)
    gen = GENERATIONS.index(caps.generation) if caps.generation in GENERATIONS else len(GENERATIONS)
    return (-c.score, not caps.offline, gen, rank, c.name)


def installed_engines() -> list[tuple[str, ASRCapabilities]]:
    """(name, capabilities) of every installed ASR plugin that loads and publishes a record."""
    from voicekit.plugins import list_plugins

    out = []
    for info in list_plugins("asr"):
        caps = info.capabilities
        if info.error is None and isinstance(caps, ASRCapabilities):
            out.append((info.name, caps))
    return out


def choose(req: Requirements, engines: Sequence[tuple[str, ASRCapabilities]] | None = None) -> Choice:
    return rank(installed_engines() if engines is None else engines, req)


COLUMNS = ("name", "mode", "api", "langs", "hotwords", "context", "emotion", "diarize", "words", "semantic",
           "max dur", "max file", "regions", "generation", "offline")


def _yes(b: bool) -> str:
    return "yes" if b else "-"


def _duration(s: float | None) -> str:
    if not s:
        return "-"
    return f"{s / 3600:g} h" if s >= 3600 else f"{s / 60:g} min" if s >= 60 else f"{s:g} s"


def table_rows(engines: Sequence[tuple[str, ASRCapabilities]] | None = None) -> list[dict[str, Any]]:
    rows = []
    for name, c in (installed_engines() if engines is None else engines):
        hot = _yes(c.hotwords)
        if c.hotwords and _feature_regions(c, "hotwords") != c.regions:
            hot = ",".join(_feature_regions(c, "hotwords")) + " only"
        rows.append({"name": name, "mode": c.mode, "api": "openai-http" if c.openai_compatible else c.api,
                     "langs": len(c.languages),
                     "hotwords": hot, "context": _yes(c.prompt_context), "emotion": _yes(c.emotion),
                     "diarize": _yes(c.diarization), "words": _yes(c.word_timestamps),
                     "semantic": _yes(c.semantic_interruption), "generation": c.generation,
                     "max dur": _duration(c.max_duration_s),
                     "max file": f"{c.max_file_bytes / 1024 ** 2:g} MB" if c.max_file_bytes else "-",
                     "regions": ",".join(c.regions) or "local", "offline": _yes(c.offline)})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) if rows else len(k) for k in COLUMNS}
    lines = ["  ".join(k.ljust(widths[k]) for k in COLUMNS)]
    lines += ["  ".join(str(r[k]).ljust(widths[k]) for k in COLUMNS) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
