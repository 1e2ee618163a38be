"""Step results and the report they add up to; the exit code is decided here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

SCHEMA_VERSION = 1


class Status(StrEnum):
    PASS = "PASS"  # noqa: S105 - a verdict, not a password
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"  # not run, because an earlier step failed or the options do not ask for it


@dataclass
class StepResult:
    """The outcome of one step: a verdict, what is wrong (or right), how to fix it, and what was measured."""

    name: str
    status: Status
    diagnosis: str
    hint: str = ""
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether later steps can build on this one (a warning does not stop the run)."""
        return self.status in {Status.PASS, Status.WARN}

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "status": str(self.status),
            "diagnosis": self.diagnosis,
            "hint": self.hint,
            "facts": self.facts,
        }


def passed(name: str, diagnosis: str, **facts: object) -> StepResult:
    return StepResult(name, Status.PASS, diagnosis, facts=facts)


def warned(name: str, diagnosis: str, hint: str, **facts: object) -> StepResult:
    return StepResult(name, Status.WARN, diagnosis, hint, facts)


def failed(name: str, diagnosis: str, hint: str, **facts: object) -> StepResult:
    return StepResult(name, Status.FAIL, diagnosis, hint, facts)


def skipped(name: str, reason: str) -> StepResult:
    return StepResult(name, Status.SKIP, reason)


@dataclass
class Report:
    """All steps of one run, in the order they ran."""

    target: dict[str, object]
    steps: list[StepResult] = field(default_factory=list)

    def add(self, result: StepResult) -> StepResult:
        self.steps.append(result)
        return result

    def step(self, name: str) -> StepResult | None:
        return next((s for s in self.steps if s.name == name), None)

    @property
    def status(self) -> Status:
        """FAIL if any step failed, WARN if any warned, else PASS (skipped steps count for nothing)."""
        statuses = {s.status for s in self.steps}
        for worst in (Status.FAIL, Status.WARN):
            if worst in statuses:
                return worst
        return Status.PASS

    @property
    def exit_code(self) -> int:
        """0 when nothing failed (warnings allowed), 1 on any failure; 2 is left for usage errors."""
        return 1 if self.status is Status.FAIL else 0

    def to_dict(self) -> dict[str, object]:
        return {
            "tool": "ftps-doctor",
            "schema": SCHEMA_VERSION,
            "target": self.target,
            "status": str(self.status),
            "exit_code": self.exit_code,
            "steps": [s.to_dict() for s in self.steps],
        }
