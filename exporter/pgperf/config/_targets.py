"""Targets read from files: ``targets_file`` and every ``*.yml`` / ``*.yaml`` file of
``targets_dir``.

A target file holds ``targets:``, a list in the form of the configuration file's own
``targets`` (name, dsn, databases, profile, thresholds), so that an entry can move from one
to the other. The application reads the files at start (a problem is then a configuration
error, exit status 2), on reload, and when ``changed()`` sees that they were added,
removed or modified (their names, sizes and modification times, compared every
``targets_check_interval``: no file-notification dependency). After the start, a file
with a problem is refused with its problems (``file:line: key: reason``) and the targets
it gave before stay as they were; the other files' changes are applied.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from .._types import Model
from ._loader import ConfigError, _format, _mark, _read_yaml
from ._loader import Path as KeyPath
from ._schema import Config, Target, fill_target_thresholds

__all__ = ["TargetFiles", "TargetsRead", "with_file_targets"]

#: What tells a changed file from an unchanged one: modification time, size and inode.
Stamp = tuple[int, int, int]


class _TargetsFile(Model):
    targets: tuple[Target, ...] = ()


@dataclass(frozen=True)
class TargetsRead:
    """The targets of every file (those of a refused file as they were before), and the
    problems of the refused files."""

    targets: tuple[Target, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass
class _Known:
    stamp: Stamp | None
    targets: tuple[Target, ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)


class TargetFiles:
    """The target files of one configuration, and what was last read from each."""

    def __init__(self) -> None:
        self._known: dict[str, _Known] = {}
        self._stamps: dict[str, Stamp] = {}

    @staticmethod
    def paths(config: Config) -> list[str]:
        """The files to read: ``targets_file``, then the YAML files of ``targets_dir`` by name."""
        out = [config.targets_file] if config.targets_file else []
        if config.targets_dir:
            try:
                names = sorted(os.listdir(config.targets_dir))
            except OSError:
                names = []  # reported by read()
            out += [str(Path(config.targets_dir) / n) for n in names if n.endswith((".yml", ".yaml"))
                    and not n.startswith(".")]
        return out

    @staticmethod
    def _stamp(path: str) -> Stamp | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _stamps_of(self, config: Config) -> dict[str, Stamp]:
        return {p: s for p in self.paths(config) if (s := self._stamp(p)) is not None}

    def changed(self, config: Config) -> bool:
        """Whether a file was added, removed or modified since the last ``read``."""
        return self._stamps_of(config) != self._stamps

    def read(self, config: Config) -> TargetsRead:
        """Read the files that changed since the last call; every target they give now.

        A file with a problem (unreadable, not YAML, an invalid target, a name that another
        file or the configuration already uses) is refused whole: the targets it gave at its
        last good reading are kept, and its problems are returned.
        """
        problems: list[str] = []
        if config.targets_dir and not os.path.isdir(config.targets_dir):
            problems.append(f"targets_dir: {config.targets_dir} is not a directory that can be read")
        stamps = self._stamps_of(config)
        self._stamps = stamps
        if config.targets_file and config.targets_file not in stamps:
            problems.append(f"targets_file: cannot read {config.targets_file}: no such file")
        taken = {t.name: "the configuration file" for t in config.targets}
        known: dict[str, _Known] = {}
        for path in self.paths(config):
            stamp = stamps.get(path)
            before = self._known.get(path)
            if before is not None and before.stamp == stamp and stamp is not None:
                entry = before
            else:
                try:
                    entry = _Known(stamp, self._read_one(path, config))
                except ConfigError as exc:
                    entry = _Known(stamp, before.targets if before is not None else (), tuple(exc.problems))
            clashes = [t.name for t in entry.targets if t.name in taken]
            if clashes:
                # Refused, as the other problems; read again next time (the other file may change).
                kept = before.targets if before is not None else ()
                if any(t.name in taken for t in kept):
                    kept = ()
                entry = _Known(None, kept, tuple(
                    f"{path}: targets: target name {name!r} is already used in {taken[name]}; each target name once"
                    for name in clashes))
            known[path] = entry
            problems += entry.problems
            taken.update({t.name: path for t in entry.targets})
        self._known = known
        return TargetsRead(tuple(t for entry in known.values() for t in entry.targets), tuple(problems))

    @staticmethod
    def _read_one(path: str, config: Config) -> tuple[Target, ...]:
        data, lines = _read_yaml(path)
        unknown = sorted(set(data) - {"targets"})
        if unknown:
            raise ConfigError([f"{path}:{lines.get((key,), 0)}: {key}: unknown key; a target file holds "
                               "'targets:', a list of {name, dsn, ...}" for key in unknown])
        raw = dict(data)
        raw["targets"] = fill_target_thresholds(data.get("targets") or [], config.thresholds.model_dump())
        sources: dict[KeyPath, str] = {}
        _mark(raw, "file", sources, ())
        try:
            parsed = _TargetsFile.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(_format(exc, raw, sources, lines, path)) from None
        names = [t.name for t in parsed.targets]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError([f"{path}: targets: duplicate target names {repeated}"])
        return parsed.targets


def with_file_targets(config: Config, targets: Sequence[Target]) -> Config:
    """*config* with the targets of its files after its own."""
    return config.model_copy(update={"targets": (*config.targets, *targets)})
