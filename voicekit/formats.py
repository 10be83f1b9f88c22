"""Transcript output formats: txt, json, srt, vtt, rttm."""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs

from voicekit.asr.base import TranscriptResult

FORMATS = ("txt", "json", "srt", "vtt", "rttm")


def _stamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _spans(segments: Sequence[TranscriptResult]) -> list[tuple[float, float, TranscriptResult]]:
    out = []
    for seg in segments:
        start = seg.start or 0.0
        end = seg.end if seg.end is not None else start
        out.append((start, max(end, start), seg))
    return out


def _label(seg: TranscriptResult) -> str:
    return f"[{seg.speaker}] " if seg.speaker else ""


def render(segments: Sequence[TranscriptResult], fmt: str, *, source: str = "audio") -> str:
    """Render final transcript segments of one file in ``fmt``."""
    segments = [s for s in segments if s.is_final and s.text.strip()]
    if fmt == "txt":
        return "".join(f"{_label(s)}{s.text.strip()}\n" for s in segments)
    if fmt == "json":
        return json.dumps({"file": source, "segments": [attrs.asdict(s) for s in segments]},
                          ensure_ascii=False, indent=2) + "\n"
    if fmt == "srt":
        blocks = [f"{i}\n{_stamp(a, ',')} --> {_stamp(b, ',')}\n{_label(s)}{s.text.strip()}\n"
                  for i, (a, b, s) in enumerate(_spans(segments), 1)]
        return "\n".join(blocks)
    if fmt == "vtt":
        blocks = [f"{_stamp(a, '.')} --> {_stamp(b, '.')}\n"
                  + (f"<v {s.speaker}>" if s.speaker else "") + f"{s.text.strip()}\n"
                  for a, b, s in _spans(segments)]
        return "WEBVTT\n\n" + "\n".join(blocks)
    if fmt == "rttm":
        name = source.rsplit("/", 1)[-1].rsplit(".", 1)[0].replace(" ", "_") or "audio"
        return "".join(
            f"SPEAKER {name} 1 {a:.3f} {b - a:.3f} <NA> <NA> {s.speaker or 'speaker_0'} <NA> <NA>\n"
            for a, b, s in _spans(segments))
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
