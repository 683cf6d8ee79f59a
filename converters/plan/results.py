"""What a conversion returns: one report per artifact, and the result of the whole run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converters.metrics import OutputMetrics


@dataclass
class ArtifactReport:
    target: str
    precision: str
    path: Path
    size_bytes: int
    sha256: str
    route: str
    quantizer: str
    metrics: list[OutputMetrics]
    failures: list[str]
    seconds: float
    latency: dict[str, float] = field(default_factory=dict)
    fallback: dict[str, Any] | None = None  # static int8: the layers kept float and what they cost
    isa: dict[str, Any] | None = None  # static int8: the ISA and int8 scheme it was made for

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "precision": self.precision,
            "path": self.path.name,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "route": self.route,
            "quantizer": self.quantizer,
            "passed": self.passed,
            "failures": self.failures,
            "metrics": [m.to_dict() for m in self.metrics],
            "seconds": round(self.seconds, 2),
            "latency": self.latency,
            "fallback": self.fallback,
            "isa": self.isa,
        }


@dataclass
class ConversionResult:
    output_dir: Path
    artifacts: list[ArtifactReport]
    manifest_path: Path
    source: dict[str, Any]
    validation: dict[str, Any] = field(default_factory=dict)  # held-out inputs: count, origin, synthetic

    def validation_line(self) -> str:
        """Where the validation inputs came from, for people; random ones are said to be random."""
        v = self.validation
        if not v:
            return ""
        mark = " (SYNTHETIC: pass --calib or --held-out with your own data)" if v.get("synthetic") else ""
        return f"validated on {v.get('count')} samples: {v.get('origin')}{mark}"

    @property
    def passed(self) -> bool:
        return all(a.passed for a in self.artifacts)

    @property
    def report(self) -> list[dict[str, Any]]:
        """Per artifact: agreement, size, latency (when benchmarked)."""
        return [a.to_dict() for a in self.artifacts]

    def artifact(self, target: str, precision: str) -> ArtifactReport:
        for a in self.artifacts:
            if (a.target, a.precision) == (target, precision):
                return a
        raise KeyError(f"no {target} {precision} artifact in this result")
