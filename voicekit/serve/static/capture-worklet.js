// AudioWorklet processor: microphone -> 16 kHz int16 chunks posted to the page.
// downsampler.js is added to the worklet first and defines globalThis.VoicekitDownsampler.
"use strict";

class VoicekitCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions || {};
    this.down = new globalThis.VoicekitDownsampler(sampleRate, opts.targetRate || 16000, opts.chunkMs || 20);
    this.running = true;
    this.port.onmessage = (e) => {
      if (e.data === "stop") this.running = false;
    };
  }

  process(inputs) {
    const input = inputs[0];
    if (input && input.length > 0) {
      let mono = input[0];
      if (input.length > 1) {
        mono = new Float32Array(input[0].length);
        for (const ch of input) for (let i = 0; i < mono.length; i++) mono[i] += ch[i] / input.length;
      }
      for (const chunk of this.down.push(mono)) this.port.postMessage(chunk, [chunk]);
    }
    return this.running;
  }
}

registerProcessor("voicekit-capture", VoicekitCapture);
