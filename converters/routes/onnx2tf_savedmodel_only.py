"""Run in onnx2tf's own venv: onnx2tf's CLI, stopped once its SavedModel is written.

After the SavedModel, onnx2tf always converts it to a float32 and a float16 ``.tflite`` of its own. Our route
never uses them: its TFLiteConverter converts the SavedModel (with the ONNX output names restored, signatures
and metadata). Those two conversions were a third to a half of onnx2tf's time, so this wrapper makes TFLite
conversion refuse to start; the SavedModel on disk is complete by then. Usage: ``python THIS_FILE <onnx2tf args>``.
"""

import sys

import tensorflow as tf


class SavedModelWritten(Exception):
    """Raised where onnx2tf would start its own .tflite conversions."""


def _stop(*_args: object, **_kwargs: object) -> None:
    raise SavedModelWritten()


def main() -> int:
    tf.lite.TFLiteConverter.from_keras_model = staticmethod(_stop)
    tf.lite.TFLiteConverter.from_concrete_functions = staticmethod(_stop)
    from onnx2tf import onnx2tf

    try:
        onnx2tf.main()
    except SavedModelWritten:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
