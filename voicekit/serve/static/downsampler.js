// Float audio at the device rate -> 16-bit PCM at a target rate (16 kHz), in fixed-size chunks.
// Loaded twice: as a classic script by the page (ScriptProcessor fallback) and as a module by the
// AudioWorklet, so it only defines a global.
"use strict";

globalThis.VoicekitDownsampler = class VoicekitDownsampler {
  constructor(inRate, outRate = 16000, chunkMs = 20, taps = 63) {
    this.step = inRate / outRate;
    this.chunk = Math.round((outRate * chunkMs) / 1000);
    // low-pass below the output Nyquist (windowed sinc, Blackman window), unity gain at DC
    const fc = 0.45 * Math.min(1, outRate / inRate); // cycles per input sample
    const mid = (taps - 1) / 2;
    this.h = new Float32Array(taps);
    let sum = 0;
    for (let k = 0; k < taps; k++) {
      const x = k - mid;
      const sinc = x === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * x) / (Math.PI * x);
      const w = 0.42 - 0.5 * Math.cos((2 * Math.PI * k) / (taps - 1)) + 0.08 * Math.cos((4 * Math.PI * k) / (taps - 1));
      this.h[k] = sinc * w;
      sum += this.h[k];
    }
    for (let k = 0; k < taps; k++) this.h[k] /= sum;
    this.hist = new Float32Array(taps - 1); // the previous input samples the filter still needs
    this.lastY = 0; // the last filtered sample (interpolation across chunk boundaries)
    this.pos = 0; // position of the next output sample, in filtered samples after lastY
    this.out = new Int16Array(this.chunk);
    this.fill = 0;
  }

  // Feed float samples in [-1, 1]; returns a list of ArrayBuffers, each `chunk` samples of int16.
  push(input) {
    const taps = this.h.length;
    const buf = new Float32Array(this.hist.length + input.length);
    buf.set(this.hist);
    buf.set(input, this.hist.length);
    // y[0] is lastY, y[1..n] the newly filtered samples
    const n = input.length;
    const y = new Float32Array(n + 1);
    y[0] = this.lastY;
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let k = 0; k < taps; k++) acc += this.h[k] * buf[j + k];
      y[j + 1] = acc;
    }
    this.hist = buf.slice(buf.length - (taps - 1));
    const chunks = [];
    while (Math.floor(this.pos) + 1 <= n) {
      const i = Math.floor(this.pos);
      const frac = this.pos - i;
      const v = y[i] + (y[i + 1] - y[i]) * frac;
      this.out[this.fill++] = Math.max(-32768, Math.min(32767, Math.round(v * 32767)));
      if (this.fill === this.chunk) {
        chunks.push(this.out.buffer.slice(0));
        this.fill = 0;
      }
      this.pos += this.step;
    }
    this.pos -= n;
    this.lastY = y[n];
    return chunks;
  }
};
