"""The follow-up's versions, and the patches each one has built in.

Version 1 removed every pre-release patch. Since then, a change to the commands of runs
that exist goes behind a patch (``patched`` below), so runs started before it replay as
they ran. Each patch costs every new run two history events (its marker and the
``TemporalChangeVersion`` upsert) and two billed actions, for as long as it is asked.

A version builds in the patches before it: a run started under it takes their way without
asking, and its history holds no markers for them. The run's version travels in its input,
set by whoever starts it (the intake, a hand-on to a new run, the series a follow-up
starts); an input without one is a run started before version 2, which asks as it did.
"""

from __future__ import annotations

from temporalio import workflow

# A send about to leave carries the trail not yet stored; a burst of steps settles before a
# batch, and a moved deadline alone makes none.
TRAIL_RIDES_SENDS = "trail-rides-sends"
# A defect on one channel of a send fails that channel only, and the next channel is tried.
# Before, the defect failed the whole message (or, on its last channel, every workflow task).
DEFECT_FAILS_ONE_CHANNEL = "send-defect-fails-one-channel"
# A withdrawn send waits for the provider's answer to the try already under way, so a
# message that went out after all is known (and its person can be told what changed).
WITHDRAWN_SEND_SETTLES = "withdrawn-send-settles-its-try"
# A withdrawn send whose try under way was then refused is recorded as withdrawn. Before, the
# refusal's answer read as "gave up retrying", as if the provider had been tried to the end.
WITHDRAWN_TRY_REFUSED = "withdrawn-send-refused-try"
# A staff member paged before the close, with another page to them still on its way then,
# hears how it ended once that page has settled. Before, they were told at the close and
# again when that page was accepted: the same all-clear twice.
LAST_WORD_AFTER_LAST_PAGE = "last-word-after-the-last-page"
# A follow-up that ends unbooked may start the Caring Contacts series.
CARING_CONTACTS_SERIES = "caring-contacts-series"

BEFORE_VERSION_2 = 1
CURRENT = 2
BUILT_IN: dict[int, frozenset[str]] = {
    BEFORE_VERSION_2: frozenset(),
    2: frozenset({TRAIL_RIDES_SENDS, DEFECT_FAILS_ONE_CHANNEL, WITHDRAWN_SEND_SETTLES,
                  WITHDRAWN_TRY_REFUSED, LAST_WORD_AFTER_LAST_PAGE, CARING_CONTACTS_SERIES}),
}


def patched(patch_id: str) -> bool:
    """``workflow.patched``, answered without a marker where the running workflow's version
    has the patch built in. The workflow says its version as ``version``."""
    if patch_id in BUILT_IN[workflow.instance().version]:
        return True
    return workflow.patched(patch_id)
