"""Process contract the other tests rely on: clean exit on SIGTERM."""

from __future__ import annotations


def test_sigterm_exits_zero(redwatch):
    code = redwatch.process.stop()
    assert code == 0, f"redwatch exited with {code} after SIGTERM (contract: 0 = ok)"
