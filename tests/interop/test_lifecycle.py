"""Process contract the other tests rely on: a clean exit (code 0) on SIGTERM."""

from __future__ import annotations

from redwatch_process import DEFAULT_CONFIG, LISTENERS, RedwatchProcess


def test_sigterm_right_after_listening_exits_zero(tmp_path):
    """SIGTERM as soon as the listeners are up (what an orchestrator may do) is still a clean
    shutdown: the handler must be installed before the `listening` lines are logged.
    (Every other test checks the exit code after SIGTERM in the `redwatch` fixture.)"""
    config_path = tmp_path / "redwatch.yaml"
    config_path.write_text(DEFAULT_CONFIG)
    process = RedwatchProcess(config_path, LISTENERS)
    try:
        process.wait_until_listening()
    finally:
        code = process.stop()
    assert code == 0, f"redwatch exited with {code} after SIGTERM (contract: 0 = ok)\n{process.log_text()}"
