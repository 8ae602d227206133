"""One config mechanism for the whole project: pydantic models that say every key once.

A config is a tree of :class:`StrictModel` classes. Each key is a field with its type, its default, its
bounds (``Field(ge=..., le=...)``) and a ``description``; unknown keys are errors. From those models come
the validation, the command-line overrides, the key tables in the READMEs and the JSON Schema files that
editors complete YAML from — nothing about a key is written twice.

* :func:`load_yaml` reads a YAML mapping; a missing file, a non-UTF-8 file or bad YAML names the file.
* :func:`apply_overrides` merges ``key.sub=value`` overrides (values parsed as YAML), or a mapping of
  dotted keys (``None``: not given), into the raw mapping.
* :func:`validate` turns the mapping into the model, or raises one ``ValueError`` line that names the
  source, the key path and what was expected: ``camera.yaml: http.port: expected an integer in 0..65535,
  got 'abc'``.
* :func:`load` is the three in a row; :func:`key_table` renders a model's keys as a markdown table.

``python -m edgedet.config_docs --write`` (the floor above every config) regenerates the tables and the
``config.schema.json`` files from :func:`key_table` and :func:`json_schema`.
"""

from __future__ import annotations

import copy
import json
import re
import types
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

__all__ = [
    "NOT_BLANK",
    "ConfigKeyError",
    "Expect",
    "Flag",
    "Int",
    "NonEmptyText",
    "Number",
    "SectionInput",
    "StrictModel",
    "Text",
    "apply_overrides",
    "deep_merge",
    "error_line",
    "json_schema",
    "key_table",
    "load",
    "load_yaml",
    "or_false",
    "section",
    "validate",
]


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable once validated.

    Before validation, a key's YAML value is read the way a person means it (:func:`_read_value`): digits
    in quotes for an integer key, a numeric string for a number key, an integer for a string key
    (``source: 0``). Everything else is validated strictly: ``yes`` is no boolean and ``2.5`` no integer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _read_values(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        fields = cls.model_fields
        return {k: _read_value(fields[k].annotation, v) if k in fields else v for k, v in data.items()}


M = TypeVar("M", bound=StrictModel)


class ConfigKeyError(ValueError):
    """Raised by a model validator about one of its keys: the message names ``<section>.<key>``."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class Expect:
    """``Annotated`` marker: what an error and the key table say is expected, instead of the derived text."""

    text: str  # after "expected" in an error
    table: str = ""  # the key table's type cell (default: derived from the type)
    bounds: str = ""  # the key table's bounds cell, with ``table``


# --- value types shared by the configs -------------------------------------------------------------------

NOT_BLANK = r"\S"  # the pattern of NonEmptyText: an error says "must not be empty"

Flag = Annotated[bool, Strict()]
"""``true`` or ``false`` only (not ``yes``, ``1`` or ``"true"``)."""
Int = Annotated[int, Strict()]
"""An integer (quoted digits are read as one); a float or a boolean is an error."""
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
"""A finite number (an integer is read as one; so is a numeric string)."""
Text = Annotated[str, Strict()]
"""A string (an integer is read as its digits: ``source: 0``)."""
NonEmptyText = Annotated[str, Strict(), Field(pattern=NOT_BLANK)]
"""A string that is not empty or blank."""


_INTEGER = re.compile(r"[+-]?[0-9]+")


def _members(tp: Any) -> list[Any]:
    """The bare types a field accepts: ``int | None`` -> ``[int, NoneType]``."""
    tp, _ = _flatten(tp, ())
    if _is_union(tp):
        return [m for arg in get_args(tp) for m in _members(arg)]
    return [tp]


def _read_value(annotation: Any, value: Any) -> Any:
    """A YAML value as the key's type reads it (see :class:`StrictModel`); anything else unchanged."""
    kinds = _members(annotation)
    if isinstance(value, str):
        text = value.strip()
        if int in kinds and _INTEGER.fullmatch(text):
            return int(text)
        if float in kinds:
            try:
                return float(text)
            except ValueError:
                return value
    elif isinstance(value, int) and not isinstance(value, bool):
        if str in kinds and int not in kinds and float not in kinds:
            return str(value)
    return value


def _empty_section(value: Any) -> Any:
    return {} if value is None else value


def section(model: type[StrictModel], description: str, **kw: Any) -> Any:
    """A nested section's field: defaults to the section's defaults; an empty YAML section (``null``) too."""
    return Field(default_factory=model, description=description, **kw)


SectionInput = BeforeValidator(_empty_section)
"""``Annotated`` marker for section fields: ``http:`` with nothing under it means the defaults."""


# --- reading and merging -----------------------------------------------------------------------------------


def load_yaml(path: str | Path) -> dict[str, Any]:
    """The YAML mapping in ``path`` (an empty file: ``{}``); every failure names the file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{p}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise ValueError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{p}: not valid YAML ({' '.join(str(exc).split())})") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ValueError(f"{p}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return dict(data)


def _override_items(overrides: Sequence[str] | Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """``(dotted key, value, label for errors)`` for ``["a.b=1"]`` or ``{"a.b": 1}`` (``None`` values skipped)."""
    items: list[tuple[str, Any, str]] = []
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            if value is not None:
                items.append((str(key), value, f"override {key}={value!r}"))
        return items
    for item in overrides:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ValueError(f"override {item!r}: expected key=value (a dotted key, a YAML value), e.g. a.b=1")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError as exc:
            raise ValueError(f"override {item!r}: the value is not valid YAML ({' '.join(str(exc).split())})") from exc
        items.append((key, value, f"override {item!r}"))
    return items


def _set_dotted(mapping: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of ``mapping`` with ``a.b.c`` set; a section that is not a mapping there is replaced by one."""
    head, _, rest = key.partition(".")
    out = dict(mapping)
    if rest:
        inner = out.get(head)
        out[head] = _set_dotted(dict(inner) if isinstance(inner, Mapping) else {}, rest, value)
    else:
        out[head] = value
    return out


def apply_overrides(mapping: Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """``mapping`` with ``["key.sub=value", ...]`` (values parsed as YAML) or ``{"key.sub": value}`` applied.

    The input is not changed. Nothing is validated here: :func:`validate` checks the merged result.
    """
    out = copy.deepcopy(dict(mapping))
    for key, value, _ in _override_items(overrides):
        out = _set_dotted(out, key, value)
    return out


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in, mapping into mapping (copies; neither input changes)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# --- validation and its one-line errors ----------------------------------------------------------------------


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The config model a field holds (``HttpConfig``, ``MqttConfig | None``, ...), or ``None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is Annotated:
        return _model_in(get_args(annotation)[0])
    if _is_union(annotation):
        found = [m for m in map(_model_in, get_args(annotation)) if m is not None]
        return found[0] if len(found) == 1 else None
    return None


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _walk(model_cls: type[BaseModel], loc: Sequence[Any]) -> tuple[list[str], FieldInfo | None, type[BaseModel]]:
    """The model fields along an error's ``loc``: (their names, the last one, the model holding it)."""
    path: list[str] = []
    info: FieldInfo | None = None
    owner: type[BaseModel] = model_cls
    current: type[BaseModel] | None = model_cls
    for part in loc:
        if current is None or not isinstance(part, str) or part not in current.model_fields:
            break
        owner = current
        info = current.model_fields[part]
        path.append(part)
        current = _model_in(info.annotation)
    return path, info, owner


def _value_at(data: Any, path: Sequence[Any], fallback: Any) -> Any:
    for part in path:
        if not isinstance(data, Mapping) or part not in data:
            return fallback
        data = data[part]
    return data


def _shown(value: Any) -> str:
    """A value as an error shows it: YAML's spelling for null and booleans, else ``repr``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def error_line(model_cls: type[BaseModel], raw: Mapping[str, Any], err: Mapping[str, Any]) -> tuple[str, str]:
    """``(dotted key, reason)`` for one pydantic error of ``model_cls`` validating ``raw`` (also used by
    list items that validate themselves, so their errors read like every other key's)."""
    loc = tuple(err.get("loc", ()))
    path, info, owner = _walk(model_cls, loc)
    kind = err.get("type", "")
    exc = (err.get("ctx") or {}).get("error")
    if kind == "extra_forbidden":
        holder = (_model_in(info.annotation) if info is not None else model_cls) or owner
        key = [*path, str(loc[len(path)])] if len(loc) > len(path) else path
        known = ", ".join(holder.model_fields)
        return ".".join(key), f"unknown key (known here: {known})"
    if kind == "missing":
        return ".".join(path), "required"
    if isinstance(exc, ConfigKeyError):
        return ".".join([*path, exc.key]), exc.reason
    if isinstance(exc, Exception) and kind in ("value_error", "assertion_error"):
        return ".".join(path), str(exc)
    value = _value_at(raw, path, err.get("input"))
    if kind == "string_pattern_mismatch" and (err.get("ctx") or {}).get("pattern") == NOT_BLANK:
        return ".".join(path), "must not be empty"
    if kind == "string_pattern_mismatch" and len(loc) == len(path):
        return ".".join(path), f"{_shown(value)} does not match {(err.get('ctx') or {}).get('pattern')}"
    if info is None:
        return ".".join(path), f"expected {_describe(model_cls, ())}, got {_shown(value)}"
    return ".".join(path), f"expected {_describe(info.annotation, info.metadata)}, got {_shown(value)}"


def validate(
    model_cls: type[M],
    mapping: Any,
    source: str,
    origins: Mapping[str, str] | None = None,
) -> M:
    """``model_cls`` validated from ``mapping``, or a ``ValueError``: ``source: key.path: reason``.

    ``origins`` maps dotted keys to another source (an override) named instead for errors at or under them.
    """
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{source}: expected a mapping of keys at the top level, got {type(mapping).__name__}")
    try:
        return model_cls.model_validate(dict(mapping))
    except ValidationError as exc:
        lines: dict[str, str] = {}
        for err in exc.errors(include_url=False):
            key, reason = error_line(model_cls, mapping, err)
            custom = err.get("type") in ("value_error", "assertion_error")
            if key not in lines or custom:  # a union's branches: one line per key, a validator's reason first
                lines[key] = reason
        key, reason = next(iter(lines.items()))
        matches = [d for d in (origins or {}) if key == d or key.startswith(d + ".")]
        where = (origins or {})[max(matches, key=len)] if matches else source
        text = f"{where}: {key}: {reason}" if key else f"{where}: {reason}"
        others = [k or "(top level)" for k in list(lines)[1:]]
        if others:
            text += f" (also invalid: {', '.join(others)})"
        raise ValueError(text) from None


def load(
    model_cls: type[M],
    path: str | Path | None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    *,
    default_source: str = "config",
) -> M:
    """The model from the YAML file ``path`` (optional) with ``overrides`` applied, validated once.

    An error names the override that set the key, else the file (else ``default_source``).
    """
    raw = load_yaml(path) if path is not None else {}
    items = _override_items(overrides)
    for key, value, _ in items:
        raw = _set_dotted(raw, key, value)
    origins = {key: label for key, _, label in items}
    return validate(model_cls, raw, str(path) if path is not None else default_source, origins)


# --- describing a key: errors, tables ------------------------------------------------------------------------


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _bounds(metadata: Sequence[Any], integer: bool) -> str:
    ge = gt = le = lt = None
    for m in metadata:
        ge = getattr(m, "ge", None) if getattr(m, "ge", None) is not None else ge
        gt = getattr(m, "gt", None) if getattr(m, "gt", None) is not None else gt
        le = getattr(m, "le", None) if getattr(m, "le", None) is not None else le
        lt = getattr(m, "lt", None) if getattr(m, "lt", None) is not None else lt
    if integer and ge is not None and le is not None and gt is None and lt is None:
        return f"in {_num(ge)}..{_num(le)}"
    parts = [f"{op} {_num(v)}" for op, v in ((">=", ge), (">", gt), ("<=", le), ("<", lt)) if v is not None]
    return " and ".join(parts)


def _length(metadata: Sequence[Any]) -> str:
    lo = next((m.min_length for m in metadata if getattr(m, "min_length", None) is not None), None)
    hi = next((m.max_length for m in metadata if getattr(m, "max_length", None) is not None), None)
    if lo is not None and lo == hi:
        return f"{lo} "
    if lo is not None or hi is not None:
        return f"{lo or 0}..{hi if hi is not None else ''} "
    return ""


def _flatten(tp: Any, metadata: Sequence[Any]) -> tuple[Any, list[Any]]:
    """The bare type and all its constraints (``Annotated`` and ``Field`` ones, at any depth)."""
    meta = list(metadata)
    while get_origin(tp) is Annotated:
        base, *extra = get_args(tp)
        tp, meta = base, [*extra, *meta]
    flat: list[Any] = []
    for m in meta:
        flat.extend(m.metadata if isinstance(m, FieldInfo) else [m])
    return tp, flat


@dataclass(frozen=True)
class _Phrase:
    article: str  # "a", "an" or ""
    noun: str  # "integer", "true or false", "'auto'"
    plural: str
    bounds: str  # "in 0..65535", "> 0 and <= 1", ""

    def text(self) -> str:
        return " ".join(p for p in (self.article, self.noun, self.bounds) if p)


def _phrase(tp: Any, metadata: Sequence[Any] = ()) -> _Phrase:
    tp, meta = _flatten(tp, metadata)
    expect = next((m for m in meta if isinstance(m, Expect)), None)
    if expect is not None:
        return _Phrase("", expect.text, expect.text, "")
    if _is_union(tp):
        args = get_args(tp)
        text = " or ".join(_phrase(a).text() for a in args if a is not type(None))
        if type(None) in args:
            text += " (or null)"
        return _Phrase("", text, text, "")
    if get_origin(tp) is Literal:
        values = [repr(v) for v in get_args(tp)]
        text = values[0] if len(values) == 1 else "one of " + ", ".join(values)
        return _Phrase("", text, text, "")
    pattern = next((m.pattern for m in meta if getattr(m, "pattern", None)), None)
    if tp is bool:
        return _Phrase("", "true or false", "true or false", "")
    if tp is int:
        return _Phrase("an", "integer", "integers", _bounds(meta, True))
    if tp is float:
        return _Phrase("a", "number", "numbers", _bounds(meta, False))
    if tp is str:
        if pattern == NOT_BLANK:
            return _Phrase("a", "non-empty string", "non-empty strings", "")
        return _Phrase("a", "string", "strings", f"matching {pattern}" if pattern else "")
    origin = get_origin(tp)
    if origin in (list, tuple, Sequence):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        item = _phrase(args[0]) if args else _Phrase("", "value", "values", "")
        items = " ".join(p for p in (item.plural, item.bounds) if p)
        return _Phrase("a", f"list of {_length(meta)}{items}", f"lists of {items}", "")
    if origin in (dict, Mapping) or tp is dict:
        args = [_flatten(a, ())[0] for a in get_args(tp)]
        if args == [str, str]:
            return _Phrase("a", "mapping of names to names", "mappings of names to names", "")
        return _Phrase("a", "mapping", "mappings", "")
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _Phrase("a", "mapping of keys", "mappings of keys", "")
    if tp is Any:
        return _Phrase("", "any value", "any values", "")
    name = getattr(tp, "__name__", str(tp))
    return _Phrase("a", name, name + "s", "")


def _describe(tp: Any, metadata: Sequence[Any]) -> str:
    return _phrase(tp, metadata).text()


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _type_cells(tp: Any, metadata: Sequence[Any] = ()) -> tuple[str, str]:
    """The key table's (type, bounds) cells for a field's annotation and constraints."""
    tp, meta = _flatten(tp, metadata)
    expect = next((m for m in meta if isinstance(m, Expect)), None)
    if expect is not None and expect.table:
        return expect.table, expect.bounds
    if _is_union(tp):
        cells = [_type_cells(a) for a in get_args(tp) if a is not type(None)]
        kind = " or ".join(c[0] for c in cells) + (" or null" if type(None) in get_args(tp) else "")
        return kind, "; ".join(c[1] for c in cells if c[1])
    if get_origin(tp) is Literal:
        values = get_args(tp)
        if len(values) == 1:
            return f"`{values[0]}`", ""
        kind = "string" if all(isinstance(v, str) for v in values) else "value"
        return kind, "one of " + ", ".join(f"`{v}`" for v in values)
    if tp is bool:
        return "boolean", ""
    if tp is int:
        return "integer", _bounds(meta, True).removeprefix("in ")
    if tp is float:
        return "number", _bounds(meta, False)
    if tp is str:
        pattern = next((m.pattern for m in meta if getattr(m, "pattern", None)), None)
        return "string", "not empty" if pattern == NOT_BLANK else (f"`{pattern}`" if pattern else "")
    if get_origin(tp) in (list, tuple, Sequence):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        item, item_bounds = _type_cells(args[0]) if args else ("value", "")
        size = _length(meta).strip()
        parts = [f"{size} items" if size else "", f"each {item_bounds}" if item_bounds else ""]
        plural = "lists of " + item.removeprefix("list of ") if item.startswith("list of ") else item + "s"
        return f"list of {plural}", ", ".join(p for p in parts if p)
    if get_origin(tp) in (dict, Mapping) or tp is dict:
        return "mapping", ""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "section", ""
    return _phrase(tp, meta).noun, ""


def _default_cell(info: FieldInfo) -> str:
    if info.default is PydanticUndefined and info.default_factory is None:
        return "required"
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return ""
    else:
        value = info.default
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = _num(value)
    elif isinstance(value, str):
        text = value or '""'
    else:
        text = json.dumps(value)
    return f"`{text}`"


def _rows(model_cls: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    for name, info in model_cls.model_fields.items():
        key = f"{prefix}{name}"
        yield key, info
        nested = _model_in(info.annotation)
        if nested is not None:
            yield from _rows(nested, f"{key}.")


def key_table(model_cls: type[BaseModel]) -> str:
    """Every key of ``model_cls`` as a markdown table: dotted key, type, default, bounds, description."""
    lines = ["| key | type | default | bounds | description |", "|---|---|---|---|---|"]
    for key, info in _rows(model_cls):
        kind, bounds = _type_cells(info.annotation, info.metadata)
        description = info.description or ""
        lines.append(
            f"| `{key}` | {_cell(kind)} | {_cell(_default_cell(info))} | {_cell(bounds)} | {_cell(description)} |"
        )
    return "\n".join(lines) + "\n"


def json_schema(model_cls: type[BaseModel]) -> str:
    """The JSON Schema (draft 2020-12) of ``model_cls``, as the text written to ``config.schema.json``."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **model_cls.model_json_schema()}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def or_false(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` for a section that ``false`` switches off: the schema also allows ``false``."""
    inner = {k: schema.pop(k) for k in list(schema) if k not in ("title", "description", "default")}
    schema["anyOf"] = [*(inner.pop("anyOf") if "anyOf" in inner else [inner]), {"const": False}]
