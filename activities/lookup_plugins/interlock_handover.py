"""Interlock's hand-over lookup: the facts a verify play may read, once Interlock checked them.

Runs inside ansible-playbook (the hand-over play of a `run_change` run), never in Interlock.
It waits for the file Interlock writes when the hand-over play starts, then answers the checked
facts of every host of the run, or fails this host with the reason its facts were refused.
"""

from __future__ import annotations

import json
import os
import time

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

WAIT_SECONDS = 30.0


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        if len(terms) != 1:
            raise AnsibleError("interlock_handover: one term, the hand-over file")
        path = str(terms[0])
        host = str((variables or {}).get("inventory_hostname", ""))
        deadline = time.monotonic() + WAIT_SECONDS
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise AnsibleError(f"Interlock did not hand the facts over within {WAIT_SECONDS:g}s")
            time.sleep(0.01)
        with open(path) as handle:
            document = json.load(handle)
        refused = document.get("refused") or {}
        if host in refused:
            raise AnsibleError(str(refused[host]))
        return [document.get("facts") or {}]
