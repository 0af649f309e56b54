"""Command-line options derived from the config dataclasses: an option is added in one place.

Every field with ``metadata={"help": ...}`` becomes an option named after it (``pca_k`` →
``--pca-k``), or a positional argument when it has no default; a nested config dataclass
(``RunConfig.featurize``) adds its own fields. The type, default and choices come from the field:
``bool`` is a flag (``--no-x`` when it defaults to true), ``X | None`` takes an X, a fixed tuple
of floats takes ``1,2,3``, ``tuple[X, ...]`` takes one or more values (``--reg-params 1e-4 1e-3``,
or, with ``repeat``, values gathered over repeated options), ``Literal`` gives choices. Optional
metadata: ``flag`` (another option name), ``group`` (a help section), ``choices`` (of each value),
``repeat``, ``default_text`` (how the default reads).
The help of every option ends with its default. Values are checked by the dataclass itself
(``__post_init__``), so the Python API and the command refuse the same things.

This is plain ``argparse`` driven by :func:`dataclasses.fields` rather than a library such as
tyro or simple-parsing: both build the whole parser themselves, and fruitspark's ``cloud``
sub-commands and the ``--`` passthrough to the cluster job are argparse sub-parsers that must
stay as they are; simple-parsing also reads help from docstrings, not from field metadata.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any


def _triple(text: str) -> tuple[float, ...]:
    values = tuple(float(part) for part in text.split(","))
    if len(values) != 3:
        raise argparse.ArgumentTypeError("give three comma-separated numbers, e.g. 127,127,127")
    return values


def _bare(kind: Any) -> Any:
    """``X | None`` to ``X``."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        options = [argument for argument in typing.get_args(kind) if argument is not type(None)]
        return options[0] if len(options) == 1 else str
    return kind


def _default_of(item: dataclasses.Field) -> Any:
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return dataclasses.MISSING


def add_options(
    parser: argparse.ArgumentParser, config: type, prefix: str = "", groups: dict | None = None
) -> None:
    """Add an argument for every documented field of ``config`` (and of nested configs)."""
    hints = typing.get_type_hints(config)
    groups = {} if groups is None else groups
    for item in dataclasses.fields(config):
        kind = _bare(hints[item.name])
        if dataclasses.is_dataclass(kind):
            add_options(parser, kind, prefix=f"{prefix}{item.name}.", groups=groups)
            continue
        if "help" not in item.metadata:
            continue
        group_name = item.metadata.get("group")
        target = parser
        if group_name:
            target = groups.get(group_name) or parser.add_argument_group(group_name)
            groups[group_name] = target
        _add_field(target, item, kind, f"{prefix}{item.name}")


def _shown_default(item: dataclasses.Field, default: Any) -> str:
    if "default_text" in item.metadata:
        return str(item.metadata["default_text"])
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, tuple):
        return " ".join(map(str, default)) or "none"
    return "unset" if default is None else str(default)


def _add_field(target, item: dataclasses.Field, kind: Any, dest: str) -> None:
    default = _default_of(item)
    text = item.metadata["help"]
    if default is dataclasses.MISSING:
        target.add_argument(dest, metavar=item.name.upper(), help=text)
        return
    flag = item.metadata.get("flag", "--" + item.name.replace("_", "-"))
    if kind is bool and default:
        flag = f"--no-{flag.removeprefix('--')}"
        text = f"{text}; {flag} turns it off"
    options: dict[str, Any] = {
        "dest": dest,
        "default": default,
        "help": f"{text} (default: {_shown_default(item, default)})",
    }
    if kind is bool:
        target.add_argument(flag, action="store_false" if default else "store_true", **options)
        return
    choices = item.metadata.get("choices")
    if typing.get_origin(kind) is typing.Literal:
        choices = typing.get_args(kind)
        kind = type(choices[0])
    elif typing.get_origin(kind) is tuple:
        arguments = typing.get_args(kind)
        if len(arguments) == 2 and arguments[1] is Ellipsis:
            kind = arguments[0]
            options["nargs"] = "+"
            if item.metadata.get("repeat"):
                options.update(action="extend", default=list(default))
        else:
            kind = _triple
    metavar = None if choices else flag.removeprefix("--").replace("-", "_").upper()
    target.add_argument(flag, type=kind, choices=choices, metavar=metavar, **options)


def build(config: type, namespace: argparse.Namespace, prefix: str = "", **given: Any) -> Any:
    """The ``config`` instance the parsed options describe (``given`` fills the rest)."""
    hints = typing.get_type_hints(config)
    values = dict(vars(namespace))
    kwargs: dict[str, Any] = {}
    for item in dataclasses.fields(config):
        key = f"{prefix}{item.name}"
        kind = _bare(hints[item.name])
        if dataclasses.is_dataclass(kind):
            kwargs[item.name] = build(kind, namespace, prefix=f"{key}.")
        elif key in values:
            value = values[key]
            kwargs[item.name] = tuple(value) if isinstance(value, list) else value
    return config(**{**kwargs, **given})
