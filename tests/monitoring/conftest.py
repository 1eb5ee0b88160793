# The real Prometheus and Alertmanager of tests/evidence, shared with this folder's tests.
from tests.evidence.conftest import monitored_lab, monitoring

__all__ = ["monitored_lab", "monitoring"]
