"""The check every interop test ends with: spans sent -> exact RED series and accepted counts."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan

from expected_red import ExpectedRed, diff_red, red_samples_for
from prometheus_scrape import scrape, sum_samples, wait_for, wait_for_red
from redwatch_process import RedwatchServer
from span_workload import check_durations

ACCEPTED = "redwatch_spans_accepted_total"
RECEIVERS = ("otlp_grpc", "otlp_http")


def assert_red_matches(server: RedwatchServer, spans: Sequence[ReadableSpan], receiver: str) -> None:
    """Waits for the RED series of `spans`' services and compares them exactly with the model.

    The server is fresh per test, so `redwatch_spans_accepted_total{receiver}` must equal the
    number of spans sent, and the other receiver must have accepted none.
    """
    assert receiver in RECEIVERS
    check_durations(spans)
    model = ExpectedRed()
    model.add_spans(spans)
    assert model.span_count == len(spans) > 0

    # Accepted spans are counted on receipt, before any window closes.
    def accepted_ok(samples):
        return sum_samples(samples, ACCEPTED, receiver=receiver) == len(spans)

    def accepted_describe(samples):
        got = {r: sum_samples(samples, ACCEPTED, receiver=r) for r in RECEIVERS}
        return f'{ACCEPTED}{{receiver="{receiver}"}}: expected {len(spans)}, got {got}'

    samples = wait_for(server.metrics_url, accepted_ok, accepted_describe, relevant=lambda line: "redwatch_" in line)
    others = [r for r in RECEIVERS if r != receiver]
    for other in others:
        assert sum_samples(samples, ACCEPTED, receiver=other) == 0, accepted_describe(samples)

    try:
        wait_for_red(server.metrics_url, model.samples(), model.services)
    except AssertionError as err:
        raise AssertionError(f"{err}\n--- spans sent (model input) ---\n{model.describe()}") from None

    # One more scrape: the series stay exact (a closed window is not emitted twice).
    final = scrape(server.metrics_url)
    problems = diff_red(model.samples(), red_samples_for(final, model.services))
    assert not problems, "RED series changed after matching:\n" + "\n".join(problems[:80])
    assert sum_samples(final, ACCEPTED, receiver=receiver) == len(spans)
