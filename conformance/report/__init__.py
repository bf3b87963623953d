"""The report bundle of one run: `reports/<run-id>/`.

    report.json        the verdicts and what they rest on (schema: spec/schemas/report.json)
    report.html        the same for people, zh and en, self-contained
    junit.xml          one testcase per test, requirement ids as properties (written by pytest)
    allure-results/    for Allure dashboards (written by allure-pytest)
    evidence/http.har  every exchange with the node, secrets redacted
    evidence/run.log   what the harness itself noted (cleanup refusals, timings)

report.json is written last, with the SHA-256 of every other file, so it seals the bundle.
"""

from __future__ import annotations

from conformance.report._bundle import write_bundle

__all__ = ["write_bundle"]
