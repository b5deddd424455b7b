"""The cluster room's configuration and its missing-extra error (no Ray instance needed)."""

from __future__ import annotations

import sys

import pytest

from bicross.cluster import ClusterConfig, ray_session
from bicross.errors import InvalidInput, MissingExtra


def test_a_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when it is not installed
    with pytest.raises(MissingExtra, match=r'pip install "bicross\[ray\]"'), ray_session("local"):
        pass


def test_import_bicross_cluster_does_not_import_ray() -> None:
    import subprocess

    code = "import sys, bicross.cluster; bicross.cluster.ClusterConfig; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() == ["False"]


@pytest.mark.parametrize("options", [{"workers": 0}, {"shard_size": 0}, {"cpus_per_worker": 0}, {"max_retries": -1}])
def test_nonsense_settings_are_refused(options: dict) -> None:
    with pytest.raises(InvalidInput):
        ClusterConfig(**options)
