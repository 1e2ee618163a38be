"""ftps-doctor: checks an FTPS server the way a real client uses it and says exactly what is wrong.

Technicians troubleshoot transfers every day; most failures are one of a handful of causes (server
down, firewall, certificate, password, passive range, masquerade address). The doctor walks through
a client session step by step and stops at the first broken layer with a diagnosis and a fix hint.
The same code serves the command line, the live tests and the rollout health gate, so they agree.
"""

from ftpsd.doctor.options import Options
from ftpsd.doctor.report import Report, Status, StepResult
from ftpsd.doctor.runner import diagnose

__all__ = ["Options", "Report", "Status", "StepResult", "diagnose"]
