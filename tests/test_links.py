from datetime import UTC, datetime, timedelta

import pytest

from aftercare.links.one_click import ExpiredLink, InvalidLink, issue_link_token, read_link_token

SECRET = "link-secret-for-tests"
NOW = datetime(2026, 11, 21, 15, 0, tzinfo=UTC)


def issue(**overrides) -> str:
    args = dict(
        secret=SECRET,
        workflow_id="followup-clinic-42-s-1",
        action="reply",
        value="OK",
        ttl=timedelta(hours=72),
        now=NOW,
    )
    return issue_link_token(**(args | overrides))


def test_a_link_reads_back_as_the_action_it_was_issued_for():
    claim = read_link_token(SECRET, issue(), NOW + timedelta(hours=1))

    assert claim.workflow_id == "followup-clinic-42-s-1"
    assert (claim.action, claim.value) == ("reply", "OK")
    assert claim.expires_at == NOW + timedelta(hours=72)


def test_each_link_carries_its_own_nonce_so_it_can_be_used_once():
    first = read_link_token(SECRET, issue(), NOW)
    second = read_link_token(SECRET, issue(), NOW)

    assert first.jti != second.jti


def test_a_link_is_rejected_once_it_expires():
    with pytest.raises(ExpiredLink):
        read_link_token(SECRET, issue(ttl=timedelta(minutes=5)), NOW + timedelta(minutes=5))


def test_a_link_with_an_altered_claim_is_rejected():
    token = issue()
    payload, signature = token.split(".")
    forged = issue(action="ack").split(".")[0]

    with pytest.raises(InvalidLink, match="signature"):
        read_link_token(SECRET, f"{forged}.{signature}", NOW)
    with pytest.raises(InvalidLink, match="signature"):
        read_link_token(SECRET, f"{payload}.{signature[:-2]}AA", NOW)


def test_a_link_signed_with_another_secret_is_rejected():
    with pytest.raises(InvalidLink, match="signature"):
        read_link_token("another-secret", issue(), NOW)


@pytest.mark.parametrize("token", ["", "no-dot", ".", "abc.", ".abc", "é.é", "abc.def.ghi"])
def test_malformed_links_are_rejected(token):
    with pytest.raises(InvalidLink):
        read_link_token(SECRET, token, NOW)

