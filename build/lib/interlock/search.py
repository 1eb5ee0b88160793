"""Custom search attributes: how proposals are filtered in the Temporal Web UI and `interlock list`."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

SA_STATUS = SearchAttributeKey.for_keyword("InterlockStatus")
SA_ACTION = SearchAttributeKey.for_keyword("InterlockAction")
SA_SERVICE = SearchAttributeKey.for_keyword("InterlockService")
SA_RISK_TIER = SearchAttributeKey.for_keyword("InterlockRiskTier")
SA_RECOMMENDER = SearchAttributeKey.for_keyword("InterlockRecommender")
# Set at start when the proposal names one: all proposals about one incident, in one filter.
SA_INCIDENT = SearchAttributeKey.for_keyword("InterlockIncident")

ALL = (SA_STATUS, SA_ACTION, SA_SERVICE, SA_RISK_TIER, SA_RECOMMENDER, SA_INCIDENT)
