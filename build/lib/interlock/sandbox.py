"""The workflow sandbox the worker runs workflows in, shared with the replayer so a replay refuses
exactly what a live worker refuses."""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions


def workflow_runner() -> SandboxedWorkflowRunner:
    # The approval validator checks Ed25519 signatures. cryptography's Rust core imports
    # `cryptography.exceptions` lazily when a signature is bad; inside the sandbox that import
    # is refused and the panic kills the worker. Passing the package through makes a forged
    # token an ordinary refusal.
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("cryptography")
    )
