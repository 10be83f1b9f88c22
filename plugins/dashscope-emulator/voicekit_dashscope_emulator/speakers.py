"""Speaker diarization of the emulated file API.

Diarization (``diarization_enabled``) is a simple, honest method, not a neural model: every
utterance gets a voice print — the mean and spread of its log energies in 24 mel-spaced bands,
with the utterance's mean level removed — and utterances are grouped by average-linkage
agglomerative clustering on cosine distance, into ``speaker_count`` groups when given, else until
the closest groups are further apart than ``speaker_threshold``. Speakers are numbered in order of
first appearance. It separates clearly different voices and recording conditions; it is not meant
for overlapping or similar voices.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from voicekit_dashscope_emulator.task import ENGINE_RATE


def _mel_bands(rate: int, n_fft: int, n_bands: int = 24) -> np.ndarray:
    def mel(f: np.ndarray | float) -> Any:
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    edges_mel = np.linspace(mel(80.0), mel(min(7600.0, rate / 2)), n_bands + 2)
    edges = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / rate)
    bank = np.zeros((n_bands, freqs.size), np.float32)
    for b in range(n_bands):
        lo, mid, hi = edges[b], edges[b + 1], edges[b + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        bank[b] = np.clip(np.minimum(up, down), 0.0, None)
    return bank



def voice_print(samples: np.ndarray, rate: int = ENGINE_RATE) -> np.ndarray:
    """Mean and spread of log mel-band energies over the louder frames, level removed."""
    a = samples.astype(np.float32) / 32768.0
    n_fft, hop = 512, rate // 100
    if a.size < n_fft:
        a = np.pad(a, (0, n_fft - a.size))
    count = 1 + (a.size - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(count)[:, None]
    frames = a[idx] * np.hanning(n_fft)[None, :]
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    logmel = np.log(power @ _mel_bands(rate, n_fft).T + 1e-10)
    energy = logmel.mean(axis=1)
    loud = logmel[energy >= np.percentile(energy, 40)] if count > 4 else logmel
    loud = loud - loud.mean(axis=1, keepdims=True)  # remove loudness, keep spectral shape
    return np.concatenate([loud.mean(axis=0), loud.std(axis=0)])



def cluster_speakers(prints: list[np.ndarray], speaker_count: int | None, threshold: float) -> list[int]:
    """Average-linkage agglomerative clustering on cosine distance; labels by first appearance."""
    n = len(prints)
    if n == 0:
        return []
    dist = _cosine_distances(prints)
    groups: list[list[int]] = [[i] for i in range(n)]
    target = min(speaker_count, n) if speaker_count else 1
    while len(groups) > target:
        best, (i, j) = _closest_pair(groups, dist)
        if speaker_count is None and best > threshold:
            break
        groups[i] += groups.pop(j)
    label_of = {m: g for g, members in enumerate(groups) for m in members}
    order: dict[int, int] = {}
    return [order.setdefault(label_of[i], len(order)) for i in range(n)]


def _cosine_distances(prints: list[np.ndarray]) -> np.ndarray:
    """Pairwise cosine distances of the prints, centred on their mean."""
    x = np.stack(prints)
    x = x - x.mean(axis=0)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-9
    return np.asarray(1.0 - x @ x.T)


def _closest_pair(groups: list[list[int]], dist: np.ndarray) -> tuple[float, tuple[int, int]]:
    """The two groups with the least average distance between their members (the first such pair)."""
    best, pair = math.inf, (0, 1)
    for i in range(len(groups)):
        for j in range(i + 1, len(groups)):
            d = float(dist[np.ix_(groups[i], groups[j])].mean())
            if d < best:
                best, pair = d, (i, j)
    return best, pair
