"""Many streams against one model: :class:`MultiStream` (one Pipeline per source) over :class:`BatchingModel`
(a shared model, batched across streams or scheduled fairly, under an inference watchdog)."""

from __future__ import annotations

from edge_sdk.multistream.batching import BatchingModel
from edge_sdk.multistream.multistream import MultiStream
from edge_sdk.multistream.view import StreamView
from edge_sdk.multistream.watchdog import WatchdogOptions

__all__ = ["BatchingModel", "MultiStream", "StreamView", "WatchdogOptions"]
