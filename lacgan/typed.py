"""Frozen dataclass configs from plain dicts (JSON, flow parameters, `--set` overrides), strictly.

`build(Config, {"train": {"steps": 10}}, "job.lacgan")` builds nested dataclasses from their type hints: an
unknown field, a value of the wrong type or a value the dataclass refuses is a `ConfigError` naming the dotted
path of the field (`job.lacgan.train.stepz: unknown field`), so a typo fails where the config is composed, before
any work starts. Lists become tuples where the hint says tuple; ints are accepted where a float is expected.
`merge` lays a partial dict of changes over a full one, with the same naming of unknown keys.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union


class ConfigError(ValueError):
    """A config dict that does not describe the config: the message names the field and the problem."""


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def build(tp, value, where: str = "config"):
    """`value` (dicts, lists, scalars) as an instance of type `tp`; ConfigError naming `where` otherwise."""
    if tp is Any or tp is object:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a {tp.__name__} mapping, got {value!r}")
        names = [f.name for f in dataclasses.fields(tp) if f.init]
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown field of {tp.__name__} (known: {', '.join(names)})")
        hints = _hints(tp)
        kwargs = {k: build(hints[k], v, f"{where}.{k}") for k, v in value.items()}
        try:
            return tp(**kwargs)
        except (ValueError, TypeError) as e:  # the dataclass's own checks (__post_init__)
            raise ConfigError(f"{where}: {e}") from None
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{where}: may not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return build(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} is none of {_type_name(tp)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(build(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        if not args:
            return tuple(value)
        return tuple(build(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: build(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp in (str, bool):
        if not isinstance(value, tp):
            raise ConfigError(f"{where}: expected {'a string' if tp is str else 'true or false'}, got {value!r}")
        return value
    return value


def read_config(cls, path, where: str, changes: dict | None = None, unwrap: str | None = None):
    """Config `cls` from the JSON file `path` (its value at key `unwrap` when the file has one), with `changes`
    laid over its top level, built strictly; a ConfigError naming the file and the field otherwise."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable JSON config ({e})") from None
    if unwrap is not None and isinstance(data, dict) and unwrap in data:
        data = data[unwrap]
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config is a JSON object of {cls.__name__} fields")
    try:
        return build(cls, {**data, **(changes or {})}, where)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def to_dict(obj):
    """A (nested) dataclass as plain JSON-able data: tuples as lists, dicts and None kept."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def merge(base: dict, changes: dict, where: str = "config", open_keys: tuple[str, ...] = (),
          strict: bool = True) -> dict:
    """`changes` laid over `base` (nested dicts merged key by key; other values replaced). With `strict`, a key
    `base` lacks is a ConfigError naming it, unless its parent is one of `open_keys` (dotted paths of free-form
    mappings)."""
    out = dict(base)
    for key, value in changes.items():
        path = f"{where}.{key}"
        if strict and key not in base and where not in open_keys:
            raise ConfigError(f"{path}: unknown field (known: {', '.join(base)})")
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = merge(base[key], value, path, open_keys, strict)
        else:
            out[key] = value
    return out


def overlay(a: dict, b: dict) -> dict:
    """`b` laid over `a`, nested dicts merged key by key, nothing checked (compose checks the result)."""
    return merge(a, b, strict=False)


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """'lacgan.train.steps=3000' -> (['lacgan', 'train', 'steps'], 3000): the value is JSON when it parses as
    JSON (numbers, true/false/null, lists, objects), else the plain string."""
    import json

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected FIELD=VALUE, e.g. lacgan.train.steps=3000")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return [k.strip() for k in key.split(".")], value


def nest(assignments: list[str]) -> dict:
    """['a.b=1', 'a.c=2'] -> {'a': {'b': 1, 'c': 2}}."""
    out: dict = {}
    for text in assignments:
        keys, value = parse_assignment(text)
        node = out
        for k in keys[:-1]:
            node = node.setdefault(k, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text!r}: {k} is set to a value and given fields too")
        node[keys[-1]] = value
    return out
