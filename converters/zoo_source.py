"""``zoo:NAME`` as a conversion source: the real model plus its preprocessing, labels and task."""

from __future__ import annotations

from dataclasses import replace

from converters.routes import RouteContext
from converters.sources import SourceModel, open_source


def open_zoo_source(name: str, ctx: RouteContext) -> SourceModel:
    from converters import zoo

    entry = zoo.get(name)
    opts = {}
    if ctx.input_shapes and "input_shape" in entry.options:
        opts["input_shape"] = next(iter(ctx.input_shapes.values()))
    zm = entry.load(**opts)
    source = open_source(zm.model, example_inputs=zm.example_inputs)
    if source.kind == "torch":
        source.inputs = [replace(s, name=n) for s, n in zip(source.inputs, zm.input_names)]
        if len(zm.output_names) == len(source.output_names):
            source.output_names = list(zm.output_names)
    source.preprocess = zm.preprocess
    source.labels = zm.labels
    source.task = zm.task
    source.description = zm.name
    return source
