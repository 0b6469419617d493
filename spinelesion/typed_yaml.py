"""Frozen dataclasses from plain YAML dicts: type conversion, checks, overrides (the config's machinery).

:func:`build` turns a dict into a frozen dataclass, field by field by its type hints (nested
dataclasses, ``X | None``, ``Literal``, tuples, dicts, bool/int/float/str), refusing unknown keys
(with a suggestion) and calling each object's ``check()``, whose :class:`Invalid` it turns into a
ConfigError naming the key path. :func:`apply_override` applies one ``--set key.sub=value``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from spinelesion.errors import ConfigError


class Invalid(Exception):
    """Raised by ``check()`` methods: (field name, message); the loader adds the key path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(key, message)
        self.key, self.message = key, message


def read_yaml(path: str | os.PathLike, *, what: str = "config") -> Any:
    """The parsed content of a YAML file (None when empty); ConfigError naming the file when it is
    missing or not valid YAML (``what`` says which file it was meant to be)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}".replace("\n", " ")) from None


def apply_override(raw: dict, item: str) -> None:
    """Apply one ``key.sub=value`` override to ``raw`` in place (value parsed by yaml.safe_load)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key.sub=value")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"--set {key}: cannot parse value {text!r}") from None
    parts = key.strip().split(".")
    node: Any = raw
    for depth, part in enumerate(parts):
        here = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--set {key}: {here!r} is not an index of a list of {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"--set {key}: {'.'.join(parts[:depth])!r} is not a section")


def build(cls: type, raw: Any, path: str, source: str) -> Any:
    where = path or "the top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where}: expected a mapping, got {_show(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {_join(path, near[0])!r}?" if near else ""
            raise ConfigError(f"{source}: unknown config key {_join(path, str(key))!r}{hint}")
    values = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        if name in raw:
            values[name] = _convert(hints[name], raw[name], key_path, source)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{source}: missing config key {key_path!r}")
    obj = cls(**values)
    if hasattr(obj, "check"):
        try:
            obj.check()
        except Invalid as bad:
            raise ConfigError(f"{source}: {_join(path, bad.key)}: {bad.message}") from None
    return obj


def _convert(tp: Any, value: Any, path: str, source: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path, source)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path, source)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{source}: {path}: must be one of {', '.join(map(str, args))}; "
                              f"got {_show(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {path}: expected a list, got {_show(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{path}.{i}", source) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{source}: {path}: expected a list of {len(args)}, got {len(value)} items")
        return tuple(_convert(a, v, f"{path}.{i}", source) for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {path}: expected a mapping, got {_show(value)}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {path}: expected true or false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {path}: expected an integer, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {path}: expected a number, got {_show(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {path}: expected text, got {_show(value)}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"config type {tp!r} at {path} is not supported")  # a bug here, not user error


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value
