"""Fails a test run whose JUnit XML shows a skipped test (xfail counts too) or no test at all.

In CI every test runs, so a skip is a failure. Prints the skipped test ids, then a
closing count line: "tests: N passed, N failed, N skipped".

usage: python scripts/check_no_skips.py build/test-results.xml
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def _test_id(case: ET.Element) -> str:
    classname = case.get("classname", "")
    name = case.get("name", "")
    return f"{classname}::{name}" if classname else name


def check(path: Path) -> int:
    """Returns the exit code for the run recorded in the JUnit XML at `path`."""
    if not path.is_file():
        print(f"check_no_skips: {path} missing: pytest did not run to the end", file=sys.stderr)
        return 1
    cases = list(ET.parse(path).getroot().iter("testcase"))
    skipped = [c for c in cases if c.find("skipped") is not None]
    failed = [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
    passed = len(cases) - len(skipped) - len(failed)
    rc = 0
    if skipped:
        print(f"check_no_skips: {len(skipped)} skipped test(s); in CI every test must run:")
        for case in skipped:
            mark = case.find("skipped")
            assert mark is not None
            kind = "XFAIL" if mark.get("type") == "pytest.xfail" else "SKIPPED"
            print(f"  {kind} {_test_id(case)}: {mark.get('message', '')}")
        rc = 1
    if not cases:
        print("check_no_skips: no test ran (pytest collected nothing)")
        rc = 1
    if failed:
        rc = 1
    print(f"tests: {passed} passed, {len(failed)} failed, {len(skipped)} skipped")
    return rc


def main(argv: list[str]) -> int:
    """Entry point: one argument, the JUnit XML file."""
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    return check(Path(argv[1]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
