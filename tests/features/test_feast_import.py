"""Feast is imported without typeguard's import-time instrumentation, and nothing else loses it;
nor does it leave Prometheus in multi-process mode."""

from __future__ import annotations

import os
import subprocess
import sys

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


_CHILD = """
import os
from features import feast_import
from prometheus_client import values
print(values.ValueClass.__name__, os.environ.get("PROMETHEUS_MULTIPROC_DIR"), os.environ.get("PROMETHEUS_MULTIPROCESS_DIR"))
"""


def _after_import(**env: str) -> list[str]:
    """What a fresh interpreter holds after importing Feast: value class and the two variables."""
    clean = {k: v for k, v in os.environ.items() if k not in feast_import.PROMETHEUS_MULTIPROCESS}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], env={**clean, **env}, capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout.split()


def test_metrics_stay_in_process_and_children_inherit_no_multiprocess_folder() -> None:
    assert _after_import() == ["MutexValue", "None", "None"]


def test_a_multiprocess_folder_the_user_set_is_kept(tmp_path: os.PathLike[str]) -> None:
    value_class, multiproc_dir, _ = _after_import(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    assert value_class == "MmapedValue" and multiproc_dir == str(tmp_path)
