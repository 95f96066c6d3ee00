"""Overrides of a config's fields by dotted path: the command line's ``--set key=value``.

``--set n_train=5000 --set models.M-flow.train.epochs=2`` changes the YAML mapping read from the
file before anything checks it, so an override is validated exactly like the file (the message
names the field path, what was expected and what was got) and enters the run's content keys like
the file's value: a run directory keeps what the overrides leave unchanged and redoes what they
change.

Paths: keys of mappings joined by ``.``; a list of mappings with ``name`` fields (``models``) is
addressed by the name (a name that holds dots is matched whole), any other list by index
(``observed.theta.0``). A missing key is created (the checks then refuse an unknown field, naming
the nearest allowed ones). Values are parsed as YAML (``yaml.safe_load``): ``2`` is an
integer, ``2.0`` and ``1e-3`` numbers (YAML 1.1 alone would read ``1e-3`` as a string), ``true`` a
boolean, ``null`` None, ``[0, 1]`` a list and anything else a string.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from mfinfer.errors import ConfigError
from mfinfer.schema import nearest

__all__ = ["apply_overrides", "parse_assignment"]

_EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"key.path=value"`` -> ``("key.path", value)``, the value parsed as YAML.

    Example:
        >>> parse_assignment("models.AF.train.epochs=2")
        ('models.AF.train.epochs', 2)
        >>> parse_assignment("device=cpu")
        ('device', 'cpu')

    Raises:
        ConfigError: no ``=``, an empty or malformed path, or a value that is not valid YAML.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a dotted KEY, e.g. "
                          "--set n_train=5000 or --set models.AF.train.epochs=2")
    if any(not part.strip() for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: the key {key!r} has an empty part; join field names "
                          "with single dots, e.g. models.AF.train.epochs")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"--set {key}: the value {value!r} is not valid YAML ({problem}); quote "
                          f"a string, e.g. --set '{key}=\"...\"'") from None
    if isinstance(parsed, str) and _EXPONENT.fullmatch(value.strip()):
        parsed = float(parsed)  # YAML 1.1 reads 1e-3 (no dot) as a string
    return key, parsed


def apply_overrides(data: Any, overrides: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Any:
    """A copy of the config mapping ``data`` with each ``(dotted path, value)`` set, in order.

    Example:
        >>> cfg = {"n_train": 100, "models": [{"name": "AF", "kind": "AmbientFlow"}]}
        >>> apply_overrides(cfg, {"n_train": 50, "models.AF.train.epochs": 2})
        {'n_train': 50, 'models': [{'name': 'AF', 'kind': 'AmbientFlow', 'train': {'epochs': 2}}]}

    Raises:
        ConfigError: a path through something that is not a mapping or list, a model name that
            the config does not have (its names listed, nearest first), or an index out of range.
    """
    items = overrides.items() if isinstance(overrides, Mapping) else overrides
    out = copy.deepcopy(data) if data is not None else {}
    if not isinstance(out, dict):
        return out  # not a mapping: the checks say what the file should hold
    for key, value in items:
        _set(out, key, value)
    return out


def _set(root: dict, key: str, value: Any) -> None:
    parts, node = key.split("."), root
    where: list[str] = []
    i = 0
    while True:
        last = i == len(parts) - 1
        if isinstance(node, dict):
            part = parts[i]
            if last:
                node[part] = value
                return
            if node.get(part) is None:
                node[part] = {}
            node, where, i = node[part], [*where, part], i + 1
        elif isinstance(node, list):
            index, used = _item(node, parts[i:], ".".join(where), key)
            if i + used == len(parts):
                node[index] = value
                return
            node, where, i = node[index], [*where, ".".join(parts[i:i + used])], i + used
        else:
            raise ConfigError(f"--set {key}: {'.'.join(where)} is {node!r} ({type(node).__name__}), "
                              "not a section with fields; set it as a whole, e.g. "
                              f"--set {'.'.join(where)}=...")


def _item(items: list, parts: list[str], where: str, key: str) -> tuple[int, int]:
    """The index of the list item that ``parts`` start with and how many parts name it: a named
    item (``models``) by its name, longest match first, else an integer index."""
    named = [item.get("name") for item in items if isinstance(item, dict)]
    names = [n for n in named if isinstance(n, str)]
    if names and len(names) == len(items):
        for used in range(len(parts), 0, -1):
            name = ".".join(parts[:used])
            if name in names:
                return names.index(name), used
        raise ConfigError(f"--set {key}: no entry of {where} named {parts[0]!r}; its names are "
                          f"(nearest first) {nearest(parts[0], names)}")
    try:
        index = int(parts[0])
    except ValueError:
        raise ConfigError(f"--set {key}: {where} is a list; address its items by index 0 to "
                          f"{len(items) - 1}, got {parts[0]!r}") from None
    if not -len(items) <= index < len(items):
        raise ConfigError(f"--set {key}: {where} has {len(items)} item(s); index {index} is out of "
                          "range")
    return index, 1
