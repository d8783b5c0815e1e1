"""Fixtures for the ROS tests: bags written by the tests themselves (``ros_bag_writer.py``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("rosbags")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ros_bag_writer import WrittenBag, write_bag  # noqa: E402


@pytest.fixture(scope="session")
def bag_maker(tmp_path_factory: pytest.TempPathFactory):
    """``make(kind, encoding, count=24)`` -> :class:`WrittenBag` (cached per arguments for the session)."""
    made: dict[tuple, WrittenBag] = {}
    root = tmp_path_factory.mktemp("bags")

    def make(kind: str, encoding: str, count: int = 24) -> WrittenBag:
        key = (kind, encoding, count)
        if key not in made:
            name = f"{kind}_{encoding}_{count}" + (".bag" if kind == "ros1" else "")
            made[key] = write_bag(root / name, kind, encoding, count)
        return made[key]

    return make
