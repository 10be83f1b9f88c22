"""What each task-protocol model can do, as data (the model chooser reads these records).

Where the documentation conflicts (Fun-ASR sample rates and language list, Fun-ASR hotwords in
Singapore) the safer reading is recorded and the conflict is noted in ``notes``.
"""

from __future__ import annotations

import attrs

from voicekit.asr.base import ASRCapabilities
from voicekit.errors import ConfigError

FUN_ASR_LANGS = ("zh", "en", "ja")
PARAFORMER_LANGS = ("zh", "en", "ja", "yue", "ko", "de", "fr", "ru")


@attrs.frozen
class ModelSpec:
    name: str
    family: str
    sample_rates: tuple[int, ...]
    languages: tuple[str, ...]
    regions: tuple[str, ...]
    hotwords: bool = True
    context: bool = False
    emotion: bool = False
    special_word_filter: bool = False
    disfluency_removal: bool = False
    noise_threshold: bool = False
    any_rate: bool = False  # accepts any sample rate (Paraformer v2)
    notes: str = ""

    def capabilities(self) -> ASRCapabilities:
        return ASRCapabilities(
            name=self.name, family=self.family, mode="streaming", api="websocket",
            languages=self.languages, hotwords=self.hotwords, prompt_context=self.context,
            emotion=self.emotion, word_timestamps=True, partials=True, sample_rates=self.sample_rates,
            regions=self.regions, offline=False, server_endpointing=True, notes=self.notes)


BJ, SG = "cn-beijing", "ap-southeast-1"
_FUN_NOTE = ("docs conflict on sample rate (16 kHz vs any) and languages (3 vs 31); "
             "16 kHz and zh/en/ja are the safe choice")

MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec("fun-asr-realtime", "fun-asr", (16000,), FUN_ASR_LANGS, (BJ, SG), context=True,
              special_word_filter=True, noise_threshold=True,
              notes="stable alias (currently the 2025-11-07 snapshot); " + _FUN_NOTE),
    ModelSpec("fun-asr-realtime-2025-11-07", "fun-asr", (16000,), FUN_ASR_LANGS, (BJ, SG), context=True,
              special_word_filter=True, noise_threshold=True, notes=_FUN_NOTE),
    ModelSpec("fun-asr-realtime-2026-02-28", "fun-asr", (16000,), FUN_ASR_LANGS, (BJ,),
              special_word_filter=True, noise_threshold=True, notes="latest snapshot; Beijing only"),
    ModelSpec("fun-asr-realtime-2025-09-15", "fun-asr", (16000,), ("zh", "en"), (BJ,),
              special_word_filter=True, noise_threshold=True, notes="Beijing only"),
    ModelSpec("fun-asr-flash-8k-realtime", "fun-asr", (8000,), ("zh",), (BJ,), hotwords=False,
              noise_threshold=True, notes="8 kHz telephony; hotword support undocumented"),
    ModelSpec("paraformer-realtime-v2", "paraformer", (8000, 16000, 22050, 24000, 44100, 48000),
              PARAFORMER_LANGS, (BJ,), disfluency_removal=True, any_rate=True,
              notes="any sample rate; Beijing only"),
    ModelSpec("paraformer-realtime-8k-v2", "paraformer", (8000,), ("zh",), (BJ,), emotion=True,
              disfluency_removal=True,
              notes="8 kHz telephony; emotion tag on final sentences when semantic punctuation is off"),
)}


def get_model(name: str, family: str | None = None) -> ModelSpec:
    spec = MODELS.get(name)
    if spec is None or (family is not None and spec.family != family):
        known = ", ".join(n for n, m in MODELS.items() if family is None or m.family == family)
        raise ConfigError(f"unknown {family or 'DashScope'} real-time model {name!r}; use one of: {known}")
    return spec
