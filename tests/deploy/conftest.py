"""Shared fixtures of the deployment tests: the repository, the loaded deployment, and a way to
check a mutated copy of it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

import deploylib  # noqa: E402

# What a mutated copy holds: every deployment file (src/ is read from the real tree).
COPIED = ["terraform", "service.yaml", "Dockerfile", ".dockerignore", "docs/deploy.md", ".checkov.yaml"]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def deployment() -> deploylib.Deployment:
    return deploylib.Deployment.load(ROOT)


def copy_tree(dest: Path) -> Path:
    """A copy of the deployment files under dest (terraform's local state and lock left out)."""
    for rel in COPIED:
        src = ROOT / rel
        if not src.exists():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*", "terraform.tfvars"))
        else:
            shutil.copy2(src, target)
    return dest


def mutate(copy: Path, rel: str, old: str, new: str) -> None:
    """Replaces the one occurrence of old in copy/rel with new; fails if old is not there once
    (so a mutation that no longer applies is noticed instead of passing vacuously)."""
    path = copy / rel
    text = path.read_text()
    count = text.count(old)
    assert count == 1, f"mutation anchor found {count} times in {rel}: {old!r}"
    path.write_text(text.replace(old, new))


@pytest.fixture
def mutated(tmp_path: Path):
    """mutated(rel, old, new, ...) -> the root of a copy with those replacements applied."""

    def make(*edits: tuple[str, str, str]) -> Path:
        copy = copy_tree(tmp_path / "copy")
        for rel, old, new in edits:
            mutate(copy, rel, old, new)
        return copy

    return make
