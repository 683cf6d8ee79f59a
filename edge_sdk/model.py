"""Model: one loaded model behind one API, whatever runtime runs it.

Thread safety: a ``Model`` may be used from any thread but from **one thread at
a time**. A second thread calling while a run is in flight gets a
:class:`~edge_sdk.errors.ConcurrentUseError` instead of silently corrupting the
runtime's buffers; use one ``Model`` per thread for parallel inference.
``close()`` from another thread waits for an in-flight run to finish, then closes;
a run that starts after ``close()`` began gets :class:`~edge_sdk.errors.ModelClosedError`.
A runtime failure during a run is an :class:`~edge_sdk.errors.InferenceError` with
the runtime's reason.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

import numpy as np

from edge_sdk.errors import (
    ConcurrentUseError,
    EdgeSDKError,
    InferenceError,
    InputMismatchError,
    ModelClosedError,
    ModelFileError,
    first_line,
)
from edge_sdk.tensor_spec import TensorSpec

if TYPE_CHECKING:
    from edge_sdk.backends.base import Backend
    from edge_sdk.formats import ModelFile
    from edge_sdk.metadata import ModelMetadata

#: numpy's limit on the number of dimensions of an array
MAX_RANK = 64

Feeds = Union[np.ndarray, Sequence[np.ndarray], Mapping[str, np.ndarray]]


class Model:
    """A model loaded by :func:`edge_sdk.load`.

    ``run(feeds)`` returns ``{output_name: array}``; ``model(x)`` is the shortcut for
    single-input models and returns the array itself when there is one output.
    With ``dequantize=True`` (per call or at load) float inputs are quantized into an
    int8/uint8 input with the model's own scale/zero-point, and quantized outputs are
    returned as float32.
    """

    def __init__(self, backend: Backend, model_file: ModelFile, *, dequantize: bool = False) -> None:
        self._backend = backend
        self.file = model_file
        self.dequantize = dequantize
        self.inputs: list[TensorSpec] = list(backend.inputs)
        self.outputs: list[TensorSpec] = list(backend.outputs)
        too_deep = [s for s in (*self.inputs, *self.outputs) if len(s.shape) > MAX_RANK]
        if too_deep:  # no numpy array can feed or hold it (found by benchmarks/fuzz_loaders.py)
            backend.close()
            raise ModelFileError(
                f"{model_file.path.name}: tensor '{too_deep[0].name}' has rank {len(too_deep[0].shape)}; "
                f"numpy arrays have at most {MAX_RANK} dimensions, so no input or output of this model can be passed"
            )
        self._input_names = [s.name for s in self.inputs]
        self._output_names = [s.name for s in self.outputs]
        self._lock = threading.Lock()
        self._closed = False
        self._closing = False
        self._metadata: tuple[ModelMetadata | None] | None = None  # read on first use
        self._predictors: dict[str, tuple[Any, Any]] = {}  # predict(): (spec, post-processor) per task and options

    # -- description -------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.file.path

    @property
    def format(self) -> str:
        return self.file.format

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def metadata(self) -> ModelMetadata | None:
        """What the file says about itself (task, preprocessing, labels...: embedded by ``edge-sdk convert``),
        else what a folder manifest listing this very file says; None when neither (see ``edge_sdk.metadata``)."""
        if self._metadata is None:
            from edge_sdk.metadata import model_metadata

            self._metadata = (model_metadata(self.path, self.format),)
        return self._metadata[0]

    def describe(self) -> dict[str, Any]:
        """Format, backend, what the runtime uses (providers/delegate/device) and the tensors."""
        return {
            "path": str(self.path),
            "format": self.format,
            **self._backend.describe(),
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}{s.shape_str()}:{np.dtype(s.dtype).name}" for s in self.inputs)
        state = " closed" if self._closed else ""
        return f"<edge_sdk.Model {self.path.name} {self.format} on {self.backend} ({ins}){state}>"

    # -- running -----------------------------------------------------------------------------
    def run(self, feeds: Feeds, *, dequantize: bool | None = None) -> dict[str, np.ndarray]:
        """Run once and return ``{output_name: array}``."""
        return dict(zip(self._output_names, self._run(feeds, dequantize)))

    def __call__(self, x: Feeds) -> Any:
        """Run a model; one output -> that array, several -> ``{name: array}``."""
        outs = self._run(x, None)
        if len(outs) == 1:
            return outs[0]
        return dict(zip(self._output_names, outs))

    def warmup(self, runs: int = 1) -> None:
        """Run ``runs`` times on zeros (dynamic dims set to 1) so the first real call is not slow."""
        feeds = [np.zeros(s.concrete_shape(), dtype=s.dtype) for s in self.inputs]
        for _ in range(runs):
            self._run(feeds, False)

    # -- typed results ---------------------------------------------------------------------------
    def predict(
        self, images: Any, *, task: str | None = None, preprocess: Any = None, labels: Sequence[str] | None = None,
        **post_opts: Any,
    ) -> Any:  # fmt: skip
        """Run on images with the model's stored preprocessing and its task's post-processing; typed results.

        ``images``: an (H, W, 3) uint8 RGB array, a path (str or Path) to an image file (decoded with OpenCV),
        or a list of those (-> a list of results, in order). Returns :class:`~edge_sdk.results.Classifications`
        (task ``classify``) or :class:`~edge_sdk.results.Detections` (``detect``; boxes in the given image's
        pixels). ``task``: default the one the model carries (:attr:`metadata`); ``preprocess`` / ``labels``
        replace the stored ones; other keywords go to the post-processor (``top_k=3``, ``threshold=0.4``...),
        as with ``Pipeline``. The post-processor is built once per set of options and reused.
        """
        batch = isinstance(images, (list, tuple))
        items = list(images) if batch else [images]
        spec, post = self._predictor(task, preprocess, labels, post_opts)
        from edge_sdk.results import typed
        from edge_sdk.sources.base import Frame

        results = []
        for i, item in enumerate(items):
            image = _read_image(item, f"image {i} of the list" if batch else "image")
            frame = Frame(image, time.monotonic(), i, {})
            outputs = self.run(spec.apply(image), dequantize=True)
            results.append(typed(post(outputs, frame)))
        return results if batch else results[0]

    def _predictor(self, task: str | None, preprocess: Any, labels: Any, opts: dict[str, Any]) -> tuple[Any, Any]:
        """(PreprocessSpec, post-processor) for ``predict``, built on first use per task and options."""
        from edge_sdk.errors import PreprocessError, TaskError
        from edge_sdk.postprocess.registry import POSTPROCESSORS
        from edge_sdk.preprocess import PreprocessSpec

        if task is None:
            meta = self.metadata
            task = meta.task if meta is not None else None
            if task is None:
                raise TaskError(
                    f"{self.path.name} carries no task (no edge_sdk metadata inside, no manifest listing it); "
                    f"pass one: model.predict(image, task='classify') (tasks: {', '.join(POSTPROCESSORS)})"
                )
        key = repr((task, preprocess, labels, sorted(opts.items())))
        if key in self._predictors:
            return self._predictors[key]
        from edge_sdk.pipeline.model_info import model_labels, model_preprocess
        from edge_sdk.postprocess.registry import build_postprocessor

        if task not in POSTPROCESSORS:
            raise TaskError(f"unknown task '{task}' (task=); known tasks: {', '.join(POSTPROCESSORS)}")
        spec = preprocess if preprocess is not None else model_preprocess(self)
        if not isinstance(spec, PreprocessSpec):
            raise TaskError(
                f"model.predict takes images, but {self.path.name} (task '{task}') takes {type(spec).__name__} "
                "input; stream audio through es.Pipeline(source, model, task=...) instead"
            )
        post = build_postprocessor(task, self, spec, labels if labels is not None else model_labels(self), dict(opts))
        if getattr(post, "prepare", None) is not None:
            raise PreprocessError(
                f"model.predict takes images; task '{task}' prepares its own input (audio): use "
                "es.Pipeline(source, model, task=...)"
            )
        self._predictors[key] = (spec, post)
        return spec, post

    def _closed_error(self) -> ModelClosedError:
        return ModelClosedError(f"model {self.path.name} is closed; load it again to run it")

    def _run(self, feeds: Feeds, dequantize: bool | None) -> list[np.ndarray]:
        if self._closed or self._closing:
            raise self._closed_error()
        deq = self.dequantize if dequantize is None else dequantize
        arrays = self._check_inputs(feeds, deq)
        if not self._lock.acquire(blocking=False):
            if self._closing or self._closed:
                raise self._closed_error()
            raise ConcurrentUseError(
                f"model {self.path.name} is already running in another thread; "
                "a Model is safe from one thread at a time: load one Model per thread"
            )
        try:
            if self._closed or self._closing:  # close() began between the check above and taking the lock
                raise self._closed_error()
            outs = self._backend.run(arrays)
        except EdgeSDKError:
            raise
        except Exception as e:  # ONNX Runtime's Fail/RuntimeException, LiteRT's RuntimeError, OpenVINO's ...
            raise InferenceError(f"{self.backend} failed to run {self.path.name}: {first_line(e)}") from None
        finally:
            self._lock.release()
        if deq:
            outs = [
                spec.quant.dequantize(o) if spec.quant is not None and o.dtype.kind in "iu" else o
                for spec, o in zip(self.outputs, outs)
            ]
        return outs

    def _check_inputs(self, feeds: Feeds, deq: bool) -> list[np.ndarray]:
        specs = self.inputs
        if isinstance(feeds, np.ndarray):
            if len(specs) != 1:
                raise InputMismatchError(
                    f"model takes {len(specs)} inputs ({', '.join(self._input_names)}); "
                    "pass a dict {name: array} or a list in that order"
                )
            given = [feeds]
        elif isinstance(feeds, Mapping):
            if len(feeds) != len(specs) or any(n not in feeds for n in self._input_names):
                self._explain_names(feeds)
            given = [feeds[n] for n in self._input_names]
        else:
            given = list(feeds)
            if len(given) != len(specs):
                raise InputMismatchError(
                    f"model takes {len(specs)} input(s) ({', '.join(self._input_names)}), got {len(given)}"
                )
        out = []
        for spec, x in zip(specs, given):
            if not isinstance(x, np.ndarray):
                x = np.asarray(x)
            if x.dtype != spec.dtype:
                if deq and spec.quant is not None and x.dtype.kind == "f":
                    x = spec.quant.quantize(x, spec.dtype)
                else:
                    hint = (
                        " (or pass dequantize=True to quantize float input with the model's scale)"
                        if spec.quant is not None
                        else ""
                    )
                    raise InputMismatchError(
                        f"input '{spec.name}' expects dtype {np.dtype(spec.dtype).name}, got {x.dtype.name}; "
                        f"convert with x.astype(np.{np.dtype(spec.dtype).name}){hint}"
                    )
            shape = spec.shape
            if x.shape != shape and (
                x.ndim != len(shape) or any(d is not None and d != g for d, g in zip(shape, x.shape))
            ):
                raise InputMismatchError(
                    f"input '{spec.name}' expects shape {spec.shape_str()}, got [{','.join(map(str, x.shape))}]"
                )
            if not x.flags.c_contiguous:
                x = np.ascontiguousarray(x)
            out.append(x)
        return out

    def _explain_names(self, feeds: Mapping[str, np.ndarray]) -> None:
        unknown = [k for k in feeds if k not in self._input_names]
        if unknown:
            raise InputMismatchError(f"unknown input name(s) {unknown}; the model's inputs are {self._input_names}")
        missing = [n for n in self._input_names if n not in feeds]
        raise InputMismatchError(f"missing input(s) {missing}; the model's inputs are {self._input_names}")

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        """Release the runtime's resources; further runs raise ModelClosedError.

        Safe from any thread: it waits for a run in flight to finish (runtimes cannot be freed under
        a running inference), and runs that start meanwhile get ModelClosedError.
        """
        self._closing = True
        with self._lock:
            if not self._closed:
                self._closed = True
                self._backend.close()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_image(item: Any, what: str) -> np.ndarray:
    """``item`` as an (H, W, 3) uint8 RGB array: an array checked, a path decoded with OpenCV (BGR -> RGB)."""
    from edge_sdk.errors import PreprocessError

    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        try:
            data = path.read_bytes()
        except OSError as e:
            why = "no such file" if isinstance(e, FileNotFoundError) else (e.strerror or str(e))
            raise PreprocessError(f"predict: cannot read {what} '{path}': {why}") from None
        from edge_sdk.sources._opencv import import_cv2

        cv2 = import_cv2()
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if img is None:
            why = "empty file" if not data else "not a decodable image (corrupt, or a format OpenCV cannot read)"
            raise PreprocessError(f"predict: cannot read {what} '{path}': {why}")
        return np.ascontiguousarray(img[..., ::-1])
    if not isinstance(item, np.ndarray):
        raise InputMismatchError(
            f"predict: {what} is a {type(item).__name__}; pass an (H, W, 3) uint8 RGB numpy array, "
            "a path to an image file, or a list of those"
        )
    if item.ndim != 3 or item.shape[2] != 3 or 0 in item.shape:
        hint = " (a batch: pass a list of images)" if item.ndim == 4 else ""
        raise InputMismatchError(
            f"predict: {what} has shape ({', '.join(map(str, item.shape))}); expected (H, W, 3) RGB{hint}"
        )
    if item.dtype != np.uint8:
        raise InputMismatchError(
            f"predict: {what} has dtype {item.dtype.name}; expected uint8 RGB pixels 0..255 "
            "(the model's stored preprocessing does the scaling)"
        )
    return item
