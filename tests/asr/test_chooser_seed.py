"""The vendor's guide to choosing a speech model, walked row by row against the capability records
and against ``voicekit choose`` (the CLI, as a user runs it).

Each row of the guide's comparison table (``voicekit_dashscope.asr.models.GUIDE``) is checked
twice: the published record of the model says what the row says (mode, API, accuracy enhancement
with its region scope, emotion, diarization, languages, maximum duration, regions), and
``voicekit choose --json`` keeps the model when asked for what the row offers and drops it, with
the reason, when asked for what the row lacks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from voicekit_dashscope.asr import models as M
from voicekit_dashscope.asr.task import ParaformerRealtime
from voicekit_dashscope.regions import AVAILABILITY, model_regions

from voicekit.asr.base import ASRCapabilities
from voicekit.plugins import list_plugins

VOICEKIT = str(Path(sys.executable).with_name("voicekit"))
ENTRY = {"paraformer-realtime-v2": "paraformer-realtime"}  # model → the entry point that serves it


def record(model: str) -> ASRCapabilities:
    """The published record: the entry point's, or (8 kHz Paraformer) the plugin's per-model one."""
    for info in list_plugins("asr"):
        if info.name == ENTRY.get(model, model) and isinstance(info.capabilities, ASRCapabilities):
            return info.capabilities
    return {c.name: c for c in ParaformerRealtime.models()}[model]


def choose(*args: str) -> dict[str, Any]:
    r = subprocess.run([VOICEKIT, "choose", "--json", *args], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        return {"best": None, "runners_up": [], "rejected": [], "error": r.stderr}
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def kept(answer: dict[str, Any]) -> list[str]:
    return [answer["best"], *(c["name"] for c in answer["runners_up"])] if answer["best"] else []


def why_dropped(answer: dict[str, Any], name: str) -> str:
    for r in answer["rejected"]:
        if r["name"] == name:
            return str(r["why"])
    for line in answer.get("error", "").splitlines():  # nothing fits: the error lists every engine
        if line.startswith(f"  {name}: "):
            return line.split(": ", 1)[1]
    return ""


def test_the_guide_has_fourteen_rows_in_its_order() -> None:
    assert len(M.GUIDE) == 14
    assert [r.model for r in M.GUIDE if r.advantage and r.mode == M.REAL_TIME] == list(M.REAL_TIME_PICKS)
    assert [r.model for r in M.GUIDE if r.advantage and r.mode == M.NON_REAL_TIME] == [
        "fun-asr", "qwen3-asr-flash-filetrans", "qwen3.5-omni-plus", "qwen3.5-omni-flash", "qwen3-omni-flash"]


@pytest.mark.parametrize("row", M.GUIDE, ids=[r.model for r in M.GUIDE])
def test_record_agrees_with_the_guide_row(row: M.GuideRow) -> None:
    c = record(row.model)
    assert c.name == row.model
    assert (c.mode == "streaming") == (row.mode == M.REAL_TIME)
    assert c.api == {"WebSocket": "websocket", "Asynchronous REST": "http",
                     "HTTP (OpenAI-compatible)": "http"}[row.api]
    assert c.openai_compatible == (row.api == M.OPENAI_HTTP)
    if row.api == M.ASYNC_REST:
        assert c.mode == "file"
    assert c.hotwords == row.enhancement.startswith("Hotword")
    assert c.prompt_context == (row.enhancement == "Prompt context")
    if row.enhancement == "Hotword (Chinese mainland only)":
        assert c.feature_available("hotwords", "cn-beijing")
        assert not c.feature_available("hotwords", "ap-southeast-1")
    elif c.hotwords:
        assert all(c.feature_available("hotwords", r) for r in c.regions)
    assert c.emotion == (row.emotion == "Supported")
    assert c.diarization == (row.diarization == "Supported")
    langs = M.guide_languages(row.languages)
    if isinstance(langs, int):
        assert len(set(c.languages) - M.DIALECT_CODES) == langs or f"{row.languages} in all" in c.notes
    else:
        assert set(c.languages) - M.DIALECT_CODES == set(langs)
    if row.max_duration == "Streaming":
        assert c.max_duration_s is None
    elif row.max_duration == "12 hours / 2 GB":
        assert (c.max_duration_s, c.max_file_bytes) == (12 * 3600, 2 * 1024 ** 3)
    elif row.max_duration == "120 minutes":
        assert c.max_duration_s == 120 * 60
    else:  # a per-request limit
        assert c.mode == "near-realtime" and c.max_duration_s is not None
    assert c.regions == model_regions(row.model) and c.regions
    assert c.generation == ("legacy" if row.model.startswith("paraformer") else
                            "previous" if "previous generation" in row.series else "current")
    if "semantic interruption" in row.advantage:
        assert c.semantic_interruption


def _region_of(row: M.GuideRow) -> str:
    return "beijing" if "cn-beijing" in model_regions(row.model) else "singapore"


@pytest.mark.slow
@pytest.mark.parametrize("row", [r for r in M.GUIDE if r.model != "paraformer-realtime-8k-v2"],
                         ids=[r.model for r in M.GUIDE if r.model != "paraformer-realtime-8k-v2"])
def test_voicekit_choose_agrees_with_the_guide_row(row: M.GuideRow) -> None:
    name = ENTRY.get(row.model, row.model)
    base = [] if row.mode == M.REAL_TIME else ["--batch"]
    region = ["--region", _region_of(row)]
    lang = M.guide_languages(row.languages)
    lang_args = ["--language", lang[0] if isinstance(lang, tuple) else "en"]
    offers = [*base, *region, *lang_args]
    if row.emotion == "Supported":
        offers.append("--emotion")
    if row.diarization == "Supported":
        offers.append("--diarize")
    if row.enhancement.startswith("Hotword"):
        offers += ["--terms", "Dashwood", "--terms-via", "hotwords"]
    if row.enhancement == "Prompt context":
        offers += ["--terms", "Dashwood", "--terms-via", "context"]
    if row.api == M.OPENAI_HTTP:
        offers.append("--openai-compatible")
    assert name in kept(choose(*offers)), choose(*offers)
    # asking for what the row lacks drops it, with the reason
    if row.emotion != "Supported":
        assert why_dropped(choose(*base, *region, "--emotion"), name) == "no emotion labels"
    if row.diarization != "Supported":
        assert why_dropped(choose(*base, *region, "--diarize"), name) == "no speaker diarization"
    if not row.enhancement.startswith("Hotword"):
        assert "no hotword lists" in why_dropped(choose(*base, *region, "--terms", "X", "--terms-via", "hotwords"),
                                                 name)
    if row.enhancement != "Prompt context":
        assert why_dropped(choose(*base, *region, "--terms", "X", "--terms-via", "context"), name) == \
            "no prompt context"
    if row.enhancement == "Hotword (Chinese mainland only)":
        assert why_dropped(choose(*base, "--region", "singapore", "--terms", "X", "--terms-via", "hotwords"),
                           name) == "no hotword lists in ap-southeast-1"
    if row.api != M.OPENAI_HTTP:
        assert why_dropped(choose(*base, *region, "--openai-compatible"), name) == "no OpenAI-compatible API"
    if row.mode == M.NON_REAL_TIME and row.api == M.ASYNC_REST:
        assert "not live" in why_dropped(choose(*region), name)
    assert "not offered in us-east-1" in why_dropped(choose(*base, "--region", "us"), name)


# -- the guide's two questions ---------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize(("args", "best"), [
    # real-time or not, with domain terms: prompt context (most flexible) → Qwen3.5-Omni
    (["--terms", "Dashwood", "--terms-via", "context"], "qwen3.5-omni-plus-realtime"),
    (["--batch", "--terms", "Dashwood", "--terms-via", "context"], "qwen3.5-omni-plus"),
    # hotwords (stable vocabularies) → Fun-ASR; real-time hotwords only in the Chinese mainland
    (["--terms", "Dashwood", "--terms-via", "hotwords", "--region", "beijing"], "fun-asr-realtime"),
    (["--batch", "--terms", "Dashwood", "--terms-via", "hotwords"], "fun-asr"),
    (["--batch", "--terms", "Dashwood", "--terms-via", "hotwords", "--region", "beijing"], "fun-asr"),
    # semantic interruption and an OpenAI-compatible API
    (["--semantic-interruption"], "qwen3.5-omni-plus-realtime"),
    (["--batch", "--openai-compatible", "--terms", "Dashwood", "--terms-via", "context"], "qwen3.5-omni-plus"),
    # diarization: only the non-real-time Fun-ASR models; emotion: Qwen3-ASR
    (["--batch", "--diarize", "--region", "singapore"], "fun-asr"),
    (["--batch", "--emotion", "--language", "en"], "qwen3-asr-flash-filetrans"),
    (["--emotion", "--region", "singapore"], "qwen3-asr-flash-realtime"),
    # the US region: only qwen3-asr-flash (non-real-time)
    (["--batch", "--region", "us"], "qwen3-asr-flash"),
])
def test_the_guides_two_questions(args: list[str], best: str) -> None:
    answer = choose(*args)
    assert answer["best"] == best, answer


@pytest.mark.slow
def test_ties_go_to_the_current_generation_not_to_the_alphabet() -> None:
    """qwen3-omni-flash-realtime sorts before qwen3.5-omni-* by name; the guide's current generation wins."""
    answer = choose("--terms", "X", "--terms-via", "context")
    order = kept(answer)
    assert order.index("qwen3.5-omni-plus-realtime") < order.index("qwen3.5-omni-flash-realtime") < \
        order.index("qwen3-omni-flash-realtime")
    scores = {c["name"]: c["score"] for c in answer["runners_up"]}
    assert scores["qwen3-omni-flash-realtime"] == scores["qwen3.5-omni-flash-realtime"]  # a real tie
    # legacy Paraformer ties with Fun-ASR in Beijing and loses the tie
    answer = choose("--terms", "X", "--terms-via", "hotwords", "--region", "beijing")
    assert answer["best"] == "fun-asr-realtime"
    best_score = next(c["score"] for c in answer["runners_up"] if c["name"] == "paraformer-realtime")
    assert best_score == max(c["score"] for c in answer["runners_up"])  # tied with the pick, legacy loses
    text = subprocess.run([VOICEKIT, "choose", "--terms", "X", "--terms-via", "context"], capture_output=True,
                          text=True, timeout=120).stdout
    assert "the vendor's current generation, not previous" in text


@pytest.mark.slow
def test_us_offers_nothing_real_time_and_hotwords_need_the_mainland() -> None:
    assert AVAILABILITY["us-east-1"] == {"qwen3-asr-flash-us", "qwen3-asr-flash-2025-09-08-us"}
    r = subprocess.run([VOICEKIT, "choose", "--region", "us", "--openai-compatible"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert "qwen3-asr-flash: no OpenAI-compatible API in us-east-1" in r.stderr
    r = subprocess.run([VOICEKIT, "choose", "--region", "singapore", "--terms", "X", "--terms-via", "hotwords"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "fun-asr-realtime: no hotword lists in ap-southeast-1" in r.stderr


@pytest.mark.slow
def test_models_table_shows_the_guide_columns() -> None:
    out = subprocess.run([VOICEKIT, "models"], capture_output=True, text=True, timeout=120).stdout
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["name", "mode", "api"] and "generation" in header and "semantic" in header
    line = {r.split()[0]: r for r in rows}
    assert "cn-beijing only" in line["fun-asr-realtime"]
    assert "openai-http" in line["qwen3.5-omni-plus"] and "previous" in line["qwen3-omni-flash"]
    assert "legacy" in line["paraformer-v2"]
