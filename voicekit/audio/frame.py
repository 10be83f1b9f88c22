"""The one audio value type that flows between stages."""

from __future__ import annotations

import attrs
import numpy as np
import numpy.typing as npt

SAMPLE_WIDTH = 2  # bytes; voicekit moves PCM int16 little-endian everywhere


def _check_pcm(instance: AudioFrame, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if len(value) % (SAMPLE_WIDTH * instance.channels):
        raise ValueError(
            f"PCM length {len(value)} is not a whole number of {instance.channels}-channel int16 samples"
        )


@attrs.frozen
class AudioFrame:
    """A chunk of PCM int16 little-endian audio.

    ``timestamp`` is the position of the first sample in the stream, in seconds of audio
    (not wall time), so a frame can be placed on the audio timeline exactly.
    """

    pcm: bytes = attrs.field(validator=_check_pcm, repr=lambda b: f"<{len(b)} bytes>")
    sample_rate: int = attrs.field(validator=attrs.validators.gt(0))
    channels: int = attrs.field(default=1, validator=attrs.validators.gt(0))
    timestamp: float = 0.0

    @classmethod
    def trusted(cls, pcm: bytes, sample_rate: int, channels: int = 1, timestamp: float = 0.0) -> AudioFrame:
        """A frame built without the validators, for voicekit's own hot paths, whose values are
        known to be valid (whole int16 samples, positive rate and channel count). Everyone else
        calls the class as usual."""
        frame = _new(cls)
        _set_pcm(frame, pcm)
        _set_rate(frame, sample_rate)
        _set_channels(frame, channels)
        _set_timestamp(frame, timestamp)
        return frame

    @property
    def samples(self) -> int:
        """Samples per channel."""
        return len(self.pcm) // (SAMPLE_WIDTH * self.channels)

    @property
    def duration(self) -> float:
        return self.samples / self.sample_rate

    @property
    def end(self) -> float:
        return self.timestamp + self.duration

    def to_array(self) -> npt.NDArray[np.int16]:
        """Samples as an int16 array of shape (samples, channels)."""
        return np.frombuffer(self.pcm, dtype="<i2").reshape(-1, self.channels)

    def to_float_mono(self) -> npt.NDArray[np.float32]:
        """Mono float32 samples in [-1, 1] (channels averaged)."""
        a = self.to_array().astype(np.float32)
        if self.channels > 1:
            a = a.mean(axis=1, keepdims=True)
        return (a[:, 0] / 32768.0).astype(np.float32)

    @classmethod
    def from_array(cls, samples: npt.NDArray[np.generic], sample_rate: int, timestamp: float = 0.0) -> AudioFrame:
        """Build a frame from int16 samples, or float samples in [-1, 1].

        A 1-D array is mono; a 2-D array is (samples, channels).
        """
        a = np.asarray(samples)
        if a.dtype.kind == "f":
            a = np.clip(a, -1.0, 1.0) * 32767.0
            a = np.round(a)
        a = a.astype("<i2")
        channels = 1 if a.ndim == 1 else a.shape[1]
        return cls(a.tobytes(), sample_rate, channels, timestamp)

    def split(self, samples_per_chunk: int) -> list[AudioFrame]:
        """Cut into chunks of ``samples_per_chunk`` (the last one may be shorter)."""
        step = samples_per_chunk * SAMPLE_WIDTH * self.channels
        return [
            AudioFrame.trusted(self.pcm[i : i + step], self.sample_rate, self.channels,
                       self.timestamp + (i // (SAMPLE_WIDTH * self.channels)) / self.sample_rate)
            for i in range(0, len(self.pcm), step)
        ]


# the slot setters, looked up once: AudioFrame.trusted runs once per VAD frame on the live path
_new = object.__new__
_set_pcm = AudioFrame.__dict__["pcm"].__set__
_set_rate = AudioFrame.__dict__["sample_rate"].__set__
_set_channels = AudioFrame.__dict__["channels"].__set__
_set_timestamp = AudioFrame.__dict__["timestamp"].__set__
