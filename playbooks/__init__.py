"""Interlock's built-in playbooks (an ansible-runner private_data_dir), installed as package data."""
