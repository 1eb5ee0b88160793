"""A real local lab: service processes, releases, access lists and a monitor to act on."""

from interlock.lab._lab import Lab, LabError

__all__ = ["Lab", "LabError"]
