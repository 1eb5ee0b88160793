"""What `interlock up` writes for its fleet lab: a policy whose catalog names the lab's hosts
and whose restarts roll one host at a time, still carrying the roster lines that get dev keys;
and an inventory in which each service's group holds exactly its hosts."""

from __future__ import annotations

from pathlib import Path

from interlock.keys import ensure_dev_keys
from interlock.lab import Lab
from interlock.policy import load_policy
from interlock.stack import fleet_inventory, fleet_policy_text


def test_the_fleet_policy_names_the_lab_hosts_and_rolls_restarts(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(fleet_policy_text(ui_port=18233))
    assert sorted(ensure_dev_keys(path, tmp_path / "keys")) == ["alice", "bob", "carol", "erin"]
    policy = load_policy(path)
    assert policy.service_hosts("checkout-api", "lab") == ["web-1", "web-2", "web-3"]
    assert policy.service_hosts("inventory-api", "lab") == ["inventory-1", "inventory-2"]
    rollout = policy.actions["restart_service"].rollout
    assert rollout is not None and (rollout.batch, rollout.max_failed) == (1, 0)
    assert 'ui_base_url: "http://localhost:18233"' in path.read_text()


def test_the_fleet_inventory_groups_each_service_with_its_hosts() -> None:
    lab = fleet_inventory()["lab"]
    assert isinstance(lab, dict)
    assert set(lab["hosts"]) == {h for hosts in Lab.fleet().values() for h in hosts}
    assert all(v["ansible_connection"] == "local" for v in lab["hosts"].values())
    assert {s: list(g["hosts"]) for s, g in lab["children"].items()} == Lab.fleet()
