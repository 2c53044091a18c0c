"""Loading the configuration: a YAML file, ``${ENV}`` / ``${ENV:default}`` in its
values, ``CDC_<DATABASE>_<KEY>`` variables over each database section, then strict
validation into :class:`~cdc_app.settings.Settings`.

Every failure is a :class:`ConfigError` whose text names the key at fault, so the CLI
can print one line instead of a traceback. Unknown keys and duplicate keys are errors:
a typo in a configuration file must never be silently ignored.
"""

from __future__ import annotations

import enum
import functools
import os
import re
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
import yaml
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
)
from cattrs.strategies import configure_tagged_union
from cattrs.v import transform_error

from cdc_app.availability import AdapterUnavailableError, adapters_in_use, check_available
from cdc_app.settings import (
    DATABASES,
    TAGGED,
    DeadLetters,
    DestinationSettings,
    Offsets,
    SchemaHistory,
    SettingError,
    Settings,
    Source,
    mask_secret,
)

__all__ = ["ConfigError", "load_settings", "read_yaml", "render_settings", "settings_from"]

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


class ConfigError(Exception):
    """A configuration that cannot be used; ``problems`` each name their key."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(dict.fromkeys(problems))
        super().__init__("; ".join(self.problems))


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """The parsed document at ``path``, or a ConfigError naming the file (and line)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: {exc.strerror or exc}"]) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError([f"{path}{where}: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None


def load_settings(path: str | Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the file at ``path`` with the environment (``os.environ`` unless
    given) applied."""
    document = read_yaml(path)
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise ConfigError([f"{path}: expected a mapping of sections at the top level"])
    return settings_from(document, os.environ if environ is None else environ)


def settings_from(document: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
    """Settings from an already parsed document: interpolate, override, validate."""
    resolved = _interpolate(document, environ, "")
    resolved = _override_databases(resolved, environ)
    converter = _converter()
    try:
        settings = converter.structure(resolved, Settings)
    except cattrs.BaseValidationError as exc:
        raise ConfigError(_problems(exc)) from None
    problems = list(_consistency(settings))
    if problems:
        raise ConfigError(problems)
    return settings


def render_settings(settings: Settings) -> str:
    """The settings as YAML, secrets masked: what ``config check`` prints."""
    return yaml.safe_dump(_printable(settings), sort_keys=False, default_flow_style=False)


def _interpolate(value: Any, environ: Mapping[str, str], path: str) -> Any:
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            where = f"{path}: " if path else ""
            hint = f"write ${{{name}:}} for a default"
            raise ConfigError([f"{where}environment variable {name} is not set ({hint})"])

        return _VARIABLE.sub(substitute, value)
    if isinstance(value, Mapping):
        return {
            key: _interpolate(item, environ, f"{path}.{key}" if path else str(key))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(item, environ, f"{path}[{i}]") for i, item in enumerate(value)]
    return value


def _override_databases(document: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Apply ``CDC_<DATABASE>_<KEY>`` variables, section by section: a section given
    only by variables is complete on its own, and one never needs another's variables.
    Only the keys a section has are read (``CDC_POSTGRES_PORT``, say, belongs to the
    test services), and a list is given comma-separated."""
    result = dict(document)
    for name, section_type in DATABASES.items():
        hints = typing.get_type_hints(section_type)
        overrides: dict[str, Any] = {}
        for field in attrs.fields(section_type):
            value = environ.get(f"CDC_{name.upper()}_{field.name.upper()}")
            if value is None:
                continue
            is_list = typing.get_origin(hints[field.name]) is tuple
            overrides[field.name] = [v.strip() for v in value.split(",")] if is_list else value
        section = result.get(name)
        if overrides and (section is None or isinstance(section, Mapping)):
            result[name] = {**(section or {}), **overrides}
    return result


def _consistency(settings: Settings) -> Iterable[str]:
    """What types alone cannot say: names must be unique, and every adapter asked for
    must be in this build with the database section it connects with."""
    if not settings.destinations:
        yield "destinations: at least one destination is required"
    names: set[str] = set()
    for index, destination in enumerate(settings.destinations):
        if destination.name in names:
            yield f"destinations[{index}].name: duplicate destination name {destination.name!r}"
        names.add(destination.name)
    for path, adapter_type in adapters_in_use(settings):
        try:
            check_available(settings, adapter_type)
        except AdapterUnavailableError as exc:
            yield f"{path}: {exc}"


def _problems(exc: Exception) -> list[str]:
    problems = []
    for line in transform_error(exc, path="$", format_exception=_describe):
        message, _, path = line.rpartition(" @ ")
        key = path.removeprefix("$").removeprefix(".")
        problems.append(f"{key}: {message}" if key else message)
    return problems


def _describe(exc: BaseException, expected: Any) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        keys = ", ".join(repr(k) for k in sorted(exc.extra_fields))
        allowed = ", ".join(f.name for f in attrs.fields(exc.cl))
        return f"unknown key {keys} " + (
            f"(expected one of: {allowed})" if allowed else "(no other keys are allowed)"
        )
    if isinstance(exc, KeyError):
        return "required key missing"
    if isinstance(exc, SettingError):
        return str(exc)
    return f"expected {_expected(expected)}"


def _expected(expected: Any) -> str:
    if isinstance(expected, type) and issubclass(expected, enum.Enum):
        return "one of: " + ", ".join(str(m.value) for m in expected)
    if typing.get_origin(expected) is tuple:
        return "a list"
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    args = [a for a in typing.get_args(expected) if a is not type(None)]
    if args and all(a in names for a in args):
        return names[args[0]]
    return names.get(expected, "a mapping")


@functools.cache
def _converter() -> cattrs.Converter:
    """The settings boundary's own converter: strict about types and keys, where the
    default one turns ``"a,b"`` into a tuple of characters and ``[1]`` into ``"[1]"``."""
    converter = cattrs.Converter(forbid_extra_keys=True)
    converter.register_structure_hook(str, _structure_str)
    # Before int's: bool is an int subclass, and would be refused as one.
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    for label, union in (
        ("source", Source),
        ("destination", DestinationSettings),
        ("offsets", Offsets),
        ("dead letter", DeadLetters),
        ("schema history", SchemaHistory),
    ):
        configure_tagged_union(union, converter, tag_generator=_tag, tag_name="type")
        dispatch = converter.get_structure_hook(union)
        converter.register_structure_hook(union, _checked_tag(dispatch, label))
    for sequence in (tuple[str, ...], tuple[DestinationSettings, ...]):
        structure = _list_only(converter.get_structure_hook(sequence))
        converter.register_structure_hook_func(_is(sequence), structure)
    return converter


def _is(expected: Any) -> Callable[[Any], bool]:
    return lambda type_: bool(type_ == expected)


def _structure_str(value: Any, _: type) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _structure_bool(value: Any, _: type) -> bool:
    """true/false, also as text (a value from ``${ENV}`` is a string)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise TypeError(f"expected true or false, got {value!r}")


def _structure_int(value: Any, _: type) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return int(value)
    raise TypeError(f"expected an integer, got {type(value).__name__}")


def _structure_float(value: Any, _: type) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return float(value)
    raise TypeError(f"expected a number, got {type(value).__name__}")


def _list_only(structure: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def hook(value: Any, type_: Any) -> Any:
        if isinstance(value, str | bytes | Mapping):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return structure(value, type_)

    return hook


def _tag(member: type) -> str:
    tag: str = member.TYPE  # type: ignore[attr-defined]
    return tag


def _checked_tag(dispatch: Callable[[Any, Any], Any], label: str) -> Callable[[Any, Any], Any]:
    """cattrs' tagged-union hook, after a check of the ``type`` key that names the
    choices when it is missing or wrong (cattrs reports a bare KeyError)."""
    by_type = {member.TYPE: member for member in TAGGED[label]}

    def hook(value: Any, union: Any) -> Any:
        if not isinstance(value, Mapping):
            raise SettingError("expected a mapping")
        chosen = value.get("type")
        if chosen is None:
            raise _at_key("type", KeyError("type"), TAGGED[label][0])
        if not isinstance(chosen, str) or chosen not in by_type:
            choices = ", ".join(by_type)
            problem = SettingError(f"unknown {label} type {chosen!r} (expected one of: {choices})")
            raise _at_key("type", problem, TAGGED[label][0])
        return dispatch(dict(value), union)

    return hook


def _at_key(key: str, exc: Exception, owner: type) -> ClassValidationError:
    """``exc`` as cattrs reports a failed attribute, so its path ends with ``key``."""
    exc.__notes__ = [AttributeValidationNote(f"Structuring @ attribute {key}", key, str)]
    return ClassValidationError(f"While structuring {owner.__name__}", [exc], owner)


def _printable(value: Any, field: attrs.Attribute[Any] | None = None) -> Any:
    if field is not None:
        value = mask_secret(field, value)
    if attrs.has(type(value)):
        tag = getattr(type(value), "TYPE", None)
        printed: dict[str, Any] = {"type": tag} if tag else {}
        for attribute in attrs.fields(type(value)):
            item = getattr(value, attribute.name)
            # None is printed only where it is a choice (``health.port: null``), not a default.
            if item is not None or attribute.default is not None:
                printed[attribute.name] = _printable(item, attribute)
        return printed
    if isinstance(value, tuple):
        return [_printable(item) for item in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value
