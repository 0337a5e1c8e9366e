"""The console's one read of a follow-up's data from Temporal: the client's contact
details, from its start input. Everything else it shows is the follow-up's view in the
audit store (``aftercare.followups.views``).

Contact details exist only in the follow-up's input, which Temporal stores encrypted; they
are decrypted (``aftercare.followups.lookup``) in the API process, with the service's own
data converter, rendered into one page and never written anywhere else. Reading them runs
no workflow code.
"""

from __future__ import annotations

from aftercare.followups.lookup import followup_input

__all__ = ["followup_input"]
