"""Voice activity detection with Silero VAD: speech probability per window -> speech segments.

:class:`VoiceActivityDetector` is both the ``vad`` task's post-processor (the pipeline calls its
``prepare`` / ``infer`` / ``__call__`` hooks) and a plain streaming/offline API::

    vad = VoiceActivityDetector(es.load(silero_onnx))
    segments = vad.detect(samples)             # whole clip at 16 kHz -> [SpeechSegment(start, end)]
    for event in vad.process(block): ...       # streaming: SPEECH_START / SPEECH_END dicts

It runs the model itself, one 512-sample window at a time with the previous 64 samples in front
(the "context") and the LSTM state the previous call returned, so the recurrent model sees one
continuous stream whatever block size the source delivers. :class:`SpeechSegmenter` turns the
probabilities into segments with hysteresis (speech starts at ``threshold``, ends below
``neg_threshold``), a minimum speech duration (shorter blips are ignored) and a minimum silence
duration (shorter pauses do not split a segment), padded by ``speech_pad_ms`` on both sides:
the rules and defaults of Silero's own ``get_speech_timestamps``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_sdk.audio.framing import Framer
from edge_sdk.errors import OutputMismatchError, TaskError

SPEECH_START, SPEECH_END = "SPEECH_START", "SPEECH_END"


@dataclass
class SpeechSegment:
    """One stretch of speech, in seconds from the start of the stream (``end`` None while it lasts)."""

    start: float
    end: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"start_s": round(self.start, 3), "end_s": None if self.end is None else round(self.end, 3)}


class SpeechSegmenter:
    """Window probabilities -> SPEECH_START / SPEECH_END events (streaming; see the module docstring)."""

    def __init__(
        self, threshold: float = 0.5, neg_threshold: float | None = None, min_speech_ms: float = 250.0,
        min_silence_ms: float = 100.0, speech_pad_ms: float = 30.0,
    ) -> None:  # fmt: skip
        if not 0 < threshold < 1:
            raise TaskError(f"task 'vad': threshold must be in (0, 1), got {threshold!r}")
        neg = max(0.01, threshold - 0.15) if neg_threshold is None else neg_threshold
        if not 0 <= neg <= threshold:
            raise TaskError(f"task 'vad': neg_threshold must be in [0, threshold={threshold}], got {neg!r}")
        for name, v in (("min_speech_ms", min_speech_ms), ("min_silence_ms", min_silence_ms),
                        ("speech_pad_ms", speech_pad_ms)):  # fmt: skip
            if v < 0:
                raise TaskError(f"task 'vad': {name} must be >= 0 ms, got {v!r}")
        self.threshold, self.neg_threshold = float(threshold), float(neg)
        self.min_speech, self.min_silence = min_speech_ms / 1000, min_silence_ms / 1000
        self.pad = speech_pad_ms / 1000
        self.reset()

    def reset(self) -> None:
        self.segments: list[SpeechSegment] = []
        self.triggered = False
        self._candidate: float | None = None  # start of speech not yet long enough to count
        self._silence_from: float | None = None  # start of a pause inside speech
        self._last_end = 0.0

    def update(self, prob: float, t0: float, t1: float) -> list[dict[str, Any]]:
        """Feed the probability of the window [t0, t1) seconds; returns the events it completes."""
        events: list[dict[str, Any]] = []
        self._last_end = t1
        if not self.triggered:
            if prob >= self.threshold:
                if self._candidate is None:
                    self._candidate = t0
            elif prob < self.neg_threshold:
                self._candidate = None
            if self._candidate is not None and t1 - self._candidate >= self.min_speech:
                prev_end = self.segments[-1].end if self.segments else 0.0
                start = max(self._candidate - self.pad, prev_end or 0.0, 0.0)
                self.segments.append(SpeechSegment(start))
                self.triggered, self._candidate, self._silence_from = True, None, None
                events.append({"event": SPEECH_START, "t_s": round(start, 3)})
            return events
        if prob >= self.threshold:
            self._silence_from = None
        elif prob < self.neg_threshold:
            if self._silence_from is None:
                self._silence_from = t0
            if t1 - self._silence_from >= self.min_silence:
                events.append(self._close(min(self._silence_from + self.pad, t1)))
        return events

    def finish(self) -> list[dict[str, Any]]:
        """End of stream: close an open segment at the last window's end."""
        self._candidate = None
        return [self._close(self._last_end)] if self.triggered else []

    def _close(self, end: float) -> dict[str, Any]:
        seg = self.segments[-1]
        seg.end = end
        self.triggered, self._silence_from = False, None
        return {"event": SPEECH_END, "t_s": round(end, 3), "segment": seg.to_dict()}


@dataclass
class VadResult:
    """The VAD's verdict for one source frame: probabilities of its windows, speech state, events."""

    probs: list[float]
    speech: bool
    t_s: float  # stream time at the end of the frame
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def prob(self) -> float:
        return max(self.probs) if self.probs else 0.0

    def to_event(self) -> dict[str, Any]:
        return {"speech_prob": round(self.prob, 4), "speech": self.speech, "t_s": round(self.t_s, 3),
                "events": self.events}  # fmt: skip

    def annotate(self, image: np.ndarray) -> np.ndarray:
        """Audio has no picture; an image (e.g. a camera frame shown next to it) gets a label."""
        if image.ndim != 3:
            return image
        from edge_sdk.postprocess.draw import text_lines

        return text_lines(image.copy(), [f"speech {self.prob:.0%}" if self.speech else f"silence {self.prob:.0%}"])


class VoiceActivityDetector:
    """Silero-VAD-style runner + segmenter. ``model``: a loaded Model with an audio input
    ``(1, context + window)``, a ``state`` input and a probability + new-state output pair."""

    def __init__(
        self, model: Any, *, threshold: float = 0.5, neg_threshold: float | None = None,
        min_speech_ms: float = 250.0, min_silence_ms: float = 100.0, speech_pad_ms: float = 30.0,
        sample_rate: int | None = None, window: int | None = None, context: int | None = None,
        preprocess: Any = None, **_: Any,
    ) -> None:  # fmt: skip
        self._bind(model)
        spec_sr = getattr(preprocess, "sample_rate", None)
        self.sample_rate = int(sample_rate or spec_sr or 16000)
        self.window = int(window or getattr(preprocess, "window", 0) or (512 if self.sample_rate == 16000 else 256))
        default_ctx = 64 if self.sample_rate == 16000 else 32
        self.context = int(context if context is not None else getattr(preprocess, "context", default_ctx))
        width = self._audio_width
        if width is not None and width != self.context + self.window:
            if window is None and context is None and width > default_ctx:
                self.window, self.context = width - default_ctx, default_ctx
            else:
                raise OutputMismatchError(
                    f"task 'vad': the model's input '{self._audio}' takes {width} samples, but window + context "
                    f"= {self.window} + {self.context}; set window/context to match the model"
                )
        self.segmenter = SpeechSegmenter(threshold, neg_threshold, min_speech_ms, min_silence_ms, speech_pad_ms)
        self.gaps = 0
        self.reset()

    # -- model binding ----------------------------------------------------------------------------
    def _bind(self, model: Any) -> None:
        ins = {s.name: s for s in model.inputs}
        outs = {s.name: s for s in model.outputs}
        state = next((n for n in ("state", "h", "hn") if n in ins), None)
        state = state or next((n for n, s in ins.items() if len(s.shape) == 3), None)
        audio = "input" if "input" in ins else next((n for n, s in ins.items() if len(s.shape) == 2), None)
        if audio is None or state is None:
            raise OutputMismatchError(
                "task 'vad' needs a Silero-VAD-style model: an audio input (1, samples) and a recurrent 'state' "
                f"input (2, 1, 128); this model's inputs are {[f'{n} {s.shape_str()}' for n, s in ins.items()]}"
            )
        st_shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in ins[state].shape)
        state_out = "stateN" if "stateN" in outs else next((n for n, s in outs.items() if len(s.shape) == 3), None)
        prob = "output" if "output" in outs else next((n for n in outs if n != state_out), None)
        if prob is None or state_out is None:
            raise OutputMismatchError(
                "task 'vad' needs a speech-probability output (1, 1) and a new-state output to feed back; this "
                f"model's outputs are {[f'{n} {s.shape_str()}' for n, s in outs.items()]}"
            )
        self._audio, self._state_in, self._state_out, self._prob = audio, state, state_out, prob
        self._sr_in = "sr" if "sr" in ins else None
        self._state_shape = st_shape if len(st_shape) == 3 else (2, 1, 128)
        w = ins[audio].shape[-1]
        self._audio_width = w if isinstance(w, int) and w > 0 else None
        self.model = model

    def reset(self) -> None:
        """Start a new stream: zero state and context, no segments."""
        self._state = np.zeros(self._state_shape, np.float32)
        self._ctx = np.zeros(self.context, np.float32)
        self._framer = Framer(self.window)
        self._base = 0  # stream sample position of the framer's first sample
        self._next = 0  # where the next block should start (else: a gap)
        self.segmenter.reset()

    @property
    def segments(self) -> list[SpeechSegment]:
        return self.segmenter.segments

    # -- the three pipeline hooks -----------------------------------------------------------------
    def prepare(self, frame: Any) -> np.ndarray:
        """Pre stage: the frame's samples as mono float32 (windows are cut in ``infer``, which keeps order)."""
        sr = frame.meta.get("sample_rate", self.sample_rate)
        if sr != self.sample_rate:
            raise TaskError(
                f"task 'vad': the source gives {sr} Hz audio but the model needs {self.sample_rate} Hz; open the "
                f"source with sample_rate={self.sample_rate} (--source-opt sample_rate={self.sample_rate})"
            )
        x = np.asarray(frame.data, dtype=np.float32)
        if x.ndim != 1:
            if x.ndim == 2 and x.shape[0] > x.shape[1]:
                x = x.mean(axis=1)
            else:
                raise TaskError(f"task 'vad' needs an audio source (mic:, file.wav, synthetic-audio:), "
                                f"got frames of shape {x.shape}")  # fmt: skip
        return x

    def infer(self, model: Any, feeds: np.ndarray, frame: Any) -> dict[str, np.ndarray]:
        """Infer stage: every complete window of this block, in order, state carried across calls."""
        pos = frame.meta.get("pos")
        return self._run_block(model, feeds, None if pos is None else int(pos))

    def __call__(self, outputs: dict[str, np.ndarray], frame: Any = None) -> VadResult:
        """Post stage: the windows' probabilities through the segmenter."""
        events: list[dict[str, Any]] = []
        starts, probs = outputs["starts"], outputs["probs"]
        for p, s in zip(probs, starts):
            t0 = float(s) / self.sample_rate
            events += self.segmenter.update(float(p), t0, t0 + self.window / self.sample_rate)
        if frame is not None and getattr(frame, "meta", {}).get("last"):
            events += self.segmenter.finish()
        return VadResult([float(p) for p in probs], self.segmenter.triggered, float(outputs["end"][0]), events)

    # -- plain API ----------------------------------------------------------------------------------
    def process(self, samples: np.ndarray, pos: int | None = None) -> list[dict[str, Any]]:
        """Streaming without a pipeline: feed a block (16 kHz mono float32); returns completed events."""
        return self(self._run_block(self.model, np.asarray(samples, np.float32).reshape(-1), pos)).events

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """Speech probability of every window of a clip (a new stream)."""
        self.reset()
        out = self._run_block(self.model, np.asarray(samples, np.float32).reshape(-1), 0, pad=True)
        return out["probs"]

    def detect(self, samples: np.ndarray) -> list[SpeechSegment]:
        """Segments of a whole clip (a new stream): 16 kHz mono float32, or int16 PCM."""
        x = np.asarray(samples)
        if x.dtype == np.int16:
            x = x.astype(np.float32) / 32768.0
        self.reset()
        self(self._run_block(self.model, x.astype(np.float32).reshape(-1), 0, pad=True))
        self.segmenter.finish()
        return list(self.segments)

    def finish(self) -> list[dict[str, Any]]:
        """End of the stream: close an open segment."""
        return self.segmenter.finish()

    def _run_block(self, model: Any, x: np.ndarray, pos: int | None, *, pad: bool = False) -> dict[str, np.ndarray]:
        if pos is not None and pos != self._next:  # samples were lost upstream: keep the state, restart framing
            if self._next != 0 or pos != 0:
                self.gaps += 1
            self._framer.reset()
            self._base = pos
        start = self._next if pos is None else pos
        self._next = start + len(x)
        if pad and len(x) % self.window:
            x = np.concatenate([x, np.zeros(self.window - len(x) % self.window, np.float32)])
        wins, offs = self._framer.push(x)
        probs = np.zeros(len(wins), np.float32)
        feeds: dict[str, np.ndarray] = {}
        if self._sr_in:
            feeds[self._sr_in] = np.array(self.sample_rate, np.int64)
        for i, w in enumerate(wins):
            feeds[self._audio] = np.concatenate([self._ctx, w])[None]
            feeds[self._state_in] = self._state
            out = model.run(feeds)
            probs[i] = float(np.asarray(out[self._prob]).reshape(-1)[0])
            self._state = np.asarray(out[self._state_out], np.float32)
            self._ctx = w[len(w) - self.context :] if self.context else self._ctx
        starts = np.asarray([self._base + o for o in offs], np.int64)
        end = np.asarray([self._next / self.sample_rate])
        return {"probs": probs, "starts": starts, "end": end}
