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

from collections.abc import Iterable, Sequence
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


def rejection(c: ASRCapabilities, req: Requirements) -> str | None:
    """Why ``c`` cannot meet ``req`` at all, or ``None``."""
    if req.live and c.mode == "file":
        return "works on whole files only (results after the upload), not live"
    if req.offline and not c.offline:
        return "a cloud service; offline was required"
    if req.language and req.language not in c.languages:
        return f"does not list language {req.language!r}"
    region = req.region_id()
    if region and not c.offline and c.regions and region not in c.regions:
        return f"not offered in {region} (only {', '.join(c.regions)})"
    if req.diarization and not c.diarization:
        return "no speaker diarization"
    if req.emotion and not c.emotion:
        return "no emotion labels"
    if req.semantic_interruption and not c.semantic_interruption:
        return "no semantic interruption"
    if req.openai_compatible and not c.openai_compatible:
        return "no OpenAI-compatible API"
    if req.openai_compatible and not c.feature_available("openai_compatible", region):
        return f"no OpenAI-compatible API in {region}"
    hotwords = _hotwords(c, region)
    if req.terms and req.terms_via == "hotwords" and not hotwords:
        return f"no hotword lists in {region}" if c.hotwords else "no hotword lists"
    if req.terms and req.terms_via == "context" and not c.prompt_context:
        return "no prompt context"
    if req.terms and req.terms_via == "any" and not (hotwords or c.prompt_context):
        return "no way to bias towards domain terms (neither hotwords nor prompt context)" + (
            f"; its hotword lists work only in {', '.join(_feature_regions(c, 'hotwords'))}" if c.hotwords else "")
    if not req.live and req.duration_s and c.max_duration_s is not None and c.mode == "file" \
            and req.duration_s > c.max_duration_s:
        return f"takes at most {c.max_duration_s / 3600:g} h per request"
    if req.file_bytes and c.max_file_bytes is not None and c.mode == "file" and req.file_bytes > c.max_file_bytes:
        return f"takes at most {c.max_file_bytes / 1024 ** 3:g} GB per file"
    return None


def _feature_regions(c: ASRCapabilities, feature: str) -> tuple[str, ...]:
    return next((r for n, r in c.feature_regions if n == feature), c.regions)


def _hotwords(c: ASRCapabilities, region: str | None) -> bool:
    return c.hotwords and c.feature_available("hotwords", region)


def score(c: ASRCapabilities, req: Requirements) -> tuple[float, tuple[str, ...]]:
    pts = 0.0
    why: list[str] = []
    if req.live:
        if c.mode == "streaming":
            pts += 3
            why.append("streams results while you speak")
        else:
            pts += 1
            why.append("near-real-time: text after each utterance")
        if c.partials:
            pts += 1
            why.append("partial results")
    else:
        if c.mode == "file":
            pts += 3
            why.append("built for recorded files (whole-file context, no streaming needed)")
        elif c.mode == "near-realtime":
            pts += 2.5
            why.append("a non-real-time request API (recordings in chunks, no WebSocket)")
        else:
            pts += 2
            why.append("can transcribe recordings by streaming them")
    if req.terms:
        if _hotwords(c, req.region_id()) and req.terms_via in ("any", "hotwords"):
            pts += 2
            why.append("hotword lists for the domain terms")
        elif c.prompt_context:
            pts += 2 if req.terms_via == "context" else 1.5
            why.append("prompt context for the domain terms")
    if req.diarization:
        why.append("labels speakers")
    if req.emotion:
        why.append("labels emotion")
    if c.word_timestamps:
        pts += 1 if req.word_timestamps else 0.25
        why.append("word timestamps")
    elif req.word_timestamps:
        why.append("no word timestamps")
    if c.measured_wer is not None:
        # accuracy breaks ties: up to half a point for a low measured error rate on read English
        pts += 0.5 * max(0.0, 1 - c.measured_wer / 0.15)
        why.append(f"{c.measured_wer:.0%} word error rate on read English (LibriVox)")
    if req.semantic_interruption:
        why.append("semantic interruption")
    if req.openai_compatible:
        why.append("OpenAI-compatible API")
    if "omni" in c.family and not (req.terms and req.terms_via == "context"):
        pts -= 1
        why.append("a conversational model used as a recognizer (no timestamps; may describe non-speech)")
    if c.offline:
        why.append("runs locally")
    if c.generation == "previous":
        why.append("the vendor's previous generation")
    elif c.generation == "legacy":
        why.append("a legacy model")
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
