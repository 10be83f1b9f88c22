"""The file-transcription models as voicekit ASR plugins (``mode="file"``).

Entry points ``fun-asr``, ``fun-asr-mtl``, ``paraformer-v2``, ``paraformer-8k-v2`` and
``qwen3-asr-flash-filetrans``. The stream writes the audio it is given to a temporary WAV file on
disk (never held in memory); at ``finish()`` the file is uploaded to the temporary store,
transcribed as an asynchronous task, and every sentence comes back as a final result with word
times, speaker (with ``diarization=True``), emotion and language where the model gives them.
VAD markers are ignored: the service segments the audio itself. No partials.
"""

from __future__ import annotations

import tempfile
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import trio

from voicekit.asr.base import ASRCapabilities, ASRConfig, TranscriptResult
from voicekit.audio.frame import AudioFrame
from voicekit.errors import ConfigError
from voicekit.plugins.options import Option
from voicekit_dashscope.client.files import FileTranscriber
from voicekit_dashscope.options import connection
from voicekit_dashscope.protocol.files import FILE_MODELS, FileModel, FileOptions
from voicekit_dashscope.regions import DEFAULT_REGION, check_model_region


def file_capabilities(spec: FileModel) -> ASRCapabilities:
    from voicekit_dashscope.asr.models import guide_record

    return guide_record(ASRCapabilities(
        name=spec.name, family=spec.family, mode="file", api="http", languages=spec.languages,
        hotwords=spec.vocabulary, prompt_context=spec.context_text, emotion=spec.emotion,
        diarization=spec.diarization, word_timestamps=True, partials=False,
        sample_rates=(spec.sample_rate,) if spec.sample_rate == 8000 else (16000, 8000, 24000, 44100, 48000),
        max_duration_s=spec.max_duration_s, max_file_bytes=spec.max_bytes, regions=spec.regions, offline=False,
        notes="asynchronous file task: results after the whole file" + (
            "; diarization recommended for audio up to 2 h" if spec.diarization else "")))


class _Stream:
    def __init__(self, owner: FileASR, config: ASRConfig, directory: str) -> None:
        self.owner = owner
        self.config = config
        self.path = Path(directory) / "audio.wav"
        self.wav = wave.open(str(self.path), "wb")
        self.wav.setnchannels(1)
        self.wav.setsampwidth(2)
        self.wav.setframerate(config.sample_rate)
        self._send, self._recv = trio.open_memory_channel[TranscriptResult](1024)

    async def send_audio(self, frame: AudioFrame) -> None:
        self.wav.writeframes(frame.pcm if frame.channels == 1 else frame.to_array()[:, 0].tobytes())

    async def speech_started(self, t: float) -> None:
        pass

    async def speech_ended(self, t: float) -> None:
        pass

    async def finish(self) -> None:
        from voicekit_dashscope.upload import transcribe_sources

        self.wav.close()
        o = self.owner
        options = FileOptions(vocabulary_id=o.vocabulary_id, diarization=o.diarization,
                              speaker_count=o.speaker_count, language=self.config.language or o.language,
                              context=(self.config.context or o.context) if o.spec.context_text else None)
        async with self._send:
            for res in await transcribe_sources(o.client, o.spec.name, [self.path], options, deadline=o.deadline):
                if res.transcript is not None:
                    for r in res.transcript.results():
                        await self._send.send(r)

    def __aiter__(self) -> AsyncIterator[TranscriptResult]:
        return self._recv.__aiter__()


class FileASR:
    capabilities: ClassVar[ASRCapabilities] = file_capabilities(FILE_MODELS["fun-asr"])
    spec: ClassVar[FileModel] = FILE_MODELS["fun-asr"]
    options: ClassVar[tuple[Option, ...]] = (
        *connection(),
        Option("diarization", "bool", False, "label speakers (models with diarization only)"),
        Option("speaker_count", "int", None, "expected number of speakers, with diarization", minimum=2,
               maximum=100),
        Option("vocabulary_id", "str", None, "hotword list id (voicekit hotwords create)"),
        Option("language", "str", None, "language code hint, e.g. en"),
        Option("context", "str", None, "context text: domain terms, names (qwen3-asr-flash-filetrans)"),
        Option("deadline", "float", 3600.0, "seconds to wait for the result", minimum=1.0),
        Option("poll_first", "float", 1.0, "first poll interval, seconds", minimum=0.01),
    )

    def __init__(self, api_key: Any = None, *, region: str = DEFAULT_REGION, workspace: str | None = None,
                 base_url: str | None = None, diarization: bool = False, speaker_count: int | None = None,
                 vocabulary_id: str | None = None, language: str | None = None, context: str | None = None,
                 deadline: float = 3600.0, poll_first: float = 1.0) -> None:
        check_model_region(self.spec.name, region)  # also with base_url: the region decides what the key reaches
        if diarization and not self.capabilities.diarization:
            raise ConfigError(f"{self.spec.name} has no diarization; use fun-asr or paraformer-v2")
        self.client = FileTranscriber(api_key, region=region, workspace=workspace, base_url=base_url,
                                      poll_first=poll_first)
        self.diarization = diarization
        self.speaker_count = speaker_count
        self.vocabulary_id = vocabulary_id
        self.language = language
        self.context = context
        self.deadline = deadline

    @asynccontextmanager
    async def open_stream(self, config: ASRConfig) -> AsyncIterator[_Stream]:
        with tempfile.TemporaryDirectory(prefix="vk-dashscope-file-") as tmp:
            stream = _Stream(self, config, tmp)
            try:
                yield stream
            finally:
                stream.wav.close()


def _plugin(name: str) -> type[FileASR]:
    spec = FILE_MODELS[name]
    return type(f"FileASR_{name.replace('-', '_').replace('.', '_')}", (FileASR,),
                {"capabilities": file_capabilities(spec), "spec": spec, "__module__": __name__})


FunASRFile = FileASR
FunASRMtlFile = _plugin("fun-asr-mtl")
ParaformerV2File = _plugin("paraformer-v2")
Paraformer8kV2File = _plugin("paraformer-8k-v2")
Qwen3FiletransFile = _plugin("qwen3-asr-flash-filetrans")
