"""Feast is imported without typeguard's import-time instrumentation, and nothing else loses it."""

from __future__ import annotations

import typeguard
from typeguard._decorators import typechecked

from features import feast_import


def test_typeguard_keeps_its_real_decorator_after_feast_is_imported() -> None:
    assert typeguard.typechecked is typechecked


def test_feast_classes_are_importable_and_build_definitions() -> None:
    field = feast_import.Field(name="order_count", dtype=feast_import.Int64)
    assert field.name == "order_count" and field.dtype == feast_import.Int64


def test_the_stand_in_decorator_returns_its_target_with_or_without_options() -> None:
    def target() -> int:
        return 1

    assert feast_import._unchecked(target) is target
    assert feast_import._unchecked(forward_ref_policy=None)(target) is target
