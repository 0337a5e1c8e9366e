"""How a workflow refuses a staff action: by failing the update, not in a validator, so the
refusal is in the history and replay sees exactly what happened."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from workflows.policy import ClinicPolicy

ACTION_REFUSED = "ActionRefused"


def refuse(problem: str | None) -> None:
    if problem:
        raise ApplicationError(problem, type=ACTION_REFUSED, non_retryable=True)


def staff_problem(policy: ClinicPolicy, staff_id: str) -> str | None:
    """An action by someone the clinic does not know would stop the chain for nobody."""
    if staff_id not in policy.staff:
        return f"{staff_id} is not a staff member of this clinic"
    return None
