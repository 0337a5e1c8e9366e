"""The search attributes Aftercare needs on a namespace: what they are, which are missing,
and registering them where this identity may (``python -m aftercare.setup`` does)."""

from __future__ import annotations

from typing import TextIO

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

SETUP_COMMAND = "python -m aftercare.setup"

# A keyed hash of the client's phone number: finds the follow-up a text is from.
CONTACT_KEY = SearchAttributeKey.for_keyword_list("AftercareContactKey")
# The staff console lists a clinic's follow-ups by it: a clinic id may contain "-", so
# it cannot be read back from followup-{clinic_id}-{session_id} safely.
CLINIC = SearchAttributeKey.for_keyword("AftercareClinic")

# Stored in clear by Temporal: they hold a keyed hash and a page's code, never PHI.
SEARCH_ATTRIBUTES: dict[str, IndexedValueType.ValueType] = {
    CONTACT_KEY.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
    # The escalation's code that staff pages carry: set by workflows.followup (ACK_CODE).
    "AftercareAckCode": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    CLINIC.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    # Where a running follow-up stands: set by workflows.followup (PHASE).
    "AftercarePhase": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
}
TYPE_NAMES = {
    IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST: "KeywordList",
    IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD: "Keyword",
}
REFUSALS = (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNAUTHENTICATED,
            RPCStatusCode.UNIMPLEMENTED)


def dev_server_flags() -> list[str]:
    """``temporal server start-dev`` flags that register every search attribute above."""
    return [flag for name, kind in SEARCH_ATTRIBUTES.items()
            for flag in ("--search-attribute", f"{name}={TYPE_NAMES[kind]}")]


class SearchAttributeMismatch(RuntimeError):
    """A search attribute exists under our name with another type: only an admin can fix it."""


async def missing_search_attributes(client: Client, namespace: str) -> list[str]:
    """The search attributes Aftercare needs that the namespace lacks, in a stable order."""
    listed = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    existing = dict(listed.custom_attributes)
    for name, wanted in SEARCH_ATTRIBUTES.items():
        if name in existing and existing[name] != wanted:
            raise SearchAttributeMismatch(
                f"search attribute {name} exists on namespace {namespace} as "
                f"{IndexedValueType.Name(existing[name])}, not {TYPE_NAMES[wanted]}: an "
                "administrator must remove it before the setup can add it"
            )
    return [name for name in SEARCH_ATTRIBUTES if name not in existing]


def admin_instructions(namespace: str, names: list[str]) -> str:
    pairs = [(name, TYPE_NAMES[SEARCH_ATTRIBUTES[name]]) for name in names]
    cli = " ".join(f"--name {name} --type {kind}" for name, kind in pairs)
    cloud = " ".join(f'--search-attribute "{name}={kind}"' for name, kind in pairs)
    return (
        f"An administrator of namespace {namespace} must add the search attributes "
        f"{', '.join(names)}:\n"
        f"  self-hosted:    temporal operator search-attribute create --namespace {namespace} "
        f"{cli}\n"
        f"  Temporal Cloud: tcld namespace search-attributes add --namespace {namespace} {cloud}\n"
        "                  (or in the Cloud UI: Namespaces → the namespace → Search Attributes)\n"
        f"then run {SETUP_COMMAND} again."
    )


async def register_search_attributes(client: Client, namespace: str, out: TextIO) -> bool:
    """Add the missing search attributes; False where this identity may not."""
    missing = await missing_search_attributes(client, namespace)
    if not missing:
        out.write(f"search attributes: already on namespace {namespace}\n")
        return True
    try:
        await client.operator_service.add_search_attributes(AddSearchAttributesRequest(
            namespace=namespace,
            search_attributes={name: SEARCH_ATTRIBUTES[name] for name in missing},
        ))
    except RPCError as err:
        if err.status not in REFUSALS:
            raise
        out.write(f"search attributes: not permitted ({err.message})\n")
        out.write(admin_instructions(namespace, missing) + "\n")
        return False
    out.write(f"search attributes: added {', '.join(missing)} on namespace {namespace}\n")
    return True
