"""PyTorch (nn.Module or .pt2 ExportedProgram) -> ONNX / OpenVINO / TFLite."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from converters.routes import RouteContext
from converters.sources import SourceModel
from edge_sdk.errors import ConversionError, first_line

log = logging.getLogger("edge_sdk.convert")


def module_and_args(source: SourceModel) -> tuple[Any, tuple[Any, ...]]:
    """The nn.Module (a .pt2 program's module) and its example inputs as tensors."""
    import torch

    module = source.obj.module() if source.kind == "pt2" else source.obj
    args = tuple(torch.from_numpy(a.copy()) for a in source.example_inputs)
    return module, args


def to_onnx(source: SourceModel, out: Path, ctx: RouteContext) -> Path:
    import torch

    module, args = module_and_args(source)
    names = [s.name for s in source.inputs]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if source.kind == "pt2":  # an ExportedProgram goes through the dynamo exporter as it is
                program = torch.onnx.export(source.obj, (), dynamo=True, opset_version=max(ctx.opset, 18))
                program.save(str(out))
                ctx.intermediates["onnx"] = out
                return out
            try:
                torch.onnx.export(
                    module,
                    args,
                    str(out),
                    input_names=names,
                    output_names=source.output_names,
                    opset_version=ctx.opset,
                    dynamo=False,
                    do_constant_folding=True,
                )
            except Exception as traced_error:  # TorchScript tracing cannot run some modules (transformers 5)
                log.info("TorchScript export failed (%s); exporting with torch.export", first_line(traced_error))
                _export_with_dynamo(module, args, names, source.output_names, out, ctx)
    except Exception as e:
        raise ConversionError(f"torch.onnx.export failed: {first_line(e)}") from None
    ctx.intermediates["onnx"] = out
    return out


def onnx_export(source: SourceModel, ctx: RouteContext) -> Path:
    """The source's ONNX export of this conversion: the one already made (another target's), else a new one."""
    made = ctx.intermediates.get("onnx")
    if made is not None and Path(made).exists():
        return Path(made)
    return to_onnx(source, ctx.workdir / "torch_export.onnx", ctx)


def _export_with_dynamo(module: Any, args: tuple[Any, ...], names: list[str], outputs: list[str], out: Path,
                        ctx: RouteContext) -> None:  # fmt: skip
    """The torch.export-based exporter: what transformers 5 models need (their forward wrappers break tracing)."""
    import torch

    program = torch.onnx.export(module, args, dynamo=True, opset_version=max(ctx.opset, 18), input_names=names,
                                output_names=outputs)  # fmt: skip
    program.save(str(out))
    for target in ("onnx", "tflite"):  # say so in the route of every artifact that goes through this ONNX
        ctx.used_tool.setdefault(target, "torch.onnx.export(dynamo=True)" + (" + onnx2tf + TFLiteConverter"
                                                                              if target == "tflite" else ""))


def to_openvino(source: SourceModel, out: Path, ctx: RouteContext) -> Path:
    """OpenVINO's PyTorch frontend (TorchScript tracing); when tracing cannot run the module (it fails its
    sanity check on torchvision's ViT: "Graphs differed across invocations"), the same frontend on the
    ``torch.export`` program, then the ONNX export through the ONNX frontend. The route that worked is recorded
    in the manifest; when none does, the error names each try."""
    module, args = module_and_args(source)
    if source.kind == "pt2":
        return save_as_ir(source.obj, source, out)
    tries: list[str] = []
    try:
        return save_as_ir(module, source, out)
    except ConversionError as e:
        tries.append(f"TorchScript tracing: {first_line(e)}")
    try:
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.export(module, args)
        path = save_as_ir(program, source, out)
        _fell_back(ctx, "openvino.convert_model of the torch.export program", tries)
        return path
    except Exception as e:
        tries.append(f"torch.export: {first_line(e)}")
    from dataclasses import replace

    from converters.routes import onnx_routes

    try:
        path = onnx_routes.to_openvino(replace(source, kind="onnx", path=onnx_export(source, ctx)), out, ctx)
        _fell_back(ctx, "torch.onnx.export + openvino.convert_model (ONNX frontend)", tries)
        return path
    except ConversionError as e:
        tries.append(f"via ONNX: {first_line(e)}")
    raise ConversionError("PyTorch -> OpenVINO failed every way it was tried: " + "; ".join(tries))


def _fell_back(ctx: RouteContext, tool: str, tries: list[str]) -> None:
    log.warning("PyTorch -> OpenVINO: %s failed; converted with %s instead", tries[0].split(":")[0], tool)
    ctx.used_tool["openvino"] = f"{tool} (after {'; '.join(tries)[:200]})"


def save_as_ir(model: Any, source: SourceModel, out: Path) -> Path:
    """``model`` (a torch module or program traced with ``source``'s example inputs) as an fp32 IR at ``out``,
    input shapes fixed to the example's and inputs named as the source's."""
    import openvino as ov
    import torch

    args = tuple(torch.from_numpy(a.copy()) for a in source.example_inputs)
    try:
        ir = ov.convert_model(model, example_input=args)
    except Exception as e:
        raise ConversionError(f"openvino.convert_model failed on the PyTorch model: {first_line(e)}") from None
    # convert_model leaves every dim dynamic; the traced example fixes them (NPUs and bench need static shapes)
    ir.reshape({port: list(a.shape) for port, a in zip(ir.inputs, source.example_inputs)})
    for port, spec in zip(ir.inputs, source.inputs):
        port.get_tensor().set_names({spec.name})
    ov.save_model(ir, str(out), compress_to_fp16=False)
    return out


def to_tflite(source: SourceModel, out: Path, ctx: RouteContext) -> Path:
    """PyTorch -> ONNX -> onnx2tf -> TFLiteConverter; litert-torch when onnx2tf is not installed.

    Chosen by measurement (EfficientNet-Lite0, 200 held-out crops, `benchmarks/zoo_report.py`): int8
    top-1 agreement 93.0% through TFLiteConverter vs 86.0% through litert-torch + ai-edge-quantizer,
    fp32 and int8 as fast or faster on LiteRT, and TFLiteConverter's int8 I/O and sparse encoding
    become available to PyTorch sources.
    """
    from dataclasses import replace

    from converters.routes import onnx_routes

    try:
        onnx_routes.onnx2tf_executable()
    except ConversionError:
        if ctx.tflite_sparse:
            raise
        log.warning("onnx2tf is not installed (make onnx2tf): PyTorch -> TFLite falls back to litert-torch")
        ctx.used_tool["tflite"] = "litert_torch.convert (fallback: onnx2tf not installed)"
        return to_tflite_litert(source, out, ctx)
    return onnx_routes.to_tflite(replace(source, kind="onnx", path=onnx_export(source, ctx)), out, ctx)


def to_tflite_litert(source: SourceModel, out: Path, ctx: RouteContext) -> Path:
    """PyTorch -> TFLite with litert-torch directly (quantized afterwards by ai-edge-quantizer)."""
    import litert_torch

    module, args = module_and_args(source)
    try:
        edge_model = litert_torch.convert(module.eval(), args)
        edge_model.export(str(out))
    except Exception as e:
        raise ConversionError(f"litert_torch.convert failed: {first_line(e)}") from None
    return out
