"""fetcher.load._cli.run_load: the `fetcher load` command against the demo catalog."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from fetcher.config import load_settings
from fetcher.demo._write import write_demo_files
from fetcher.load._cli import EXIT_OK, EXIT_REJECTED, EXIT_SETUP, run_load
from tests.unit.aggregation_support import NAME, demo_with_aggregation_group

CONFIG_DIR = Path(__file__).resolve().parents[3] / "config" / "demo"
NOW = 1_800_000_000_000


def args(group: str, *files: Path) -> argparse.Namespace:
    """The namespace fetcher.cli's `load` parser builds."""
    return argparse.Namespace(
        settings=None,
        group=group,
        batch_size=500,
        event_time_column="event_time",
        ignore_unknown_columns=False,
        files=[str(f) for f in files],
    )


async def test_run_load_exit_codes_and_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings_path = tmp_path / "s.toml"
    settings_path.write_text(
        f'[server]\nconfig_dir = "{CONFIG_DIR}"\n\n'
        f'[stores.main]\nurl = "embedded://{tmp_path / "s.lmdb"}?sync=false"\n',
        encoding="utf-8",
    )
    settings = load_settings(settings_path, env={})
    files = write_demo_files(tmp_path / "files", CONFIG_DIR, now_ms=NOW)

    assert await run_load(settings, args("merchant_stats", files["merchant_stats"])) == EXIT_OK
    out, err = capsys.readouterr()
    (row,) = [line.split() for line in out.splitlines() if "merchant_stats.jsonl" in line]
    assert row[1:6] == ["merchant_stats", "jsonl", "1,099", "1,099", "0"]
    assert "1,099 read, 1,099 written, 0 rejected" in err

    bad = tmp_path / "bad.jsonl"
    good = json.loads(files["merchant_stats"].read_text().splitlines()[0])
    bad.write_text(json.dumps(good) + "\n" + json.dumps({**good, "mcc": "x"}) + "\n")
    missing = tmp_path / "missing.csv"
    code = await run_load(settings, args("merchant_stats", bad, missing))
    assert code == EXIT_REJECTED
    out, err = capsys.readouterr()
    assert "line 2: mcc: expects an int64, got str 'x'" in out
    assert "missing.csv: no such file" in err

    assert await run_load(settings, args("nope", bad)) == EXIT_SETUP
    assert "unknown group 'nope'" in capsys.readouterr().err


async def test_rows_are_not_loaded_into_an_aggregation_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = demo_with_aggregation_group(tmp_path / "cfg")
    settings_path = tmp_path / "s.toml"
    settings_path.write_text(
        f'[server]\nconfig_dir = "{config}"\n\n'
        f'[stores.main]\nurl = "embedded://{tmp_path / "s.lmdb"}?sync=false"\n',
        encoding="utf-8",
    )
    rows = tmp_path / "tx.jsonl"
    rows.write_text(json.dumps({"user_id": 1, "event_time": NOW, "amount": 2.5}) + "\n")
    code = await run_load(load_settings(settings_path, env={}), args(NAME, rows))
    assert code == EXIT_SETUP
    out, err = capsys.readouterr()
    assert err == (f"error: group {NAME!r} is an aggregation group: load its events with "
                   "`fetcher load --events`\n")
    assert out == ""
    assert not (tmp_path / "s.lmdb").exists()  # refused before the store was opened
