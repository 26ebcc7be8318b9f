"""Read a ``--metrics-port`` endpoint as Prometheus does: an HTTP GET, the text format parsed
by ``prometheus_client``'s own parser; and wait, with a deadline, for figures to arrive."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support import timeout


class Figures:
    """One scrape: every sample by name and labels, and every family's type."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        self.types: dict[str, str] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def __call__(self, name: str, **labels: str) -> float:
        """The sample's value; 0 for a labelled series not exported yet (none counted)."""
        key = (name, frozenset(labels.items()))
        if key not in self.samples:
            assert labels, f"{name} is not exported:\n{self.text}"
            return 0.0
        return self.samples[key]

    def labelled(self, name: str) -> dict[frozenset[tuple[str, str]], float]:
        return {labels: value for (sample, labels), value in self.samples.items() if sample == name}

    def total(self, name: str) -> float:
        """A labelled counter summed over its labels."""
        return sum(self.labelled(name).values())


def scrape(url: str) -> Figures:
    response = httpx.get(url, timeout=timeout(5))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Figures(response.text)


def wait_for(url: str, condition: Callable[[Figures], bool], seconds: float = 10) -> Figures:
    """Scrape until ``condition`` holds: the server counts an event just after its client sees
    it (a response is counted once written), so a scrape right after may be a moment early."""
    deadline = time.monotonic() + timeout(seconds)
    while True:
        figures = scrape(url)
        if condition(figures):
            return figures
        assert time.monotonic() < deadline, f"the figures never met the condition:\n{figures.text}"
