"""Printing a report for people (aligned lines, hints under failures) or for programs (JSON)."""

from __future__ import annotations

import json

from ftpsd.doctor.report import Report, Status

_FACT_WIDTH = 100


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str)


def _fact(value: object) -> str:
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    text = " | ".join(str(value).splitlines())
    return text if len(text) <= _FACT_WIDTH else text[: _FACT_WIDTH - 3] + "..."


def to_text(report: Report, facts: bool = True) -> str:
    target = report.target
    who = f", user {target['user']}" if target.get("user") else ""
    lines = [f"ftps-doctor {target['host']}:{target['port']} ({target['mode']} FTPS{who})"]
    width = max(len(s.name) for s in report.steps) if report.steps else 0
    for step in report.steps:
        lines.append(f"{step.status:<4} {step.name:<{width}}  {step.diagnosis}")
        indent = " " * (width + 7)  # under the diagnosis: "FAIL " + name + 2 spaces
        if step.hint and step.status in {Status.FAIL, Status.WARN}:
            lines.append(f"{indent}fix: {step.hint}")
        if facts:
            lines.extend(
                f"{indent}{key}: {_fact(value)}" for key, value in step.facts.items() if value is not None
            )
    counts = {status: sum(s.status is status for s in report.steps) for status in Status}
    lines.append(
        f"result: {report.status} ({counts[Status.PASS]} passed, {counts[Status.WARN]} warnings, "
        f"{counts[Status.FAIL]} failed, {counts[Status.SKIP]} skipped)"
    )
    return "\n".join(lines)
