"""OpenVINO IR: an XML ``<net>`` topology plus a ``.bin`` of weights next to it.

The XML is untrusted: any DOCTYPE/ENTITY declaration is refused before parsing
(no entity expansion bombs, no external entities). Every ``Const`` layer's
``offset + size`` must fit in the ``.bin``, so a truncated weights file is
named as such instead of failing deep inside the runtime.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from edge_sdk.errors import ModelFileError, UnsafeModelError
from edge_sdk.formats import FormatHandler, ModelFile, register_format


def sniff(head: bytes) -> bool:
    """Any XML document: ``validate`` then says whether it is IR, so other XML gets a precise message."""
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    return text.startswith((b"<?xml", b"<net", b"<!DOCTYPE", b"<!--"))


def weights_path(xml_path: Path) -> Path:
    return xml_path.with_suffix(".bin")


def validate(path: Path, size: int) -> ModelFile:
    data = path.read_bytes()
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise UnsafeModelError(f"{path} declares a DOCTYPE/ENTITY; OpenVINO IR never does, refusing to parse it")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise ModelFileError(f"{path} is not valid OpenVINO IR XML (corrupt or truncated): {e}") from None
    if root.tag != "net" or root.find("layers") is None:
        raise ModelFileError(f"{path} is XML but not OpenVINO IR (root <{root.tag}>, expected <net> with <layers>)")
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
    return ModelFile(path=path, format="openvino", size=size + bin_size, companions=(bin_path,))


register_format(FormatHandler("openvino", (".xml",), sniff, validate))
