"""The model chooser over the DashScope plugin's capability records (plus one local engine).

Each row is a requirement set and the engine the protocol documents make the right pick:
diarization only in Fun-ASR/paraformer file transcription (paraformer in Beijing only), emotion
in the Qwen3-ASR family, hotwords in Fun-ASR/paraformer, prompt context in Qwen3.5-Omni, the
US region offering only qwen3-asr-flash, and the 12-hour file limit.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from importlib.metadata import distribution

import pytest

from voicekit.asr.base import ASRCapabilities
from voicekit.chooser import NoEngineError, Requirements, choose, format_table, table_rows
from voicekit.plugins import load

LOCAL = ASRCapabilities(name="local-en", family="local", mode="streaming", api="local", languages=("en",),
                        offline=True)


def _engines() -> list[tuple[str, ASRCapabilities]]:
    eps = [ep for ep in distribution("voicekit-dashscope").entry_points if ep.group == "voicekit.asr"]
    return [(ep.name, load("asr", ep.name).capabilities) for ep in eps] + [("local-en", LOCAL)]


CASES = [
    (Requirements(live=True, language="en", region="singapore"), "fun-asr-realtime"),
    (Requirements(live=False, diarization=True, language="en", region="singapore"), "fun-asr"),
    # the guide lists Chinese, English, Japanese (and dialects) for fun-asr: Korean goes to fun-asr-mtl
    (Requirements(live=False, diarization=True, language="ko", region="beijing", duration_s=3600), "fun-asr-mtl"),
    (Requirements(live=False, emotion=True, language="en"), "qwen3-asr-flash-filetrans"),
    (Requirements(live=True, emotion=True, region="singapore"), "qwen3-asr-flash-realtime"),
    (Requirements(live=True, terms=("Dashwood",), terms_via="hotwords", language="ko", region="beijing"),
     "paraformer-realtime"),
    (Requirements(live=True, language="de", region="us"), "qwen3-asr-flash"),
    # prompt context: the guide's answer is Qwen3.5-Omni (it lists no accuracy enhancement for Qwen3-ASR)
    (Requirements(live=False, terms=("Dashwood",), terms_via="context", language="en", region="singapore"),
     "qwen3.5-omni-plus"),
    (Requirements(live=True, language="en", offline=True), "local-en"),
    # in the US only qwen3-asr-flash is offered: a recording goes through it in short chunks
    (Requirements(live=False, emotion=True, region="us", duration_s=3600), "qwen3-asr-flash"),
    (Requirements(live=False, language="zh", region="beijing", word_timestamps=True, diarization=True,
                  terms=("阿里",), terms_via="hotwords"), "fun-asr"),
]


@pytest.mark.parametrize(("req", "expected"), CASES)
def test_choose_table(req: Requirements, expected: str) -> None:
    pick = choose(req, _engines())
    assert pick.best.name == expected, pick.explain()
    assert all(c.score <= pick.best.score for c in pick.runners_up)
    assert pick.best.reasons and expected in pick.explain()


@pytest.mark.parametrize(("req", "why"), [
    (Requirements(live=True, diarization=True), "no speaker diarization"),
    (Requirements(live=False, diarization=True, duration_s=13 * 3600), "at most 12 h"),
    (Requirements(live=False, diarization=True, region="us"), "not offered in us-east-1"),
    (Requirements(offline=True, language="zh"), "cloud service"),
])
def test_impossible_requirements_explain_every_engine(req: Requirements, why: str) -> None:
    with pytest.raises(NoEngineError, match="no installed ASR engine meets the requirements") as exc:
        choose(req, _engines())
    assert why in str(exc.value)
    assert str(exc.value).count("\n") == len(_engines())


def test_models_table_and_cli_read_the_same_records() -> None:
    rows = table_rows(_engines())
    names = [r["name"] for r in rows]
    assert {"fun-asr", "paraformer-v2", "qwen3-asr-flash-filetrans", "qwen3-asr-flash",
            "qwen3.5-omni-plus"} <= set(names)
    row = rows[names.index("qwen3-asr-flash")]
    assert (row["mode"], row["emotion"], row["max dur"], row["regions"]) == (
        "near-realtime", "yes", "5 min", "cn-beijing,ap-southeast-1,us-east-1")
    assert format_table(rows).splitlines()[0].split()[:3] == ["name", "mode", "api"]

    from voicekit.cli.choose import register, register_models

    parser = argparse.ArgumentParser(prog="voicekit")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    register_models(sub)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert parser.parse_args(["models", "--json"]).func(parser.parse_args(["models", "--json"])) == 0
    assert {"fun-asr", "qwen3-asr-flash"} <= {r["name"] for r in json.loads(out.getvalue())}
    out = io.StringIO()
    args = parser.parse_args(["choose", "--batch", "--emotion", "--language", "en", "--json"])
    with contextlib.redirect_stdout(out):
        assert args.func(args) == 0
    assert json.loads(out.getvalue())["best"] == "qwen3-asr-flash-filetrans"


def test_measured_accuracy_breaks_ties_between_local_engines() -> None:
    engines = [(name, load("asr", name).capabilities) for name in ("moonshine", "pocketsphinx")]
    pick = choose(Requirements(live=True, language="en", offline=True), engines)
    assert pick.best.name == "moonshine", pick.explain()
    assert "word error rate" in pick.explain()
