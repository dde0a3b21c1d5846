"""Reads redwatch's Prometheus endpoint and waits for expected series.

Parsing uses prometheus_client's own text-format parser, so an exposition that Prometheus would
reject fails here too. Waiting polls with a deadline; there are no fixed sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests
from prometheus_client.parser import text_string_to_metric_families

from expected_red import SampleKey, diff_red, red_samples_for, sample_key

RED_DEADLINE_S = float(__import__("os").environ.get("INTEROP_RED_DEADLINE_S", "30"))
POLL_INTERVAL_S = 0.2

_session = requests.Session()
_session.trust_env = False  # never route 127.0.0.1 through a proxy from the environment


def scrape_text(metrics_url: str) -> str:
    resp = _session.get(metrics_url, timeout=5)
    assert resp.status_code == 200, f"GET {metrics_url} -> {resp.status_code}: {resp.text[:2000]}"
    content_type = resp.headers.get("Content-Type", "")
    assert content_type.startswith("text/plain"), f"GET {metrics_url}: Content-Type {content_type!r}"
    return resp.text


def parse_samples(text: str) -> dict[SampleKey, float]:
    samples: dict[SampleKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample_key(sample.name, sample.labels)
            assert key not in samples, f"duplicate sample {key} in exposition"
            samples[key] = sample.value
    return samples


def scrape(metrics_url: str) -> dict[SampleKey, float]:
    return parse_samples(scrape_text(metrics_url))


def sum_samples(samples: dict[SampleKey, float], name: str, **labels: str) -> float:
    total = 0.0
    for (sample_name, sample_labels), value in samples.items():
        if sample_name != name:
            continue
        present = dict(sample_labels)
        if all(present.get(k) == v for k, v in labels.items()):
            total += value
    return total


def wait_for(
    metrics_url: str,
    done: Callable[[dict[SampleKey, float]], bool],
    describe: Callable[[dict[SampleKey, float]], str],
    deadline_s: float = RED_DEADLINE_S,
    relevant: Callable[[str], bool] = lambda line: True,
) -> dict[SampleKey, float]:
    """Scrapes until `done(samples)`; on deadline fails with `describe(last samples)` and the
    `relevant` lines of the last exposition."""
    deadline = time.monotonic() + deadline_s
    last_text = ""
    last: dict[SampleKey, float] = {}
    while True:
        last_text = scrape_text(metrics_url)
        last = parse_samples(last_text)
        if done(last):
            return last
        if time.monotonic() >= deadline:
            lines = [line for line in last_text.splitlines() if relevant(line)]
            shown = "\n".join(lines[:200]) + (f"\n... {len(lines) - 200} more lines" if len(lines) > 200 else "")
            raise AssertionError(
                f"condition not met on {metrics_url} within {deadline_s:.0f}s:\n{describe(last)}\n"
                f"--- last /metrics: {len(lines)} relevant of {len(last_text.splitlines())} lines ---\n{shown}"
            )
        time.sleep(POLL_INTERVAL_S)


def wait_for_red(metrics_url: str, expected: dict[SampleKey, float], services: set[str]) -> dict[SampleKey, float]:
    """Waits until the RED series of `services` are exactly `expected`, nothing more or less."""

    def done(samples: dict[SampleKey, float]) -> bool:
        return not diff_red(expected, red_samples_for(samples, services))

    def describe(samples: dict[SampleKey, float]) -> str:
        problems = diff_red(expected, red_samples_for(samples, services))
        shown = "\n".join(problems[:80])
        more = f"\n... and {len(problems) - 80} more" if len(problems) > 80 else ""
        return f"RED series differ from the model ({len(problems)} differences):\n{shown}{more}"

    def relevant(line: str) -> bool:
        return line.startswith("#") or any(f'"{service}"' in line for service in services)

    return wait_for(metrics_url, done, describe, relevant=relevant)
