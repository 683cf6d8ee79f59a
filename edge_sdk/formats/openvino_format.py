"""OpenVINO IR: an XML ``<net>`` topology plus a ``.bin`` of weights next to it.

The XML is untrusted: any DOCTYPE/ENTITY declaration is refused before parsing
(no entity expansion bombs, no external entities), and so is an encoding other
than UTF-8 (names reach Python as UTF-8). Every ``Const`` layer's ``offset + size``
must fit in the ``.bin``, so a truncated weights file is named as such instead of
failing deep inside the runtime; its element type must be a concrete one (OpenVINO
cannot read a ``dynamic`` constant). Declared shapes (Const, Parameter, output ports)
and the weight bytes read from the ``.bin`` must fit the memory budget (``budget.py``).
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from edge_sdk.errors import ModelFileError, UnsafeModelError
from edge_sdk.formats import FormatHandler, ModelFile, register_format
from edge_sdk.formats.budget import MemoryBudget, numel

if TYPE_CHECKING:
    import xml.etree.ElementTree as ET

#: IR element types -> bits per element (ov::element::Type names)
ELEMENT_BITS: dict[str, int] = {
    "boolean": 8, "bf16": 16, "f16": 16, "f32": 32, "f64": 64, "i4": 4, "i8": 8, "i16": 16, "i32": 32, "i64": 64,
    "u1": 1, "u2": 2, "u3": 3, "u4": 4, "u6": 6, "u8": 8, "u16": 16, "u32": 32, "u64": 64, "nf4": 4,
    "f8e4m3": 8, "f8e5m2": 8, "f8e8m0": 8, "f4e2m1": 4, "string": 64,
}  # fmt: skip
#: IR port precisions (upper-case spelling) -> bits
_PRECISION_BITS = {k.upper(): v for k, v in ELEMENT_BITS.items()} | {"FP32": 32, "FP16": 16, "FP64": 64, "BOOL": 8}
_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([^"']+)["']""")


def sniff(head: bytes) -> bool:
    """Any XML document: ``validate`` then says whether it is IR, so other XML gets a precise message."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    return text.startswith((b"<?xml", b"<net", b"<!DOCTYPE", b"<!--"))


def weights_path(xml_path: Path) -> Path:
    return xml_path.with_suffix(".bin")


def _dims(text: str) -> list[int]:
    """``"1, 3, ?, 224"`` / ``"1..10,-1"`` -> static dims, dynamic ones as -1 (ranges count at their upper bound)."""
    dims = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        upper = part.split("..")[-1]
        dims.append(int(upper) if upper.lstrip("-").isdigit() else -1)
    return dims


def _layer_name(layer: ET.Element) -> str:
    return f"{layer.get('type', '?')} layer '{layer.get('name', layer.get('id', '?'))}'"


def _check_layer(layer: ET.Element, budget: MemoryBudget, path: Path) -> None:
    kind = layer.get("type", "")
    if kind == "Constant":  # OpenVINO writes "Const"; a "Constant" layer gets no data and crashes compile_model
        raise ModelFileError(
            f"{path.name}: {_layer_name(layer)} has type 'Constant'; OpenVINO IR stores constants as 'Const' "
            "layers (a 'Constant' layer is built without its data and crashes the CPU plugin)"
        )
    data = layer.find("data")
    if kind in ("Assign", "ReadValue") and not (data is not None and data.get("variable_id")):
        raise ModelFileError(  # OpenVINO builds the state op without its variable and crashes (fuzzer finding)
            f"{path.name}: {_layer_name(layer)} has no <data variable_id=...>; a state layer must name its variable"
        )
    if kind in ("Const", "Parameter") and data is not None:
        etype = data.get("element_type", "")
        if etype not in ELEMENT_BITS:  # "dynamic"/"undefined" crash OpenVINO's readers or have no numpy dtype
            raise ModelFileError(
                f"{path.name}: {_layer_name(layer)} has element_type '{etype}'; a {kind} needs a concrete "
                "element type (f32, f16, i64, u8, ...)"
            )
        dims = _dims(data.get("shape", ""))
        if any(d < 0 for d in dims) and kind == "Const":
            raise ModelFileError(f"{path.name}: {_layer_name(layer)} has a dynamic shape '{data.get('shape')}'")
        nbytes = (numel(dims) * ELEMENT_BITS[etype] + 7) // 8
        budget.tensor(_layer_name(layer), [d if d >= 0 else "?" for d in dims], etype, nbytes, add=False)
        stored = data.get("size", "")
        if kind == "Const" and etype != "string" and stored.isdigit() and int(stored) < nbytes:
            raise ModelFileError(
                f"{path.name}: {_layer_name(layer)} declares shape [{data.get('shape')}] of {etype} ({nbytes} bytes) "
                f"but reads only {stored} bytes from the weights file (corrupt IR)"
            )
    for port in layer.findall("output/port"):
        dims = [int(d.text) if (d.text or "").strip().lstrip("-").isdigit() else -1 for d in port.findall("dim")]
        bits = _PRECISION_BITS.get((port.get("precision") or "FP32").upper(), 32)
        nbytes = (numel(dims) * bits + 7) // 8
        budget.tensor(f"output port {port.get('id')} of {_layer_name(layer)}", dims, port.get("precision") or "?",
                      nbytes, add=False)  # fmt: skip


#: layers whose output shape is a constant input (its position among the layer's input ports)
_SHAPE_INPUTS = {"Broadcast": 1, "Tile": 1}
_INT_TYPES = {"i32": "<i", "i64": "<q"}


def _check_shape_layers(root: ET.Element, bin_path: Path, budget: MemoryBudget) -> None:
    """Broadcast/Tile fed a small integer Const (target shape, repeats): what OpenVINO will allocate.

    Counted at one byte per element, a lower bound, so a model that fits is never refused."""
    layers = {layer.get("id"): layer for layer in root.iter("layer")}
    sources = {(e.get("to-layer"), e.get("to-port")): e.get("from-layer") for e in root.iter("edge")}
    with open(bin_path, "rb") as weights:
        for layer in layers.values():
            k = _SHAPE_INPUTS.get(layer.get("type", ""))
            ports = layer.findall("input/port")
            if k is None or len(ports) <= k:
                continue
            const = layers.get(sources.get((layer.get("id"), ports[k].get("id"))))
            data = const.find("data") if const is not None and const.get("type") == "Const" else None
            fmt = _INT_TYPES.get(data.get("element_type", "")) if data is not None else None
            if data is None or fmt is None or not data.get("size", "").isdigit() or int(data.get("size")) > 512:
                continue
            weights.seek(int(data.get("offset", "0")))
            raw = weights.read(int(data.get("size")))
            values = [v[0] for v in struct.iter_unpack(fmt, raw[: len(raw) - len(raw) % struct.calcsize(fmt)])]
            what = f"the output of {_layer_name(layer)} (constant {_layer_name(const)})"
            budget.tensor(what, values, "at least 1 byte per element", numel(values), add=False)


def validate(path: Path, size: int, max_memory: int | None = None) -> ModelFile:
    import xml.etree.ElementTree as ET  # here: every format registers at each start, few starts read an IR

    data = path.read_bytes()
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise UnsafeModelError(f"{path} declares a DOCTYPE/ENTITY; OpenVINO IR never does, refusing to parse it")
    enc = _ENCODING.match(data.lstrip(b"\xef\xbb\xbf"))
    if enc and enc.group(1).decode("ascii", "replace").lower().replace("_", "-") not in ("utf-8", "utf8"):
        raise ModelFileError(
            f"{path} declares encoding '{enc.group(1).decode('ascii', 'replace')}'; OpenVINO IR is UTF-8, refusing it"
        )
    try:
        root = ET.fromstring(data)
    except (ET.ParseError, ValueError, LookupError) as e:
        raise ModelFileError(f"{path} is not valid OpenVINO IR XML (corrupt or truncated): {e}") from None
    if root.tag != "net" or root.find("layers") is None:
        raise ModelFileError(f"{path} is XML but not OpenVINO IR (root <{root.tag}>, expected <net> with <layers>)")
    budget = MemoryBudget.for_file(path, max_memory)
    for layer in root.iter("layer"):
        _check_layer(layer, budget, path)
    bin_path = weights_path(path)
    consts = [d for d in root.iter("data") if "offset" in d.attrib and "size" in d.attrib]
    if not bin_path.is_file():
        if consts:
            raise ModelFileError(
                f"OpenVINO IR {path.name} needs its weights file {bin_path.name} next to it, and it is missing"
            )
        return ModelFile(path=path, format="openvino", size=size)
    bin_size = bin_path.stat().st_size
    for d in consts:
        try:
            offset, length = int(d.attrib["offset"]), int(d.attrib["size"])
        except ValueError:
            raise ModelFileError(f"{path}: a Const layer has a non-numeric offset/size") from None
        if offset < 0 or length < 0 or offset + length > bin_size:
            raise ModelFileError(
                f"{bin_path.name} has {bin_size} bytes but {path.name} reads bytes {offset}..{offset + length} "
                "(truncated or mismatched weights file)"
            )
        budget.add(length, f"weights read from {bin_path.name} at offset {offset}")
    _check_shape_layers(root, bin_path, budget)
    return ModelFile(path=path, format="openvino", size=size + bin_size, companions=(bin_path,))


register_format(FormatHandler("openvino", (".xml",), sniff, validate))
