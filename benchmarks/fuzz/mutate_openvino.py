"""OpenVINO IR mutations: XML attributes, ports, edges and layer types, and the ``.bin`` beside it.

The XML is parsed with ElementTree (the seed is valid), one thing is changed, and it is written
back; names that must not be UTF-8 are patched into the bytes afterwards. ``.bin`` mutations
truncate, grow, empty or remove the weights file.
"""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from typing import Callable

from mutate_bytes import mutate_bytes

TYPES = ("Parameter", "Const", "Result", "MatMul", "Add", "Convolution", "Reshape", "Relu", "If", "Loop",
         "TensorIterator", "FakeQuantize", "Convert", "Multiply", "Bogus", "", "ReadValue", "Assign",
         "Interpolate", "TopK", "Gather", "StridedSlice", "NonMaxSuppression", "Constant")  # fmt: skip
VERSIONS = ("opset1", "opset8", "opset13", "opset16", "opset999", "extension", "", "internal", "ie")
ELEMENT_TYPES = ("f32", "f16", "bf16", "i8", "u8", "i4", "u1", "i64", "boolean", "dynamic", "undefined", "string",
                 "f8e4m3", "nf4", "", "xx", "u2", "f4e2m1")  # fmt: skip
SHAPES = ("1,1000000000", "-1", "?", "", "1,a", "0", "18446744073709551615", "1,-5", "1..1000000000",
          "1,16,16,16,16,16,16,16,16,16", "[1,4]", "1,4", "2147483647,2147483647")  # fmt: skip
INTS = ("-1", "0", "1", "4", "1000000000", "9223372036854775807", "18446744073709551615", "-9223372036854775808",
        "", "abc", "1e9", "0x10", " 8")  # fmt: skip
DIMS = ("-1", "0", "1", "1000000000", "?", "18446744073709551615", "", "-2", "4294967296")
PRECISIONS = ("FP32", "FP16", "I8", "U1", "UNSPECIFIED", "BOGUS", "")
BAD_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80")
MARKER = "ZZNU{:04d}ZZ"


class IRState:
    def __init__(self, root: ET.Element) -> None:
        self.root = root
        self.markers: list[str] = []
        self.prefix = b""
        self.bin_op: str | None = None

    def marker(self) -> str:
        m = MARKER.format(len(self.markers))
        self.markers.append(m)
        return m

    def layers(self) -> list[ET.Element]:
        return list(self.root.iter("layer"))

    def edges(self) -> list[ET.Element]:
        return list(self.root.iter("edge"))


def _pick(rng: random.Random, items: list):
    return rng.choice(items) if items else None


def m_layer_type(rng: random.Random, st: IRState) -> str:
    layer = _pick(rng, st.layers())
    if layer is None:
        return "layer_type(none)"
    if rng.random() < 0.7:
        layer.set("type", rng.choice(TYPES))
    else:
        layer.set("version", rng.choice(VERSIONS))
    return f"layer_type({layer.get('id')}: {layer.get('type')}/{layer.get('version')})"


def m_data_attr(rng: random.Random, st: IRState) -> str:
    datas = [d for d in st.root.iter("data") if d.attrib]
    d = _pick(rng, datas)
    if d is None:
        return "data(none)"
    key = rng.choice(sorted(d.attrib))
    if key == "shape":
        value = rng.choice(SHAPES)
    elif key == "element_type" or key.endswith("_type"):
        value = rng.choice(ELEMENT_TYPES)
    else:
        value = rng.choice(INTS + SHAPES[:3])
    d.set(key, value)
    return f"data({key}={value!r})"


def m_const(rng: random.Random, st: IRState) -> str:
    consts = [la for la in st.layers() if la.get("type") == "Const" and la.find("data") is not None]
    layer = _pick(rng, consts)
    if layer is None:
        return "const(none)"
    d = layer.find("data")
    key = rng.choice(("element_type", "shape", "offset", "size", "size"))
    value = rng.choice(ELEMENT_TYPES if key == "element_type" else SHAPES if key == "shape" else INTS)
    d.set(key, value)
    return f"const({layer.get('id')}: {key}={value!r})"


def m_port(rng: random.Random, st: IRState) -> str:
    ports = list(st.root.iter("port"))
    p = _pick(rng, ports)
    if p is None:
        return "port(none)"
    how = rng.randrange(5)
    if how == 0:
        p.set("id", rng.choice(("0", "1", "99", "-1", "", "a", "4294967296")))
        return f"port(id={p.get('id')!r})"
    if how == 1:
        p.set("precision", rng.choice(PRECISIONS))
        return f"port(precision={p.get('precision')!r})"
    dims = p.findall("dim")
    if how == 2 and dims:
        dim = rng.choice(dims)
        dim.text = rng.choice(DIMS)
        return f"port(dim={dim.text!r})"
    if how == 3 and dims:
        p.remove(rng.choice(dims))
        return "port(dim removed)"
    for _ in range(rng.choice((1, 8, 40))):
        ET.SubElement(p, "dim").text = rng.choice(("1", "1000000000", "2"))
    return "port(dims added)"


def m_edge(rng: random.Random, st: IRState) -> str:
    edges = st.edges()
    e = _pick(rng, edges)
    if e is None:
        return "edge(none)"
    how = rng.randrange(5)
    if how == 0:
        key = rng.choice(("from-layer", "to-layer", "from-port", "to-port"))
        e.set(
            key, rng.choice(("99", "-1", "", "0", "a", e.get("to-layer" if key == "from-layer" else "from-layer", "")))
        )
        return f"edge({key}={e.get(key)!r})"
    parent = st.root.find("edges")
    if parent is None:
        return "edge(no <edges>)"
    if how == 1:
        parent.remove(e)
        return "edge(removed)"
    if how == 2:
        parent.append(ET.fromstring(ET.tostring(e)))
        return "edge(duplicated)"
    if how == 3:  # a cycle: last layer feeds the first
        ET.SubElement(parent, "edge", {"from-layer": e.get("to-layer", "0"), "from-port": "9",
                                        "to-layer": e.get("from-layer", "0"), "to-port": "0"})  # fmt: skip
        return "edge(cycle)"
    st.root.remove(parent)
    return "edge(<edges> removed)"


def m_structure(rng: random.Random, st: IRState) -> str:
    layers_el = st.root.find("layers")
    layer = _pick(rng, st.layers())
    if layers_el is None or layer is None:
        return "structure(none)"
    how = rng.randrange(4)
    if how == 0 and layer in list(layers_el):
        layers_el.remove(layer)
        return f"structure(layer {layer.get('id')} removed)"
    if how == 1 and layer in list(layers_el):
        layers_el.append(ET.fromstring(ET.tostring(layer)))
        return f"structure(layer {layer.get('id')} duplicated)"
    if how == 2:
        layer.set("id", rng.choice(("0", "-1", "", "x", "99999999999")))
        return f"structure(layer id {layer.get('id')!r})"
    st.root.set("version", rng.choice(("10", "11", "7", "99", "", "-1")))
    return f"structure(net version {st.root.get('version')!r})"


def m_names(rng: random.Random, st: IRState) -> str:
    layer = _pick(rng, st.layers())
    if layer is None:
        return "names(none)"
    if rng.random() < 0.5:
        layer.set("name", st.marker())
        return f"names(layer {layer.get('id')} non-UTF-8)"
    ports = [p for p in layer.iter("port") if "names" in p.attrib] or list(layer.iter("port"))
    p = _pick(rng, ports)
    if p is None:
        return "names(no port)"
    p.set("names", rng.choice((st.marker(), "", ",", "a,a", "x" * 4000)))
    return "names(port names)"


def m_rt_info(rng: random.Random, st: IRState) -> str:
    rts = list(st.root.iter("rt_info"))
    if not rts:
        rts = [ET.SubElement(st.root, "rt_info")]
    rt = rng.choice(rts)
    ET.SubElement(rt, rng.choice(("attribute", "model_info", "fused_names", st.marker())),
                  {"name": rng.choice(("fused_names", "old_api_map_order", "model_type", "")),
                   "version": rng.choice(("0", "-1", "x")),
                   "value": rng.choice(("1,2", "", st.marker(), "-1"))})  # fmt: skip
    return "rt_info(entry added)"


def m_doctype(rng: random.Random, st: IRState) -> str:
    st.prefix = rng.choice((
        b'<?xml version="1.0"?>\n<!DOCTYPE net [<!ENTITY a "aaaaaaaaaa">]>\n',
        b'<?xml version="1.0"?>\n<!DOCTYPE net SYSTEM "file:///etc/passwd">\n',
        b"\xef\xbb\xbf", b"<!-- comment -->\n",
    ))  # fmt: skip
    return f"doctype({st.prefix[:24]!r})"


def m_bin(rng: random.Random, st: IRState) -> str:
    st.bin_op = rng.choice(("truncate", "truncate", "grow", "empty", "remove", "garbage"))
    return f"bin({st.bin_op})"


MUTATIONS: tuple[Callable[[random.Random, IRState], str], ...] = (
    m_layer_type, m_data_attr, m_data_attr, m_const, m_const, m_port, m_port, m_edge, m_edge, m_structure,
    m_names, m_rt_info, m_doctype, m_bin, m_bin,
)  # fmt: skip


def _apply_bin(rng: random.Random, op: str, files: dict, bin_name: str) -> None:
    data = files.get(bin_name)
    if not isinstance(data, bytes):
        return
    if op == "truncate":
        files[bin_name] = data[: rng.randrange(len(data) + 1)]
    elif op == "grow":
        files[bin_name] = data + b"\0" * rng.choice((1, 4096, 1 << 20))
    elif op == "empty":
        files[bin_name] = b""
    elif op == "remove":
        del files[bin_name]
    else:
        files[bin_name] = mutate_bytes(rng, data, 4)[0]


def mutate(rng: random.Random, files: dict, main: str) -> tuple[dict, list[str]]:
    """One OpenVINO IR case: XML/bin structure mutations, raw XML byte mutations, or both."""
    files = dict(files)
    data = files[main]
    mode = rng.choices(("struct", "raw", "both"), (0.65, 0.15, 0.2))[0]
    done: list[str] = []
    if mode != "raw":
        st = IRState(ET.fromstring(data))
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            done.append(rng.choice(MUTATIONS)(rng, st))
        data = st.prefix + ET.tostring(st.root, encoding="utf-8", xml_declaration=not st.prefix.startswith(b"<?xml"))
        for m in st.markers:
            raw = m.encode()
            data = data.replace(raw, (rng.choice(BAD_UTF8) * len(raw))[: len(raw)])
        if st.bin_op:
            _apply_bin(rng, st.bin_op, files, main[: -len(".xml")] + ".bin")
    if mode != "struct":
        data, raw = mutate_bytes(rng, data)
        done.extend(raw)
    files[main] = data
    return files, done
