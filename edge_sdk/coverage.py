"""Operator coverage: for a model and a target accelerator, which nodes run on it and which fall back to the CPU.

One function per backend, picked from :data:`_BY_BACKEND`:

- OpenVINO: ``Core.query_model(model, device)`` maps each node to the device that supports it;
  a node the target rejects but the CPU supports is a CPU fallback (what ``HETERO:<dev>,CPU`` would do).
  ONNX ops OpenVINO cannot convert are kept as framework nodes (partial conversion) and reported.
- ONNX Runtime: the session records which execution provider got each node
  (``session.record_ep_graph_assignment_info``); nodes are those of the optimised graph.
- LiteRT: each ``DELEGATE`` node of the interpreter is traced back to the original nodes it
  replaced; the rest run on the built-in CPU kernels.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from edge_sdk.errors import BackendOptionError, BackendUnavailableError, EdgeSDKError, ModelLoadError, first_line
from edge_sdk.formats import ModelFile, inspect_file

ON_DEVICE, FALLBACK, UNSUPPORTED = "device", "fallback", "unsupported"
_SKIP_OV_TYPES = {"Parameter", "Result", "Constant"}
#: ``--device`` words -> ONNX Runtime execution provider
ORT_PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "gpu": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "htp": "QNNExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "dml": "DmlExecutionProvider",
}


class CoverageError(EdgeSDKError):
    """``--strict``: some nodes do not run on the requested accelerator."""

    exit_code = 3


@dataclass(frozen=True)
class NodePlacement:
    name: str
    op: str
    placed_on: str  # device / provider / delegate that runs it, "" if none
    status: str  # ON_DEVICE | FALLBACK | UNSUPPORTED


@dataclass
class CoverageReport:
    model: str
    backend: str
    target: str
    nodes: list[NodePlacement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for n in self.nodes if n.status == status)

    @property
    def off_target(self) -> list[NodePlacement]:
        return [n for n in self.nodes if n.status != ON_DEVICE]

    @property
    def fully_on_device(self) -> bool:
        return bool(self.nodes) and not self.off_target

    def summary(self) -> str:
        total = len(self.nodes)
        on = self.count(ON_DEVICE)
        pct = 100.0 * on / total if total else 0.0
        text = f"{on}/{total} nodes ({pct:.1f}%) run on {self.target}"
        if self.count(FALLBACK):
            text += f"; {self.count(FALLBACK)} fall back to the CPU"
        if self.count(UNSUPPORTED):
            text += f"; {self.count(UNSUPPORTED)} unsupported"
        return text

    def off_target_ops(self) -> Counter:
        return Counter(n.op for n in self.off_target)

    def check_strict(self) -> None:
        """Raise :class:`CoverageError` naming the ops that do not run on the target."""
        if self.off_target:
            ops = ", ".join(f"{op} x{n}" for op, n in self.off_target_ops().most_common())
            raise CoverageError(
                f"{os.path.basename(self.model)}: {len(self.off_target)} node(s) do not run on {self.target} ({ops}); "
                "replace or remove those ops, or drop --strict to accept the CPU fallback"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary"] = self.summary()
        d["counts"] = {s: self.count(s) for s in (ON_DEVICE, FALLBACK, UNSUPPORTED)}
        return d


def coverage(path: str | os.PathLike[str], device: str = "cpu", *, backend: str | None = None) -> CoverageReport:
    """Which nodes of ``path`` run on ``device`` (``cpu``, ``NPU``, ``GPU``, ``cuda``, ``tensorrt``, ``edgetpu``...).

    ``device`` may also be a named profile (``"intel-npu"``, ``"jetson-orin"``): its best target for
    the model's format is used. ``backend`` defaults to the natural one for the format and device.
    """
    model_file = inspect_file(path)
    backend, device = _pick(model_file.format, backend, device)
    return _BY_BACKEND[backend](model_file, device)


def _pick(fmt: str, backend: str | None, device: str) -> tuple[str, str]:
    import devices
    from edge_sdk.backends import canonical_name

    if device in devices.profiles() and device != "cpu":
        target = devices.plan(device).targets_for(fmt)[0]
        if target.backend == "onnxruntime":
            provider = target.options["providers"][0]
            return "onnxruntime", provider[0] if isinstance(provider, tuple) else provider
        if target.backend == "litert":
            return "litert", str(target.options.get("delegate", "xnnpack"))
        return target.backend, target.device
    if backend:
        return canonical_name(backend), device
    if fmt == "tflite":
        return "litert", device
    if fmt == "openvino" or device.split(":")[0].upper() in ("NPU", "GPU", "AUTO", "HETERO") and device != "gpu":
        return "openvino", device
    return "onnxruntime", device


# -- OpenVINO ------------------------------------------------------------------------------------
def _ov_read(core: Any, model_file: ModelFile) -> tuple[Any, list[str], Any]:
    """The model, notes, and the frontend objects that must outlive it (its framework nodes point into them)."""
    try:
        return core.read_model(str(model_file.path)), [], None
    except Exception as e:
        if model_file.format not in ("onnx", "tflite"):
            raise ModelLoadError(f"OpenVINO could not read {model_file.path.name}: {first_line(e)}") from None
        reason = " ".join(str(e).split())
    from openvino.frontend import FrontEndManager

    manager = FrontEndManager()
    fe = manager.load_by_framework(model_file.format)
    input_model = fe.load(str(model_file.path))
    model = fe.convert_partially(input_model)
    m = re.search(r"No conversion rule found for operations: ([^\n]+?)(?: Summary|$)", reason)
    return (
        model,
        [f"OpenVINO could not convert: {m.group(1) if m else first_line(Exception(reason))}"],
        (manager, fe, input_model),
    )


def _ov_coverage(model_file: ModelFile, device: str) -> CoverageReport:
    try:
        import openvino as ov
    except ImportError as e:
        raise BackendUnavailableError("openvino", "openvino", first_line(e)) from None
    from edge_sdk.backends.openvino_backend import ov_device_name

    core = ov.Core()
    dev = ov_device_name(device)
    base = dev.split(":")[0].split(".")[0]
    if base not in ("HETERO", "AUTO") and base not in core.available_devices:
        from devices.runtimes import INSTALL_HINTS

        raise BackendOptionError(
            f"OpenVINO device '{dev}' is not available on this machine (available: "
            f"{', '.join(core.available_devices)}); {INSTALL_HINTS.get(base, 'install its driver')}"
        )
    model, notes, _frontend = _ov_read(core, model_file)
    try:
        on_target = core.query_model(model, dev)
        on_cpu = on_target if base == "CPU" else core.query_model(model, "CPU")
    except Exception as e:
        raise ModelLoadError(f"OpenVINO could not query {model_file.path.name} on {dev}: {first_line(e)}") from None
    report = CoverageReport(str(model_file.path), "openvino", dev, notes=notes)
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind in _SKIP_OV_TYPES:
            continue
        name = op.get_friendly_name()
        if name in on_target:
            report.nodes.append(NodePlacement(name, kind, on_target[name], ON_DEVICE))
        elif name in on_cpu:
            report.nodes.append(NodePlacement(name, kind, "CPU", FALLBACK))
        else:
            report.nodes.append(NodePlacement(name, kind, "", UNSUPPORTED))
    return report


# -- ONNX Runtime ---------------------------------------------------------------------------------
def _ort_coverage(model_file: ModelFile, device: str) -> CoverageReport:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise BackendUnavailableError("onnxruntime", "onnx", first_line(e)) from None
    from edge_sdk.backends.onnxruntime_backend import PROVIDER_PACKAGES

    provider = ORT_PROVIDERS.get(device.lower(), device)
    available = ort.get_available_providers()
    if provider not in available:
        hint = PROVIDER_PACKAGES.get(provider, "an onnxruntime build that includes it")
        raise BackendOptionError(
            f"execution provider '{provider}' is not in this onnxruntime build "
            f"(available: {', '.join(available)}); install {hint}"
        )
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
    providers = [provider] + ([] if provider == "CPUExecutionProvider" else ["CPUExecutionProvider"])
    report = CoverageReport(str(model_file.path), "onnxruntime", provider)
    try:
        session = ort.InferenceSession(str(model_file.path), sess_options=so, providers=providers)
    except Exception as e:
        text = " ".join(str(e).split())
        m = re.search(r"implementation for (\w+)\(\d+\) node with name '([^']*)'", text)
        m = m or re.search(r"([\w.]+:)?(\w+)\(-?\d+\) is not a registered function/op", text)
        if not m:
            raise ModelLoadError(f"onnxruntime could not load {model_file.path.name}: {first_line(e)}") from None
        op, name = (m.group(1), m.group(2)) if "implementation" in m.group(0) else (m.group(2), m.group(2))
        report.nodes.append(NodePlacement(name, op, "", UNSUPPORTED))
        report.notes.append(f"onnxruntime has no kernel for {op}; it stops there, so no other node was placed")
        return report
    for sub in session.get_provider_graph_assignment_info():
        status = ON_DEVICE if sub.ep_name == provider else FALLBACK
        for node in sub.get_nodes():
            report.nodes.append(NodePlacement(node.name or f"({node.op_type})", node.op_type, sub.ep_name, status))
    report.notes.append("nodes of the graph after ONNX Runtime's optimisations (fused ops count once)")
    return report


# -- LiteRT ---------------------------------------------------------------------------------------
def _tflite_coverage(model_file: ModelFile, device: str) -> CoverageReport:
    from edge_sdk.backends.litert_backend import LiteRTBackend, import_interpreter_module

    mod, _ = import_interpreter_module()
    delegate = {"cpu": "xnnpack", "auto": "xnnpack"}.get(device.lower(), device)
    kwargs: dict[str, Any] = {"model_path": str(model_file.path)}
    if delegate == "none":
        kwargs["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    elif delegate != "xnnpack":
        kwargs["experimental_delegates"] = [LiteRTBackend._load_delegate(mod, delegate, {})]
    try:
        interp = mod.Interpreter(**kwargs)
        interp.allocate_tensors()
    except Exception as e:
        raise ModelLoadError(f"LiteRT could not load {model_file.path.name}: {first_line(e)}") from None
    ops = interp._get_ops_details()  # the only view LiteRT's Python API gives of the node list
    originals = [o for o in ops if o["op_name"] != "DELEGATE"]
    producer = {t: o["index"] for o in originals for t in o["outputs"]}
    covered: set[int] = set()
    for d in (o for o in ops if o["op_name"] == "DELEGATE"):
        boundary = set(d["inputs"])
        stack = [t for t in d["outputs"]]
        while stack:
            t = stack.pop()
            n = producer.get(t)
            if t in boundary or n is None or n in covered:
                continue
            covered.add(n)
            stack.extend(ops[n]["inputs"])
    report = CoverageReport(str(model_file.path), "litert", delegate)
    for o in originals:
        on = o["index"] in covered
        where = delegate if on else "CPU (built-in kernels)"
        report.nodes.append(NodePlacement(f"#{o['index']}", o["op_name"], where, ON_DEVICE if on else FALLBACK))
    if delegate == "none":
        report.nodes = [NodePlacement(n.name, n.op, "CPU (built-in kernels)", ON_DEVICE) for n in report.nodes]
    return report


_BY_BACKEND: dict[str, Callable[[ModelFile, str], CoverageReport]] = {
    "openvino": _ov_coverage,
    "onnxruntime": _ort_coverage,
    "litert": _tflite_coverage,
}
