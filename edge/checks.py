"""Checks of what callers send with a row besides its features: context fields and labels.

``check_context`` accepts a few named scalars (text, numbers, null) whose names are not upload columns;
``as_class`` turns a label into one of the manifest's classes (``"1"`` is accepted for class ``1``).
Both raise ``edge.inference.InputError`` naming the field. Leaves out the features (edge.inference
checks them) and what is done with the row (edge.serving, edge.feedback).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from edge.contracts.manifest import Manifest
from edge.contracts.schema import ClassValue
from edge.inference import InputError

__all__ = ["MAX_CONTEXT_FIELDS", "MAX_CONTEXT_TEXT", "as_class", "check_context"]

_CONTEXT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
MAX_CONTEXT_FIELDS = 32
MAX_CONTEXT_TEXT = 256


def check_context(context: Mapping[str, object], reserved: frozenset[str]) -> None:
    """Context travels with the row (unless local-only): a few named scalars, never an upload column's name."""
    if not isinstance(context, Mapping) or len(context) > MAX_CONTEXT_FIELDS:
        raise InputError(f"context: expected an object of at most {MAX_CONTEXT_FIELDS} fields", "context")
    for name, value in context.items():
        if not isinstance(name, str) or not _CONTEXT_NAME.match(name) or name in reserved:
            raise InputError(f"context.{name}: expected a column name (letters, digits, _ . -) that is not a "
                             f"feature or upload column", "context")
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int | float)):
            raise InputError(f"context.{name}: expected text, a number or null, got {type(value).__name__}", name)
        if isinstance(value, str) and len(value) > MAX_CONTEXT_TEXT:
            raise InputError(f"context.{name}: longer than {MAX_CONTEXT_TEXT} characters", name)
        if isinstance(value, float) and value - value != 0.0:
            raise InputError(f"context.{name}: {value} is not a finite number", name)


def as_class(label: object, manifest: Manifest) -> ClassValue:
    """The label as one of the manifest's classes (``"1"`` is accepted for class ``1``)."""
    for value in manifest.classes:
        if label == value and not isinstance(label, bool):
            return value
        if isinstance(label, str) and isinstance(value, int) and label.strip() == str(value):
            return value
    raise InputError(f"label: {label!r} is not one of the classes {list(manifest.classes)}", "label")
