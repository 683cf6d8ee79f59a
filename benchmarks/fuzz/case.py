"""One fuzz case: the files of a mutated model (main file + companions), how it was made, and how to write it."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Symlink:
    """A companion that is a symbolic link (external data that points elsewhere)."""

    target: str


@dataclass
class Case:
    fmt: str
    index: int
    seed_name: str
    main: str
    files: dict[str, bytes | Symlink]
    mutations: list[str] = field(default_factory=list)
    selftest: str = ""  # harness tests only: the worker crashes/hangs/allocates on purpose

    def digest(self) -> str:
        """SHA-256 over the file names and contents: equal digests mean identical cases."""
        h = hashlib.sha256()
        for name in sorted(self.files):
            value = self.files[name]
            h.update(name.encode("utf-8", "surrogateescape") + b"\0")
            h.update(value if isinstance(value, bytes) else b"->" + value.target.encode("utf-8", "surrogateescape"))
            h.update(b"\0")
        return h.hexdigest()

    def write(self, folder: Path) -> Path:
        """Write the case's files into ``folder`` (emptied first); return the main file's path."""
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for name, value in self.files.items():
            path = folder / name
            if isinstance(value, Symlink):
                os.symlink(value.target, path)
            else:
                path.write_bytes(value)
        return folder / self.main
