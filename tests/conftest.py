"""Shared fixtures: one tiny embedded cohort, its manifest and its aligned store, built once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session")
def cohort_root(tmp_path_factory):
    """6 subjects × 2 tasks × 16 frames at 160 px: enough for folds, labels and alignment, fast to write."""
    from manifests.cohort import CohortConfig, write_cohort

    root = tmp_path_factory.mktemp("cohort")
    write_cohort(root, CohortConfig(subjects=6, tasks=2, frames=16, size=160, seed=7))
    return root


@pytest.fixture(scope="session")
def cohort_manifest(cohort_root, tmp_path_factory):
    from manifests.bp4d import read_bp4d
    from manifests.schema import write_manifest

    path = tmp_path_factory.mktemp("manifest") / "manifest.parquet"
    write_manifest(read_bp4d(cohort_root), path, root=cohort_root)
    return path


@pytest.fixture(scope="session")
def aligned_store(cohort_manifest, tmp_path_factory):
    """Aligned 64-px crops of the tiny cohort, using the cohort's own landmarks."""
    from pipelines.align import align_manifest

    out = tmp_path_factory.mktemp("aligned") / "aligned.zarr"
    align_manifest(cohort_manifest, out, size=64)
    return out
