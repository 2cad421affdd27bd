"""What msrgb reads from Snakemake's ``workflow`` object while the Snakefile is parsed.

Snakemake has no public API for these (the executor is not known at parse time, and the
--default-resources / --set-resources values are not exposed to Snakefiles), so they live here,
in one place, and tests/test_snakemake_settings.py checks them against the pinned Snakemake
version (``TESTED_WITH``). When Snakemake changes, this module and that test are what to update.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

#: The Snakemake release these reads were written and tested for.
TESTED_WITH = "9.27.1"


def is_cluster_run(workflow: Any) -> bool:
    """True when jobs go to a batch system (--executor slurm, cluster-generic, ...): only such
    executors keep --jobs apart from --cores (locally --jobs is an alias of --cores)."""
    return workflow.nodes is not None


def executor_named(argv: Sequence[str] | None = None) -> str | None:
    """The executor the command line names (``--executor X``, ``-e X``, ``--executor=X``), or
    None (none named, or one set by a profile): Snakefiles are read before Snakemake tells
    which executor runs the jobs."""
    args = list(sys.argv if argv is None else argv)
    for i, arg in enumerate(args):
        if arg.startswith("--executor="):
            return arg.split("=", 1)[1]
        if arg in ("--executor", "-e") and i + 1 < len(args):
            return args[i + 1]
    return None


def keeps_no_metadata(workflow: Any, workdir: str = ".") -> bool:
    """Whether Snakemake holds no per-file metadata for this run's outputs and records none:
    ``--drop-metadata`` (msrgb's profiles set it), the file persistence backend, and no record
    left in ``.snakemake/metadata`` by an earlier run that kept them (Snakemake still reads
    those, and would make a file again whose recorded inputs differ from its rule's). False
    when the command line is not known (:func:`command_line`): the answer that is always safe."""
    backend = getattr(workflow.workflow_settings, "persistence_backend", None)
    if getattr(backend, "name", None) != "FILE" or getattr(command_line(), "drop_metadata", None) is not True:
        return False
    try:
        with os.scandir(os.path.join(workdir, ".snakemake", "metadata")) as records:
            return next(records, None) is None
    except FileNotFoundError:
        return True


def makes_a_report() -> bool:
    """Whether this command makes a report (``--report``), which shows the outputs of the jobs
    of the workflow's graph: True when the command line is not known."""
    args = command_line()
    return args is None or bool(getattr(args, "report", None))


def command_line() -> Any:
    """Snakemake's command line as parsed with its profiles (an argparse namespace), or None
    when Snakemake was not started from its command line (the Python API). Snakemake hands its
    settings to the workflow only after the Snakefile is read; while it is read, they are
    ``snakemake.cli``'s ``args_to_api(args)``, found on the stack."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "args_to_api" and frame.f_globals.get("__name__") == "snakemake.cli":
            return frame.f_locals.get("args")
        frame = frame.f_back
    return None


def shares_file_system(workflow: Any) -> bool:
    """Whether the jobs see the main process's files (--shared-fs-usage with input-output, the
    default); not with ``--shared-fs-usage none`` or an executor that implies it."""
    return any(getattr(usage, "name", "") == "INPUT_OUTPUT" for usage in workflow.storage_settings.shared_fs_usage)


def parallel_jobs(workflow: Any) -> int:
    """How many jobs can run at once: --jobs on a cluster, --cores locally (1 if unset)."""
    if is_cluster_run(workflow):
        return int(workflow.nodes)
    cores = workflow.global_resources.get("_cores")
    value = getattr(cores, "value", cores)
    return int(value) if isinstance(value, int) else 1


def is_module(workflow: Any) -> bool:
    """True when this Snakefile is loaded by another workflow with ``module``."""
    return not workflow.modifier.is_main_snakefile()


def resource_setting(workflow: Any, rule: str, name: str) -> str | None:
    """The value of resource ``name`` for ``rule`` as given by --set-resources, else by
    --default-resources (command line or profile), as text; None if neither sets it."""
    settings = workflow.resource_settings
    for source in (settings.overwrite_resources.get(rule, {}), settings.default_resources or {}):
        if name in source:
            value = getattr(source[name], "raw", source[name])
            if value is not None:
                return str(value).strip("\"'")
    return None


def threads_setting(workflow: Any, rule: str) -> int | None:
    """The threads --set-threads gives ``rule``, or None."""
    value = workflow.resource_settings.overwrite_threads.get(rule)
    value = getattr(value, "raw", value)
    return int(value) if value is not None else None


def end_scheduler_timers() -> None:
    """Let the snakemake process exit as soon as the run is over. Snakemake's job rate limiter
    starts a timer thread after every scheduling round, not as a daemon, so Python waits up to
    a second for the last one at exit (docs/troubleshooting.md, "a second after every run").
    Called from onsuccess/onerror, when no scheduling round follows, so cancelling it is safe."""
    for thread in threading.enumerate():
        function = getattr(thread, "function", None)
        if isinstance(thread, threading.Timer) and "_schedule_reevalutation" in getattr(
            function, "__qualname__", ""
        ):
            thread.cancel()


def no_cycle_collection_at_exit() -> None:
    """Let Snakemake's process end without Python's cycle collector going over everything it
    holds: at exit, the objects still alive are frozen (``gc.freeze``), so the interpreter's
    teardown no longer traverses the hundreds of thousands of objects of Snakemake's modules and
    of the plan (docs/troubleshooting.md, "The end of every run"). Registered while the workflow
    is read, so it runs after the exit handlers registered later and before those registered
    earlier; every one of them still runs, and what the collector would have freed the end of
    the process frees."""
    atexit.register(_freeze_objects)


def _freeze_objects() -> None:
    gc.disable()
    gc.freeze()


def wrap_log_streams(wrapper: Callable[[Any], Any]) -> None:
    """Put ``wrapper`` around the stream of Snakemake's console log handler (stderr), so that
    msrgb's progress bar and Snakemake's messages do not write over each other. Uses only the
    logging module's public API; the logger's name is Snakemake's."""
    for name in ("snakemake.logging", "snakemake", ""):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
                handler.setStream(wrapper(handler.stream))


def start_hook_in_module(workflow: Any, func: Callable[[], None]) -> None:
    """Snakemake ignores ``onstart`` of a workflow loaded with ``module``: there, run ``func``
    when the host's start hook runs (Snakemake calls it only when jobs are about to run, not in
    dry runs), also when the host defines its own ``onstart`` after loading msrgb."""
    if not is_module(workflow):
        return

    def with_ours(host: Callable[..., Any]) -> Callable[..., None]:
        def both(log: Any = None) -> None:
            func()
            host(log)

        return both

    workflow._onstart = with_ours(workflow._onstart)
    register = workflow.onstart  # the host's `onstart:` registers through this, later
    workflow.onstart = lambda host: register(with_ours(host))
