"""``aftercare-policy check``: what a policy file allows that would hurt a client at 2 am.

The policy model already refuses what cannot work (a typo, an unknown staff id). These
checks refuse what works but should not: timings no production clinic means, an escalation
level that reaches nobody, hours of the week with nobody on call, a language served
without messages, texts that cost more than two SMS segments, a Caring Contacts series that
goes backwards or whose replies nobody reads. Every clinic in the file is
checked; the ``default`` entry only as the clinics inherit it.
"""

from __future__ import annotations

from pathlib import Path

from aftercare.policies import PolicyBook, PolicyError
from aftercare.policy_check.caring import caring_contacts_problems
from aftercare.policy_check.chain import chain_problems, rota_gaps
from aftercare.policy_check.durations import duration_problems
from aftercare.policy_check.messages import language_problems, sms_length_problems
from workflows.policy import ClinicPolicy

CHECKS = (duration_problems, chain_problems, rota_gaps, language_problems, sms_length_problems,
          caring_contacts_problems)


def clinic_problems(policy: ClinicPolicy) -> list[str]:
    """``key: what is wrong`` for each problem of one clinic's policy."""
    return [f"{key}: {message}" for check in CHECKS for key, message in check(policy)]


def book_problems(book: PolicyBook) -> list[str]:
    """One line per problem of every clinic: ``source: clinic.key: what is wrong``."""
    return [f"{book.source}: {clinic}.{problem}"
            for clinic in book.clinics
            for problem in clinic_problems(book.for_clinic(clinic))]


def policy_file_problems(path: Path) -> list[str]:
    """Everything wrong with a policy file: what stops it loading, or else what it allows."""
    try:
        book = PolicyBook.load(path)
    except PolicyError as err:
        return str(err).splitlines()
    return book_problems(book)
