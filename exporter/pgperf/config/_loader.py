"""Loading the configuration from its four layers: profile < file < environment < flags.

The YAML file is read with ``yaml.safe_load`` (after ``yaml.compose``, to know the line of
every key); environment variables are ``PGPERF_`` plus the key path in capitals
(``PGPERF_THRESHOLDS_SLOW_QUERY_TIME_MS``; a list of URLs comma-separated); flags come from
the command line. The merged result is validated once; every problem is reported together,
each with where it came from (file and line, environment variable or flag), its key path
and the reason.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from .._types import split_commas
from ..redact import redact
from ._schema import PROFILES, Config, load_profile

__all__ = ["ConfigError", "env_variables", "load_config", "load_profile"]

Path = tuple[str | int, ...]

ENV_PREFIX = "PGPERF_"
# Variables that are not configuration keys but are read by pgperf.
_ENV_SPECIAL = {"PGPERF_CONFIG", "PGPERF_PROFILE"}
DEFAULT_PROFILE = "production"


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None:
        for arg in get_args(annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                return None  # lists/unions of models (targets) have no env form
    return None


def _keys_at(path: Path) -> list[str]:
    """The setting names allowed under *path* (list indices skipped), for "did you mean"."""
    model: type[BaseModel] | None = Config
    for part in path:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        model = None
        for arg in (field.annotation, *get_args(field.annotation)):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                model = arg
            elif get_origin(arg) is not None:
                model = next((a for a in get_args(arg) if isinstance(a, type) and issubclass(a, BaseModel)), model)
    return [f.alias or n for n, f in model.model_fields.items()] if model is not None else []


def _comma_separated(field: FieldInfo) -> bool:
    """A list setting that also takes one comma-separated string (``CommaList``)."""
    return any(getattr(m, "func", None) is split_commas for m in field.metadata)


def env_variables(model: type[BaseModel] = Config, prefix: Path = ()) -> dict[str, Path]:
    """Map every scalar setting to its environment variable: ``PGPERF_A_B`` -> ``(a, b)``."""
    out: dict[str, Path] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = prefix + (key,)
        sub = _model_of(field.annotation)
        if sub is not None:
            out.update(env_variables(sub, path))
        elif get_origin(field.annotation) is tuple and not _comma_separated(field):
            continue  # lists (targets, database patterns) are configured in the file only
        else:
            out[ENV_PREFIX + "_".join(str(p) for p in path).upper()] = path
    return out


def _holds_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_holds_secret(arg) for arg in get_args(annotation))


def _secret_keys(model: type[BaseModel] = Config) -> set[str]:
    """Names of the settings whose value is a secret: every SecretStr field, at any depth
    (lists and unions of models included), and the DSNs."""
    keys = {"dsn"}
    for name, field in model.model_fields.items():
        if _holds_secret(field.annotation):
            keys.add(field.alias or name)
        for arg in (field.annotation, *get_args(field.annotation)):
            for inner in (arg, *get_args(arg)):
                if isinstance(inner, type) and issubclass(inner, BaseModel) and inner is not model:
                    keys |= _secret_keys(inner)
    return keys


#: Keys whose input an error message never shows.
SECRET_KEYS = frozenset(_secret_keys())


def _lines(text: str) -> dict[Path, int]:
    """Line number of every key and list item of a YAML document."""
    lines: dict[Path, int] = {}

    def walk(node: yaml.Node, path: Path) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                sub = path + (str(key_node.value),)
                lines[sub] = key_node.start_mark.line + 1
                walk(value_node, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return lines


def _read_yaml(path: str) -> tuple[dict[str, Any], dict[Path, int]]:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the configuration file: {exc.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
        lines = _lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}: not valid YAML: {problem}"]) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping of settings, not {type(data).__name__}"])
    return data, lines


def _merge(base: dict[str, Any], layer: Mapping[str, Any], source: str, sources: dict[Path, str], path: Path = ()) -> None:
    for key, value in layer.items():
        sub = path + (key,)
        sources[sub] = source
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, source, sources, sub)
        else:
            base[key] = _copy(value)
            if isinstance(value, Mapping):
                _mark(value, source, sources, sub)


def _mark(value: Mapping[str, Any], source: str, sources: dict[Path, str], path: Path) -> None:
    for key, sub in value.items():
        sources[path + (key,)] = source
        if isinstance(sub, Mapping):
            _mark(sub, source, sources, path + (key,))


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _nest(path: Path, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    for key in path[:-1]:
        node = node.setdefault(str(key), {})
    node[str(path[-1])] = value
    return out


def _env_layer(env: Mapping[str, str], problems: list[str]) -> tuple[dict[str, Any], dict[Path, str]]:
    known = env_variables()
    layer: dict[str, Any] = {}
    names: dict[Path, str] = {}
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in _ENV_SPECIAL:
            continue
        path = known.get(name)
        if path is None:
            guess = difflib.get_close_matches(name, list(known), n=1)
            hint = f" (did you mean {guess[0]}?)" if guess else ""
            problems.append(f"environment variable {name}: not a pgperf setting{hint}")
            continue
        _merge(layer, _nest(path, value), "", {})
        names[path] = f"environment variable {name}"
    if "dsn" not in layer and env.get("DATA_SOURCE_NAME"):
        layer["dsn"] = env["DATA_SOURCE_NAME"]
        names[("dsn",)] = "environment variable DATA_SOURCE_NAME"
    return layer, names


def _loc_path(data: Any, loc: tuple[Any, ...]) -> Path:
    """The part of a pydantic error location that names keys of the input (drops union
    member tags such as ``bool`` or ``literal['auto']``)."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node or isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str):
            path.append(part)  # a missing or unknown key: name it and stop
            break
        else:
            break
        path.append(part)
    return tuple(path)


def _where(path: Path, sources: dict[Path, str], lines: dict[Path, int], file: str | None) -> str:
    for n in range(len(path), -1, -1):
        prefix = path[:n]
        source = sources.get(prefix)
        if source is None:
            continue
        if source == "file" and file:
            # The line of the deepest key or list item known (``targets[2].dsn``), not
            # only of the key the value came under.
            line = next((lines[path[:m]] for m in range(len(path), n - 1, -1) if path[:m] in lines), None)
            return f"{file}:{line}" if line else file
        return source
    return "configuration"


#: Which layer wins, first: where a problem comes from is named in this order.
_PRECEDENCE = ("flag ", "environment variable ", "file", "profile ")


def _where_under(path: Path, sources: dict[Path, str], lines: dict[Path, int], file: str | None) -> str:
    """Where the settings under the mapping *path* come from, for a problem found with them
    together (``thresholds``: the warning level must be below the critical one), each
    origin once and the user's own first: ``environment variable
    PGPERF_THRESHOLDS_CONNECTION_UTILIZATION_WARNING_PERCENT and profile production``."""
    found: list[str] = []
    for sub, source in sources.items():
        if len(sub) <= len(path) or sub[:len(path)] != path:
            continue
        if any(other[:len(sub)] == sub and len(other) > len(sub) for other in sources):
            continue  # a mapping of its own: its leaves say where they come from
        if source == "file":
            shown = _where(path, {path: "file"}, lines, file)
        elif source in ("env", "environment", "flag", "command line"):
            shown = _where(sub, sources, lines, file)
        else:
            shown = source
        if shown not in found:
            found.append(shown)
    if not found:
        return _where(path, sources, lines, file)
    found.sort(key=lambda s: next((i for i, p in enumerate(_PRECEDENCE) if s.startswith(p)), 2))
    return " and ".join(found)


def _format(exc: ValidationError, data: dict[str, Any], sources: dict[Path, str], lines: dict[Path, int], file: str | None) -> list[str]:
    grouped: dict[Path, list[str]] = {}
    for err in exc.errors(include_url=False):
        path = _loc_path(data, tuple(err["loc"]))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key (not a pgperf setting); check its spelling and indentation"
            guess = difflib.get_close_matches(str(path[-1]), _keys_at(path[:-1]), n=1) if path else []
            if guess:
                message += f"; did you mean {guess[0]!r}?"
        elif err["type"] == "too_short" and isinstance(err["input"], (str, SecretStr)):
            message = f"must be at least {err['ctx']['min_length']} characters long"
        elif err["type"] != "missing" and "input" in err and not isinstance(err["input"], (dict, list)):
            loc = {str(part) for part in (*path, *err["loc"])}
            shown = "'...'" if loc & SECRET_KEYS else redact(repr(err["input"]))
            message = f"{message} (got {shown})"
        bucket = grouped.setdefault(path, [])
        if message not in bucket:
            bucket.append(message)
    out = []
    for path, messages in grouped.items():
        key = ".".join(str(p) for p in path) or "(top level)"
        node: Any = data
        for part in path:
            node = node[part] if isinstance(node, dict) and part in node else None
        # A problem with a whole section (two of its settings disagree) comes from where
        # its settings do, which can be several places.
        where = _where_under(path, sources, lines, file) if isinstance(node, dict) and path else \
            _where(path, sources, lines, file)
        out.append(f"{where}: {key}: {'; or '.join(messages)}")
    return out


def load_config(
    *,
    config_file: str | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
    flag_names: Mapping[Path, str] | None = None,
) -> Config:
    """Build the configuration; raise ConfigError listing every problem found.

    *flags* is a nested mapping of values given on the command line and *flag_names* the
    flag that set each path (for messages).
    """
    env = os.environ if env is None else env
    flags = flags or {}
    problems: list[str] = []
    config_file = config_file or env.get("PGPERF_CONFIG") or None

    file_data: dict[str, Any] = {}
    lines: dict[Path, int] = {}
    if config_file:
        file_data, lines = _read_yaml(config_file)

    env_data, env_names = _env_layer(env, problems)

    profile = flags.get("profile") or env.get("PGPERF_PROFILE") or file_data.get("profile") or DEFAULT_PROFILE
    if profile not in PROFILES:
        where = (
            flag_names.get(("profile",), "--profile") if flags.get("profile") and flag_names
            else "environment variable PGPERF_PROFILE" if env.get("PGPERF_PROFILE")
            else f"{config_file}:{lines.get(('profile',), 0)}"
        )
        raise ConfigError([f"{where}: profile: unknown profile {profile!r}; choose one of {', '.join(PROFILES)}"])

    if "dsn" in file_data and file_data.get("targets"):
        problems.append(f"{config_file}:{lines.get(('dsn',), 0)}: dsn: set either dsn or targets, not both")

    merged: dict[str, Any] = {}
    sources: dict[Path, str] = {}
    _merge(merged, load_profile(str(profile)), f"profile {profile}", sources)
    _merge(merged, file_data, "file", sources)
    env_sources: dict[Path, str] = {}
    _merge(merged, env_data, "env", env_sources)
    for path in env_sources:
        sources[path] = env_names.get(path, "environment")
    flag_sources: dict[Path, str] = {}
    _merge(merged, flags, "flag", flag_sources)
    for path in flag_sources:
        sources[path] = (flag_names or {}).get(path, "command line")
    merged["profile"] = profile
    # A dsn from the environment or a flag replaces the file's targets (documented).
    if ("dsn" in env_data or "dsn" in flags) and "targets" in merged:
        merged.pop("targets")

    try:
        config = Config.model_validate(merged)
    except ValidationError as exc:
        problems.extend(_format(exc, merged, sources, lines, config_file))
    else:
        try:
            config.resolved_targets()
        except ValueError as exc:
            where = _where(("dsn",), sources, lines, config_file) if "dsn" in merged else (
                "libpq environment variables (PGHOST, PGPORT, PGDATABASE, PGUSER)")
            problems.append(f"{where}: dsn: {exc}")
    if problems:
        raise ConfigError(problems)
    return config
