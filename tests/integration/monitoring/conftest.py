# The real Prometheus and Alertmanager of tests/integration/evidence, shared with this folder's tests.
from tests.integration.evidence.conftest import monitored_lab, monitoring

__all__ = ["monitored_lab", "monitoring"]
