"""msrgb.snakemake.slurm without a cluster: parsing sinfo/squeue output and the advice it gives."""

from __future__ import annotations

import pytest

from msrgb.snakemake.slurm import (
    NodeSize,
    PendingJob,
    SlurmQueryError,
    check_request,
    explain,
    parse_sinfo,
)

SINFO = "debug*|2|24105\nbig|64|512000\nbig|32|256000+\nshort|8|16000\n"


def test_node_size_of_the_default_and_of_a_named_partition():
    assert parse_sinfo(SINFO, None) == NodeSize("debug", 2, 24105)
    # a partition with two kinds of node: a job fits if the largest one fits
    assert parse_sinfo(SINFO, "big") == NodeSize("big", 64, 512000)
    assert parse_sinfo(SINFO, "short") == NodeSize("short", 8, 16000)
    assert parse_sinfo(SINFO, "nope") is None


def test_requests_larger_than_a_node_name_the_setting():
    size = NodeSize("debug", 2, 24105)
    check_request(size, 2, 24105, "convert_shard")  # exactly a node: fine
    with pytest.raises(SlurmQueryError, match=r"4 CPUs.*--set-threads convert_shard=N"):
        check_request(size, 4, None, "convert_shard")
    with pytest.raises(SlurmQueryError, match=r"24106 MB.*mem_mb"):
        check_request(size, 1, 24106, "convert_shard")


def test_pending_job_line_and_explanation():
    line = "42|rule_convert_shard_wildcards_8_3|PartitionTimeLimit|2|2000M|5-00:00:00|short|/w\n"
    job = PendingJob.parse(line)
    assert job is not None and job.rule == "convert_shard" and job.reason == "PartitionTimeLimit"
    text = explain(job, NodeSize("short", 8, 16000))
    assert "Slurm job 42 (rule convert_shard, shard 3 of 8)" in text
    assert "PartitionTimeLimit" in text and "runtime" in text and "8 CPU(s)" in text
    assert PendingJob.parse("not|enough|fields") is None
    other = PendingJob.parse("7|rule_summarize|PartitionConfig|1|1G|1:00|short|/w")
    assert other is not None and other.what == "rule summarize"


def test_the_watch_knows_the_shard_rules_also_in_a_module():
    from msrgb.snakemake.slurm import PendingWatch

    watch = PendingWatch("/w", ("convert_shard", "convert_pngs_0"))
    assert watch.watches("convert_shard") and watch.watches("msrgb_convert_shard")
    assert watch.watches("msrgb_convert_pngs_0")
    assert not watch.watches("summarize") and not watch.watches("convert_shard_extra")
