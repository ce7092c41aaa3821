"""``python -m bench.checker LOGDIR`` prints the report; its exit code says if the run held."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bench.checker import main
from bench.logs import (
    DeliveryRecord,
    HistoryRecord,
    LoggedMessage,
    LogWriter,
    MembershipRecord,
    Record,
)

REPO = Path(__file__).resolve().parents[2]
FIRST = LoggedMessage("m1", "c1", 1, "alice", "cid-1")
SECOND = LoggedMessage("m2", "c1", 2, "alice", "cid-2")


def write_run(directory: Path, *records: Record) -> Path:
    with LogWriter(directory, "run") as writer:
        writer.write_all(records)
    return directory


def clean(directory: Path) -> Path:
    return write_run(
        directory,
        HistoryRecord(FIRST),
        HistoryRecord(SECOND),
        MembershipRecord("c1", ("alice", "bob")),
        DeliveryRecord("bob", "laptop", 1, "1-0", FIRST),
        DeliveryRecord("bob", "laptop", 1, "1-1", SECOND),
    )


def test_clean_log_prints_an_ok_report_and_exits_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(clean(tmp_path))]) == 0

    report = orjson.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["totals"]["delivered"] == 2


def test_any_violation_exits_one_with_its_examples_capped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_run(
        tmp_path,
        MembershipRecord("c1", ("alice",)),
        *(HistoryRecord(message) for message in (FIRST, SECOND)),
        DeliveryRecord("bob", "laptop", 1, "1-0", FIRST),
        DeliveryRecord("bob", "laptop", 1, "1-1", SECOND),
    )

    assert main([str(tmp_path), "--max-examples", "1"]) == 1

    report = orjson.loads(capsys.readouterr().out)
    assert (report["ok"], report["non_member_deliveries"]) == (False, 2)
    assert len(report["examples"]["non_member_deliveries"]) == 1


def test_unreadable_log_exits_two_and_says_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken.jsonl").write_text('{"kind": "complete"}\n')

    assert main([str(tmp_path)]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "broken.jsonl:1" in captured.err


def test_the_module_runs_as_a_command(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.checker", str(clean(tmp_path))],
        cwd=REPO,
        capture_output=True,
        check=False,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["ok"] is True
