"""ONNX -> ONNX (shapes fixed) / OpenVINO / TFLite.

ONNX -> TFLite goes through ``onnx2tf`` (ONNX -> TF SavedModel, NCHW turned into
NHWC) run from its **own** virtual environment: onnx2tf pins tensorflow 2.19,
protobuf 4.25 and numpy 1.26, which would break the main environment
(tensorflow 2.21, numpy 2). The SavedModel it writes is then converted and
quantized by our TFLite route with TF 2.21's TFLiteConverter, so TFLite output of
every source goes through the same quantizer. We defend this over onnx2torch +
litert-torch (no If/Loop, drags torchvision) and onnx-tf (unmaintained since 2022).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from converters.cleanup import run_tool
from converters.routes import RouteContext
from converters.routes.onnx_decompose import decompose_for_tflite
from converters.sources import SourceModel
from edge_sdk.errors import ConversionError, UnsupportedOperatorError, first_line

log = logging.getLogger("edge_sdk.convert")

#: onnx2tf reads this file from its working directory for its own output check (else downloads it)
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"
STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")


def onnx2tf_executable() -> Path:
    """Where onnx2tf lives: $EDGE_SDK_ONNX2TF, the repo's .venv-onnx2tf, or PATH."""
    candidates = [os.environ.get("EDGE_SDK_ONNX2TF", "")]
    candidates.append(str(Path(__file__).resolve().parents[2] / ".venv-onnx2tf" / "bin" / "onnx2tf"))
    candidates.append(shutil.which("onnx2tf") or "")
    for c in candidates:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c)
    raise ConversionError(
        "ONNX -> TFLite needs onnx2tf in its own environment: run `make onnx2tf` (creates .venv-onnx2tf) "
        "or set EDGE_SDK_ONNX2TF to an onnx2tf executable"
    )


def fix_onnx_shapes(src: Path, dst: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    """Copy of ``src`` with input dims set to ``shapes`` and stale output/value_info dims cleared."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(src))
    inputs = {i.name: i for i in model.graph.input}
    initializers = {t.name for t in model.graph.initializer}
    unknown = sorted(set(shapes) - (set(inputs) - initializers))
    if unknown:
        names = [n for n in inputs if n not in initializers]
        raise ConversionError(f"--input-shape names unknown input(s) {unknown}; the model's inputs are {names}")
    for name, shape in shapes.items():
        dims = inputs[name].type.tensor_type.shape.dim
        if len(dims) != len(shape):
            raise ConversionError(f"--input-shape {name} has {len(shape)} dims; the model's input has {len(dims)}")
        for d, v in zip(dims, shape):
            d.ClearField("dim_param")
            d.dim_value = int(v)
    del model.graph.value_info[:]
    for out in model.graph.output:
        for d in out.type.tensor_type.shape.dim:
            d.ClearField("dim_value")
            d.ClearField("dim_param")
    # old exports list initializers as graph inputs; drop those so runtimes see only real inputs
    real_inputs = [i for i in model.graph.input if i.name not in initializers]
    del model.graph.input[:]
    model.graph.input.extend(real_inputs)
    model = shape_inference.infer_shapes(model)
    onnx.save(model, str(dst))
    return dst


def custom_domain_nodes(path: Path) -> list[tuple[str, str]]:
    """(op, node name) of nodes outside the standard ONNX domains (no converter maps those)."""
    from edge_sdk.formats.onnx_format import read_wire_model

    graph = read_wire_model(path).graph
    assert graph is not None
    return [(f"{n.domain}.{n.op_type}", n.name or "?") for n in graph.nodes if n.domain not in STANDARD_DOMAINS]


def _refuse(nodes: list[tuple[str, str]], target: str) -> None:
    if nodes:
        listed = ", ".join(f"{op} (node '{name}')" for op, name in nodes[:5])
        raise UnsupportedOperatorError(f"{target} does not support op {listed}; replace or remove these nodes")


def check_tflite(path: Path) -> None:
    _refuse(custom_domain_nodes(path), "TFLite")


def check_openvino(path: Path) -> None:
    _refuse(openvino_unsupported_nodes(path), "OpenVINO")


def to_onnx(source: SourceModel, out: Path, ctx: RouteContext) -> Path:
    assert source.path is not None
    shutil.copyfile(source.path, out)
    return out


def openvino_unsupported_nodes(path: Path) -> list[tuple[str, str]]:
    """(op, node) pairs OpenVINO's ONNX frontend has no conversion rule for.

    OpenVINO reports unconverted op *types*; the nodes carrying them come from our wire parse.
    """
    import re

    import openvino as ov

    from edge_sdk.formats.onnx_format import read_wire_model

    try:
        ov.Core().read_model(str(path))
        return []
    except Exception as e:
        text = str(e)
    m = re.search(r"No conversion rule found for operations: ([^\n]+)", text)
    if not m:
        return []
    ops = {op.strip() for op in m.group(1).split(",")}
    graph = read_wire_model(path).graph
    assert graph is not None
    found = []
    for n in graph.nodes:
        qualified = f"{n.domain}.{n.op_type}" if n.domain not in STANDARD_DOMAINS else n.op_type
        if qualified in ops or n.op_type in ops:
            found.append((qualified, n.name or "?"))
    return found or [(op, "?") for op in sorted(ops)]


def to_openvino(source: SourceModel, out: Path, ctx: RouteContext) -> Path:
    import openvino as ov

    assert source.path is not None
    check_openvino(source.path)
    try:
        model = ov.convert_model(str(source.path))
    except Exception as e:
        raise ConversionError(f"openvino.convert_model failed: {first_line(e)}") from None
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out


def to_tflite(source: SourceModel, out: Path, ctx: RouteContext) -> Path:
    from converters.routes import tf_routes

    assert source.path is not None
    check_tflite(source.path)
    if "savedmodel" not in ctx.intermediates:
        ctx.intermediates["savedmodel"] = _run_onnx2tf(source.path, ctx)
    tool = ctx.used_tool.get("tflite", "onnx2tf + TFLiteConverter")  # named with its Flex ops, if any
    return tf_routes.to_tflite(_as_savedmodel(source, ctx.intermediates["savedmodel"]), out, ctx, tool=tool)


def _run_onnx2tf(path: Path, ctx: RouteContext) -> Path:
    """ONNX -> SavedModel: prepared graph (see onnx2tf_prep), onnx2tf, then ONNX output names restored."""
    from converters.routes import onnx2tf_prep

    exe = onnx2tf_executable()
    run_dir = ctx.workdir / "onnx2tf_run"
    run_dir.mkdir(parents=True, exist_ok=True)
    simplified = onnx2tf_prep.simplify(path, run_dir / "simplified.onnx", exe.parent / "onnxsim")
    if simplified is None:
        log.warning("onnxsim (beside onnx2tf) is missing or failed on %s: onnx2tf simplifies it itself", path.name)
    prepared = run_dir / "prepared.onnx"
    onnx2tf_prep.squeezes_to_reshapes(simplified or path, prepared)
    onnx2tf_prep.bounded_max_pools(prepared, prepared)
    if decompose_for_tflite(prepared, prepared) and ctx.verbose:
        log.info("Erf rewritten as builtin-only math for TFLite")
    rng = np.random.default_rng(0)
    np.save(run_dir / ONNX2TF_SAMPLE, rng.random((20, 128, 128, 3), dtype=np.float32))
    saved = ctx.workdir / "onnx2tf_saved_model"
    cmd = [*_onnx2tf_command(exe), "-i", str(prepared), "-o", str(saved), "-osd", "-n"]
    if simplified is not None:
        cmd.append("-nuo")  # already simplified, without the slice fusion onnx2tf mistranslates
    kept = onnx2tf_prep.layout_kept_inputs(prepared)
    if kept:
        cmd += ["-kat", *kept]
    if onnx2tf_prep.unrollable_rnns(prepared):
        cmd.append("-eru")
    pseudo = onnx2tf_prep.pseudo_operators(prepared)
    if pseudo:
        cmd += ["-rtpo", *pseudo]
    proc = run_tool(cmd, cwd=run_dir, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    if ctx.verbose:
        sys.stderr.write(" ".join(cmd) + "\n" + proc.stdout[-20000:] + proc.stderr[-20000:])
    if proc.returncode != 0 or not (saved / "saved_model.pb").exists():
        tail = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "rror" in ln]
        raise ConversionError(f"onnx2tf failed on {path.name}: {tail[-1].strip() if tail else 'see --verbose'}")
    return onnx2tf_prep.restore_onnx_outputs(saved, prepared, ctx.workdir / "saved_model_onnx_names")


def _onnx2tf_command(exe: Path) -> list[str]:
    """onnx2tf stopped after its SavedModel (see onnx2tf_savedmodel_only) when its venv's Python is beside it."""
    python = exe.parent / "python"
    if os.environ.get("EDGE_SDK_ONNX2TF_FULL") or not python.exists():
        return [str(exe)]
    return [str(python), str(Path(__file__).with_name("onnx2tf_savedmodel_only.py"))]


def _as_savedmodel(source: SourceModel, saved: Path) -> SourceModel:
    from dataclasses import replace

    return replace(source, kind="savedmodel", path=saved)
