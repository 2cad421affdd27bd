"""Jobs on machines of their own, on this one machine: the cluster-generic executor with a submit
script that starts every job in a fresh scratch folder holding a copy of the workflow (what a
cloud executor deploys), and a status script that reads the job's exit code. Used by
tests/test_no_shared_fs.py and bench/s3.py."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
#: what a copy of the workflow needs (a cloud executor deploys the files git tracks)
WORKFLOW = ("Snakefile", "rules", "scripts", "msrgb", "config", "envs", "profiles", "report")

SUBMIT = """#!/bin/bash
# A job on a machine of its own: a fresh scratch folder with a copy of the workflow, nothing
# shared with the main process but the storage. Prints the job's id (its folder).
d=$(mktemp -d "{scratch}/job.XXXXXX")
tar -C "{source}" --exclude=./.snakemake --exclude=./msrgb-work -cf - . | tar -C "$d" -xf -
cp "$1" "$d/job.sh"
( cd "$d" && bash job.sh > out.txt 2>&1; echo $? > rc ) > /dev/null 2>&1 &
echo "$d"
"""
STATUS = """#!/bin/bash
if [ ! -e "$1/rc" ]; then echo running; elif [ "$(cat "$1/rc")" = 0 ]; then echo success; else echo failed; fi
"""


class ScratchCluster:
    """The main process in ``<top>/main`` (a copy of the workflow, whose config's ``products``
    are ``products`` if given), its jobs in ``<top>/scratch``, Snakemake's storage (without a
    shared file system) in ``<top>/storage``."""

    def __init__(self, top: Path, products: dict | None = None):
        self.top, self.main, self.scratch, self.storage = top, top / "main", top / "scratch", top / "storage"
        self.main.mkdir(parents=True)
        self.scratch.mkdir()
        for name in WORKFLOW:
            copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
            copy(REPO / name, self.main / name)
        if products is not None:
            config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
            config["products"] = products
            (self.main / "config" / "config.yaml").write_text(yaml.safe_dump(config))
        for name, text in (("submit.sh", SUBMIT), ("status.sh", STATUS)):
            script = top / name
            script.write_text(text.format(scratch=self.scratch, source=self.main))
            script.chmod(0o755)

    def jobs(self) -> list[Path]:
        """The jobs' folders, one per job submitted so far."""
        return sorted(self.scratch.iterdir())

    def command(self, shared_fs: bool, *options: str, jobs: str = "2") -> list[str]:
        """``snakemake`` through the scratch jobs, with ``--shared-fs-usage none`` and the fs
        storage plugin unless ``shared_fs``; ``--config`` and its settings go after ``options``."""
        cmd = [
            sys.executable, "-m", "snakemake", "--jobs", jobs, "--executor", "cluster-generic",
            "--cluster-generic-submit-cmd", str(self.top / "submit.sh"),
            "--cluster-generic-status-cmd", str(self.top / "status.sh"), "--seconds-between-status-checks", "1",
        ]  # fmt: skip
        if not shared_fs:
            cmd += ["--shared-fs-usage", "none", "--default-storage-provider", "fs",
                    "--default-storage-prefix", str(self.storage)]  # fmt: skip
        return [*cmd, *options]

    @staticmethod
    def env() -> dict[str, str]:
        """The environment the jobs need: their ``python -m snakemake`` is this Python."""
        return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
