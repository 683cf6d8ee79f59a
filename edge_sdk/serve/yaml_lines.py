"""YAML with line numbers for ``edge-sdk serve`` configs: PyYAML's safe loader, whose mappings remember the line
of each key (:class:`Marked`), so that every error can name the file, the line and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_sdk.errors import ConfigError


class Marked(dict):
    """A YAML mapping that remembers its line and each key's line (1-based)."""

    line = 0
    lines: dict[Any, int]


class MarkedList(list):
    """A YAML sequence that remembers its line."""

    line = 0


class Duplicate(Exception):
    def __init__(self, key: Any, line: int) -> None:
        self.key, self.line = key, line


def make_loader() -> Any:
    """A ``yaml.SafeLoader`` subclass that builds :class:`Marked` / :class:`MarkedList` and refuses duplicate keys."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: Any, node: Any) -> Any:
        data = Marked()
        data.line, data.lines = node.start_mark.line + 1, {}
        yield data
        loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)) and key is not None:
                key = str(key)
            if key in data:
                raise Duplicate(key, key_node.start_mark.line + 1)
            data[key] = loader.construct_object(value_node, deep=True)
            data.lines[key] = key_node.start_mark.line + 1

    def sequence(loader: Any, node: Any) -> Any:
        data = MarkedList()
        data.line = node.start_mark.line + 1
        yield data
        data.extend(loader.construct_sequence(node, deep=True))

    Loader.add_constructor("tag:yaml.org,2002:map", mapping)
    Loader.add_constructor("tag:yaml.org,2002:seq", sequence)
    return Loader


def config_error(file: Path | None, line: int, key: str, message: str) -> ConfigError:
    """``door.yaml line 4: cameras.door.source: <message>`` (no line when 0, no key when empty)."""
    where = file.name if file is not None else "config"
    at = f" line {line}" if line else ""
    return ConfigError(f"{where}{at}: {key}: {message}" if key else f"{where}{at}: {message}", file=file, line=line,
                       key=key)  # fmt: skip


def read_yaml(text: str, file: Path | None) -> Any:
    """The document in ``text`` (mappings as :class:`Marked`); a ConfigError with the line for bad YAML."""
    import yaml

    try:
        return yaml.load(text, Loader=make_loader())  # noqa: S506 - a SafeLoader subclass that records lines
    except Duplicate as d:
        raise config_error(file, d.line, str(d.key), "given twice; keep one") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        problem = e.problem or e.context or "unreadable"
        flow = "flow" in (e.context or "") and e.context_mark is not None
        if flow and "<stream end>" in problem:  # the file ended inside { } or [ ]: say where that opened
            line = e.context_mark.line + 1
            opener = "{" if "mapping" in (e.context or "") else "["
            problem = f"the {opener} opened on this line is never closed"
        elif flow and "but got '{'" in problem:
            problem += "; inside { }, quote a value that holds braces, e.g. record: 'rec/cam-{time}.mp4'"
        raise config_error(file, line, "", f"not valid YAML: {problem}") from None
    except yaml.YAMLError as e:
        raise config_error(file, 0, "", f"not valid YAML: {e}") from None


def kind(value: Any) -> str:
    names = {dict: "mapping", Marked: "mapping", list: "list", MarkedList: "list", str: "text", bool: "boolean",
             int: "number", float: "number", type(None): "empty value"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


def show(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return f"a {kind(value)}"
    if value is None:
        return "nothing"
    return f"{kind(value)} {str(value)!r}" if not isinstance(value, str) else repr(value)
