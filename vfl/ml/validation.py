"""Pydantic's validation errors as sentences a user can act on: a mistyped key gets "did you mean" and the keys
that are valid there, instead of "Extra inputs are not permitted".

Used for every model a user writes: a job spec (REST, the CLI, ``vfl simulate --config``) and a service's TOML.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (``Model``, ``Model | None``, ``list[Model]``, ``dict[str, Model]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models_in(arg)
    return found


def _containers(annotation: Any) -> set[Any]:
    """The container kinds an annotation may be: dict or list (their keys or indexes come next in a location)."""
    origin = typing.get_origin(annotation)
    kinds: set[Any] = set()
    if origin in (dict, typing.Mapping) or origin is getattr(typing, "Dict", None):
        kinds.add(dict)
    if origin in (list, tuple, typing.Sequence):
        kinds.add(list)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            kinds |= _containers(arg)
    return kinds


def _key(name: str, model: type[BaseModel]) -> str:
    field = model.model_fields[name]
    return field.alias or name


def model_at(root: type[BaseModel] | None, path: Sequence[str | int]) -> type[BaseModel] | None:
    """The model that holds the keys at ``path`` under ``root`` (None when the path leaves the models)."""
    model = root
    steps = list(path)
    while steps and model is not None:
        step = steps.pop(0)
        fields = {_key(name, model): info for name, info in model.model_fields.items()}
        info = fields.get(str(step))
        if info is None:
            return None
        annotation = info.annotation
        if steps and _containers(annotation):
            steps.pop(0)  # a dict key or a list index: the model is that of the values
        models = _models_in(annotation)
        model = models[0] if len(models) == 1 else None
    return model


def unknown_key(root: type[BaseModel] | None, location: Sequence[str | int], prefix: str = "") -> str:
    """ "unknown key 'training.epoch'; did you mean 'epochs'? valid keys: ..." for an extra (forbidden) key."""
    shown = ".".join(str(p) for p in ([prefix] if prefix else []) + list(location))
    holder = model_at(root, location[:-1])
    if holder is None:
        return f"unknown key {shown!r}; remove it"
    valid = sorted(_key(name, holder) for name, field in holder.model_fields.items() if not field.exclude)
    valid = [key for key in valid if key != "source"]  # set by vfl itself, never written by a user
    guess = difflib.get_close_matches(str(location[-1]), valid, n=1, cutoff=0.6)
    hint = f"; did you mean {guess[0]!r}?" if guess else ";"
    return f"unknown key {shown!r}{hint} valid keys: {', '.join(valid)}"


def describe(errors: list[dict[str, Any]] | ValidationError, root: type[BaseModel] | None = None, *,
             prefix: str = "", skip: Sequence[str] = ()) -> str:
    """Every problem on one line, ``; ``-separated: where (dotted) and what, a mistyped key as :func:`unknown_key`.

    ``prefix`` goes before each location (``training`` for a job spec's training section validated alone);
    ``skip`` drops leading location parts that are no key of the user's (FastAPI's ``body``).
    """
    problems = []
    for error in errors.errors() if isinstance(errors, ValidationError) else errors:
        location = list(error.get("loc") or ())
        while location and location[0] in skip:
            location.pop(0)
        if error.get("type") == "extra_forbidden" and location:
            problems.append(unknown_key(root, location, prefix))
            continue
        where = ".".join(str(p) for p in ([prefix] if prefix else []) + location) or prefix or "body"
        problems.append(f"{where}: {error.get('msg')}")
    return "; ".join(problems)


def json_problem(text: str | bytes, position: int, message: str) -> str:
    """A JSON syntax error with its line and column: "not valid JSON: Expecting ',' delimiter at line 3,
    column 5 (near '"epochs": 30')"."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    position = max(0, min(position, len(text)))
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    near = text[start:end if end != -1 else len(text)].strip()[:60]
    shown = f" (near {near!r})" if near else ""
    return f"the body is not valid JSON: {message} at line {line}, column {column}{shown}"


__all__ = ["describe", "json_problem", "model_at", "unknown_key"]
