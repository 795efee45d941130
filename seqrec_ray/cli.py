"""Command-line flags generated from a frozen config dataclass: each knob is defined once.

    parser = argparse.ArgumentParser()
    cli.add_flags(parser, TrainConfig, title="training", flags={"use_gap": cli.Flag(off=("--no-gap",))})
    args = parser.parse_args(argv)
    try:
        config = cli.build(TrainConfig, args)
    except ValueError as exc:  # a value that does not parse, or one __post_init__ refuses
        return cli.fail(exc)  # "error: ..." on stderr, exit code 2

- Field ``foo_bar`` becomes ``--foo-bar``. Its type comes from the annotation: ``int``,
  ``float``, ``str`` (each optionally ``| None``), ``tuple[int, ...]`` written ``5,10,20``;
  a ``bool`` field becomes the pair ``--foo-bar`` / ``--no-foo-bar``. A field without a
  default is a required flag.
- Help: the field's ``dataclasses.field(metadata={"help": ...})``, then its default.
- A flag that is not given leaves the dataclass default, so defaults resolved in
  ``__post_init__`` (None = "the model's default") keep working.
- ``flags`` maps a field to a :class:`Flag` where the generated flag is not right: an
  established spelling (``--no-gap``), other units, a parser (``--cutoff 2017-12-02``).
- A field holding another config dataclass is not a flag: give that class its own
  ``add_flags`` call and pass the built value to ``build``. Any other annotation without a
  ``Flag(type=...)`` is a TypeError when the parser is built, never a silently missing flag.
- Values are converted in ``build``, not by argparse, so a job that calls ``main(argv)``
  gets every bad value as one ValueError that names the flag or the field.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING
from typing import Any

USAGE_ERROR = 2  # the exit code of a bad command line (argparse's own)
DATACLASS_DEFAULT = object()  # Flag.default: leave the field's own default when the flag is not given


@dataclasses.dataclass(frozen=True)
class Flag:
    """How one field appears on the command line where the generated flag is not right."""

    names: tuple[str, ...] = ()  # option strings (bool: those that set True); () = --field-name
    off: tuple[str, ...] = ()  # bool fields: option strings that set False; () = --no-field-name
    type: Callable[[str], Any] | None = None  # text -> field value; None = from the annotation
    help: str | None = None  # None = the field's metadata["help"]
    default: Any = DATACLASS_DEFAULT  # the value when the flag is not given


def add_flags(parser, cls: type, *, flags: Mapping[str, str | Flag] | None = None,
              exclude: Iterable[str] = (), title: str | None = None):
    """Add one flag per field of the config dataclass ``cls`` to ``parser`` (or an argument
    group); with ``title``, into a new group. A ``str`` in ``flags`` renames the flag.
    Returns the parser or group the flags went to."""
    flags, exclude = dict(flags or {}), set(exclude)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = (set(flags) | exclude) - known
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
    target = parser.add_argument_group(title) if title else parser
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.init and f.name not in exclude:
            spec = flags.get(f.name, Flag())
            _add_field(target, cls, f, hints[f.name], Flag(names=(spec,)) if isinstance(spec, str) else spec)
    return target


def given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The values of ``cls``'s fields on the command line (converted), by field name."""
    prefix, known = _prefix(cls), {f.name for f in dataclasses.fields(cls)}
    values = {}
    for key, value in vars(args).items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            if name not in known:
                raise TypeError(f"{cls.__name__} has no field {name!r} (namespace entry {key!r})")
            values[name] = value.value() if isinstance(value, _Given) else value
    return values


def build(cls: type, args: argparse.Namespace, base: Any = None, **values: Any):
    """``cls`` from its flags in ``args``, ``values`` (the job's own, e.g. nested configs)
    winning over them; with ``base``, a copy of that instance with the given fields replaced.
    Fields not given keep their default (or ``base``'s value). ValueError names a bad value."""
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {', '.join(sorted(unknown))}")
    fields = {**given(args, cls), **values}
    return dataclasses.replace(base, **fields) if base is not None else cls(**fields)


def dest(cls: type, name: str) -> str:
    """The namespace attribute ``cls.name``'s flag stores into (for a hand-written alias)."""
    return _prefix(cls) + name


def fail(error: Exception | str) -> int:
    """Print ``error: ...`` to stderr; the exit code for a bad command line."""
    print(f"error: {error}", file=sys.stderr)
    return USAGE_ERROR


# ------------------------------------------------------------------------------ internals


def _prefix(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}."


@dataclasses.dataclass(frozen=True)
class _Given:
    """A flag's text as typed, converted when the config is built."""

    option: str
    text: str
    convert: Callable[[str], Any]

    def value(self):
        try:
            return self.convert(self.text)
        except ValueError as exc:
            raise ValueError(f"{self.option}: {exc}") from None


class _Text(argparse.Action):
    def __init__(self, option_strings, dest, convert, **kwargs):
        self.convert = convert
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, _Given(option_string or self.option_strings[0], values, self.convert))


class _Switch(argparse.Action):
    """``--foo`` sets True, its ``off`` spellings (``--no-foo``) set False."""

    def __init__(self, option_strings, dest, off=(), **kwargs):
        self.off = frozenset(off)
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, option_string not in self.off)


def _add_field(target, cls: type, f: dataclasses.Field, hint: Any, spec: Flag) -> None:
    hint = _without_none(hint)
    flag = "--" + f.name.replace("_", "-")
    names = spec.names or (flag,)
    default = _field_default(f) if spec.default is DATACLASS_DEFAULT else spec.default
    kwargs: dict[str, Any] = {
        "dest": dest(cls, f.name),
        "default": argparse.SUPPRESS if spec.default is DATACLASS_DEFAULT else spec.default,
        "help": _help(spec.help if spec.help is not None else f.metadata.get("help", ""), default),
    }
    if hint is bool and spec.type is None:
        off = spec.off or ("--no-" + f.name.replace("_", "-"),)
        target.add_argument(*names, *off, action=_Switch, off=off, **kwargs)
        return
    word = names[0].lstrip("-").replace("-", "_").upper()  # argparse's own metavar: --run-name RUN_NAME
    if spec.type is not None:
        convert, metavar = spec.type, word
    elif dataclasses.is_dataclass(hint):
        return  # a nested config: its class gets its own add_flags call
    else:
        convert, metavar = _converter(cls, f.name, hint)
        metavar = metavar or word
    required = default is MISSING
    target.add_argument(*names, action=_Text, convert=convert, metavar=metavar, required=required, **kwargs)


def _without_none(hint: Any) -> Any:
    """``X | None`` -> ``X`` (None is only ever a default, never typed on the command line)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return hint


_SCALARS = {int: ("an int", "INT"), float: ("a number", "FLOAT"), str: (None, None)}


def _converter(cls: type, name: str, hint: Any) -> tuple[Callable[[str], Any], str | None]:
    """(text -> value, metavar or None for the flag's own name) for a supported annotation."""
    if hint in _SCALARS:
        return _scalar(hint), _SCALARS[hint][1]
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis and args[0] in _SCALARS:
        item = _scalar(args[0])
        what = {int: "ints", float: "numbers", str: "strings"}[args[0]]

        def items(text: str) -> tuple:
            try:
                return tuple(item(part.strip()) for part in text.split(",") if part.strip())
            except ValueError:
                raise ValueError(f"expected comma-separated {what}, got {text!r}") from None

        metavar = _SCALARS[args[0]][1] or "STR"
        return items, f"{metavar},{metavar},..."
    raise TypeError(f"no command-line flag for {cls.__name__}.{name}: {hint!r}; "
                    "give it a Flag(type=...) or exclude it")


def _scalar(kind: type) -> Callable[[str], Any]:
    what = _SCALARS[kind][0]
    if what is None:
        return kind

    def convert(text: str):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"expected {what}, got {text!r}") from None

    return convert


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def _help(text: str, default: Any) -> str:
    if default is not MISSING and "default" not in text.lower():
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        shown = {True: "on", False: "off"}.get(shown, shown) if isinstance(shown, bool) else shown
        text = f"{text} (default: {shown})" if text else f"default: {shown}"
    return text.replace("%", "%%")
