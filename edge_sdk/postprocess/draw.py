"""Drawing results on a copy of an RGB frame (OpenCV, imported on first use)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _cv2() -> Any:
    from edge_sdk.sources._opencv import import_cv2

    return import_cv2()


def text_lines(image: np.ndarray, lines: Sequence[str], origin: tuple[int, int] = (8, 8)) -> np.ndarray:
    """Lines of text with a dark backing box, top-left; draws in place and returns the image."""
    cv2 = _cv2()
    scale = max(0.4, image.shape[0] / 800)
    th = max(1, int(round(scale * 2)))
    x, y = origin
    for line in lines:
        (w, h), base = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, th)
        cv2.rectangle(image, (x - 4, y - 2), (x + w + 4, y + h + base + 2), (0, 0, 0), -1)
        cv2.putText(image, line, (x, y + h), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), th, cv2.LINE_AA)
        y += h + base + 6
    return image


def boxes(
    image: np.ndarray, xyxy: np.ndarray, labels: Sequence[str], *, blur: bool = False, color=(0, 255, 0)
) -> np.ndarray:
    """Rectangles with labels (or the boxes' contents blurred); draws in place and returns the image."""
    cv2 = _cv2()
    H, W = image.shape[:2]
    th = max(2, H // 240)
    for (x1, y1, x2, y2), label in zip(np.asarray(xyxy).reshape(-1, 4), labels):
        x1, y1 = int(max(0, x1)), int(max(0, y1))
        x2, y2 = int(min(W, x2)), int(min(H, y2))
        if x2 <= x1 or y2 <= y1:
            continue
        if blur:
            roi = image[y1:y2, x1:x2]
            k = max(3, ((x2 - x1) // 4) | 1)
            image[y1:y2, x1:x2] = cv2.GaussianBlur(roi, (k, k), 0)
        cv2.rectangle(image, (x1, y1), (x2, y2), color, th)
        if label:
            text_lines(image, [label], (x1 + 2, max(2, y1 - 22)))
    return image
