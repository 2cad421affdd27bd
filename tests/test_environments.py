"""The install files agree: requirements*.txt hold the pins, the conda files repeat them."""

from __future__ import annotations

import re

import pytest
import yaml
from conftest import REPO


def pip_pins(name: str) -> dict[str, str]:
    """package -> version of a requirements file, following its ``-r`` includes."""
    pins: dict[str, str] = {}
    for line in (REPO / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            pins |= pip_pins(line[3:].strip())
        elif line:
            package, version = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line).groups()
            pins[package.lower()] = version
    return pins


#: conda-forge package -> the same package's name on PyPI, where they differ
PYPI_NAMES = {"python-zlib-ng": "zlib-ng"}


def conda_pins(name: str) -> dict[str, str]:
    pins = {}
    for dep in yaml.safe_load((REPO / name).read_text())["dependencies"]:
        package, _, version = dep.partition("=")
        assert version and not version.startswith("="), f"{name}: {dep} is not pinned with ="
        pins[PYPI_NAMES.get(package.lower(), package.lower())] = version
    pins.pop("python")
    return pins


@pytest.mark.parametrize(
    "conda_file, pip_file, complete",
    [
        ("environment.yml", "requirements.txt", True),
        ("environment-cluster.yml", "requirements-cluster.txt", True),
        ("envs/msrgb.yaml", "requirements.txt", False),  # the jobs need no Snakemake
    ],
)
def test_conda_files_pin_what_requirements_pin(conda_file: str, pip_file: str, complete: bool):
    conda, pip = conda_pins(conda_file), pip_pins(pip_file)
    assert {k: pip.get(k) for k in conda} == conda, f"{conda_file} differs from {pip_file}"
    if complete:
        assert set(conda) == set(pip), f"{conda_file} misses {sorted(set(pip) - set(conda))}"


def test_runtime_install_leaves_out_the_cluster_plugins():
    assert not any("executor-plugin" in p for p in pip_pins("requirements.txt"))
    assert pip_pins("requirements-cluster.txt").keys() <= pip_pins("requirements-test.txt").keys()
