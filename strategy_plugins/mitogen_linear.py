"""Mitogen's linear strategy, reached through this folder so that ansible.cfg names no site-packages path.

Why Mitogen: it keeps one Python interpreter per host alive for the whole run and sends modules to it over
the SSH connection, instead of starting a Python and copying a module for every task. On the lab a
no-change re-run of site.yml takes about half the time (README, "Benchmarks"). The play order, batches,
check mode and --diff are the linear strategy's own: Mitogen replaces only how tasks reach a host.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
