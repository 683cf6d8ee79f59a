"""Pair the reference's intermediate tensors with the artifact's.

The rule, in order:

1. **By name.** A reference tensor is paired with the first artifact tensor that carries its name (its own
   name or an alias: the DequantizeLinear output of a QDQ pair, an OpenVINO op's friendly name, the first
   part of a fused TFLite name; TF names compared without ``StatefulPartitionedCall/`` and ``:0``) when
   their shapes are compatible.
2. **By position.** Name matches that keep both graphs' order are anchors. Between two anchors, the
   remaining tensors of both sides are aligned in order (no crossing) with a weighted longest-common-
   subsequence over shape-compatible pairs: each pair scores 1 + its cosine on the first sample, so the
   alignment pairs as many tensors as it can and, among equal counts, the most similar ones (a TFLite
   Conv+ReLU fused into one op is paired with the ReLU's output, not the convolution's before it).

Shapes are compatible when equal, when one is the other's NCHW<->NHWC (NCW<->NWC, NCDHW<->NDHWC)
transpose, or when they differ only by dimensions of size 1; the artifact's tensor is brought to the
reference's shape that way before comparing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from converters.diff.trace import Traced

#: transposes that take a channels-last artifact tensor to a channels-first reference (and back)
_PERMS = {3: [(0, 2, 1)], 4: [(0, 3, 1, 2), (0, 2, 3, 1)], 5: [(0, 4, 1, 2, 3), (0, 2, 3, 4, 1)]}
_PROBE = 4096  # elements of each tensor compared when choosing between candidate pairs
_DP_CELLS = 400_000  # larger gaps are aligned greedily (first compatible tensor in order)


@dataclass(frozen=True)
class Transform:
    """How an artifact tensor is brought to the reference tensor's shape."""

    kind: str  # "same", "transpose" or "reshape"
    perm: tuple[int, ...] = ()

    def apply(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if self.kind == "transpose":
            return np.transpose(x, self.perm)
        if self.kind == "reshape":
            return x.reshape(shape)
        return x

    def describe(self) -> str | None:
        return {"same": None, "reshape": "reshaped"}.get(self.kind, f"transposed {list(self.perm)}")


@dataclass(frozen=True)
class Match:
    """A reference tensor paired with an artifact tensor."""

    ref: int  # index in the reference trace
    art: int  # index in the artifact trace
    by: str  # "name" or "position"
    transform: Transform


def transforms(art_shape: Sequence[int], ref_shape: Sequence[int]) -> list[Transform]:
    """Every way to bring ``art_shape`` to ``ref_shape`` (empty when the shapes are not compatible)."""
    art_shape, ref_shape = tuple(art_shape), tuple(ref_shape)
    out = []
    if art_shape == ref_shape:
        out.append(Transform("same"))
    for perm in _PERMS.get(len(art_shape), []):
        if tuple(art_shape[p] for p in perm) == ref_shape and art_shape != ref_shape:
            out.append(Transform("transpose", perm))
    squeezed = [d for d in art_shape if d != 1] == [d for d in ref_shape if d != 1]
    if not out and squeezed and int(np.prod(art_shape)) == int(np.prod(ref_shape)):
        out.append(Transform("reshape"))
    return out


class _Probe:
    """Cached subsamples of tensors for cheap cosines."""

    def __init__(self, ref: list[Traced], art: list[Traced]) -> None:
        self.ref, self.art = ref, art
        self._cache: dict[tuple, np.ndarray] = {}

    def _index(self, size: int) -> np.ndarray:
        return np.unique(np.linspace(0, size - 1, min(size, _PROBE)).astype(np.int64))

    def _ref(self, i: int) -> np.ndarray:
        key = ("r", i)
        if key not in self._cache:
            v = self.ref[i].value
            self._cache[key] = v.ravel()[self._index(v.size)].astype(np.float64)
        return self._cache[key]

    def _art(self, j: int, t: Transform, shape: tuple[int, ...]) -> np.ndarray:
        key = ("a", j, t, shape)
        if key not in self._cache:
            v = np.ascontiguousarray(t.apply(self.art[j].value, shape))
            self._cache[key] = v.ravel()[self._index(v.size)].astype(np.float64)
        return self._cache[key]

    def cosine(self, i: int, j: int, t: Transform) -> float:
        a, b = self._ref(i), self._art(j, t, self.ref[i].value.shape)
        denom = float(np.linalg.norm(a) * np.linalg.norm(b))
        return float(np.dot(a, b) / denom) if denom > 0 else float(np.array_equal(a, b))

    def best(self, i: int, j: int) -> tuple[Transform, float] | None:
        """The transform that makes artifact tensor ``j`` most like reference tensor ``i``, and its cosine."""
        options = transforms(self.art[j].value.shape, self.ref[i].value.shape)
        if not options:
            return None
        scored = [(t, self.cosine(i, j, t)) for t in options]
        return max(scored, key=lambda s: s[1])


def match(ref: list[Traced], art: list[Traced]) -> list[Match]:
    """Pairs of reference and artifact tensors (see the module docstring), sorted by reference order."""
    probe = _Probe(ref, art)
    by_name = _by_name(ref, art, probe)
    anchors = _increasing(by_name)
    used_ref = {m.ref for m in by_name}
    used_art = {m.art for m in by_name}
    found = list(by_name)
    bounds = [(-1, -1), *((m.ref, m.art) for m in anchors), (len(ref), len(art))]
    for (r0, a0), (r1, a1) in zip(bounds, bounds[1:]):
        refs = [i for i in range(r0 + 1, r1) if i not in used_ref]
        arts = [j for j in range(a0 + 1, a1) if j not in used_art]
        if refs and arts:
            found += _align(refs, arts, probe)
    return sorted(found, key=lambda m: m.ref)


def normalized(name: str) -> str:
    """A TF-made tensor name without what differs between exporters: ``StatefulPartitionedCall/`` scopes,
    a ``:0`` output suffix, a ``serving_default_`` prefix (tf2onnx and TFLiteConverter name the same tensor
    ``StatefulPartitionedCall/model/conv/Relu:0`` and ``model/conv/Relu``)."""
    name = re.sub(r":\d+$", "", name.split(";")[0]).removeprefix("serving_default_")
    while name.startswith("StatefulPartitionedCall/"):
        name = name.removeprefix("StatefulPartitionedCall/")
    return name


def _keys(t: Traced) -> list[str]:
    return list(dict.fromkeys([*t.names, *(normalized(n) for n in t.names)]))


def _by_name(ref: list[Traced], art: list[Traced], probe: _Probe) -> list[Match]:
    index: dict[str, int] = {}
    for j, t in enumerate(art):
        for name in _keys(t):
            index.setdefault(name, j)
    out, taken = [], set()
    for i, t in enumerate(ref):
        for name in _keys(t):
            j = index.get(name)
            if j is None or j in taken:
                continue
            best = probe.best(i, j)
            if best is not None:
                out.append(Match(i, j, "name", best[0]))
                taken.add(j)
                break
    return out


def _increasing(matches: list[Match]) -> list[Match]:
    """The longest run of ``matches`` (in reference order) whose artifact positions increase too."""
    ms = sorted(matches, key=lambda m: m.ref)
    if not ms:
        return []
    length = [1] * len(ms)
    prev = [-1] * len(ms)
    for k in range(len(ms)):
        for q in range(k):
            if ms[q].art < ms[k].art and length[q] + 1 > length[k]:
                length[k], prev[k] = length[q] + 1, q
    k = max(range(len(ms)), key=length.__getitem__)
    chain = []
    while k >= 0:
        chain.append(ms[k])
        k = prev[k]
    return chain[::-1]


def _align(refs: list[int], arts: list[int], probe: _Probe) -> list[Match]:
    """Order-keeping alignment of ``refs`` with ``arts`` maximising the sum of (1 + cosine) over pairs."""
    if len(refs) * len(arts) > _DP_CELLS:
        return _greedy(refs, arts, probe)
    n, m = len(refs), len(arts)
    pair: dict[tuple[int, int], tuple[Transform, float]] = {}
    score = np.zeros((n + 1, m + 1))
    for k in range(1, n + 1):
        for q in range(1, m + 1):
            best = score[k - 1, q] if score[k - 1, q] >= score[k, q - 1] else score[k, q - 1]
            found = probe.best(refs[k - 1], arts[q - 1])
            if found is not None:
                pair[(k, q)] = found
                best = max(best, score[k - 1, q - 1] + 1.0 + found[1])
            score[k, q] = best
    out = []
    k, q = n, m
    while k > 0 and q > 0:
        found = pair.get((k, q))
        if found is not None and np.isclose(score[k, q], score[k - 1, q - 1] + 1.0 + found[1]):
            out.append(Match(refs[k - 1], arts[q - 1], "position", found[0]))
            k, q = k - 1, q - 1
        elif score[k - 1, q] >= score[k, q - 1]:
            k -= 1
        else:
            q -= 1
    return out[::-1]


def _greedy(refs: list[int], arts: list[int], probe: _Probe) -> list[Match]:
    out, start = [], 0
    for i in refs:
        for q in range(start, len(arts)):
            found = probe.best(i, arts[q])
            if found is not None:
                out.append(Match(i, arts[q], "position", found[0]))
                start = q + 1
                break
    return out
