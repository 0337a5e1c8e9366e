"""The audit database's tables, as SQLAlchemy Core objects shared by SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from workflows.fields import OPAQUE_ID_MAX_LENGTH, PROVIDER_MESSAGE_ID_MAX_LENGTH

# followup-{clinic_id}-{session_id}, both opaque ids.
WORKFLOW_ID_MAX_LENGTH = len("followup--") + 2 * OPAQUE_ID_MAX_LENGTH
# A role ("client", "emergency_contact") or "staff:{staff_id}".
RECIPIENT_MAX_LENGTH = len("staff:") + OPAQUE_ID_MAX_LENGTH


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Stores aware datetimes as UTC and reads them back aware, on both backends.

    PostgreSQL keeps the zone (timestamptz); SQLite keeps none, so without this an entry
    would come back naive and no longer equal the one the workflow sealed.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("audit times must carry a time zone")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# The execution option of a transaction that only reads. SQLite begins it deferred, so it
# takes no lock a writer waits for (WAL readers work from a snapshot); every other
# transaction begins IMMEDIATE, taking the write lock before its first read.
READS_ONLY = {"aftercare_reads_only": True}

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", UtcDateTime, nullable=False),
)

audit_entries = sa.Table(
    "audit_entries",
    metadata,
    sa.Column("workflow_id", sa.String(200), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", UtcDateTime, nullable=False),
    sa.Column("step", sa.String(80), nullable=False),
    sa.Column("channel", sa.String(40)),
    sa.Column("actor", sa.String(80), nullable=False),
    sa.Column("recipient", sa.String(RECIPIENT_MAX_LENGTH)),
    sa.Column("provider_message_id", sa.String(PROVIDER_MESSAGE_ID_MAX_LENGTH)),
    # Free text: a staff member's reason for cancelling, a clinic's booking id, ...
    sa.Column("outcome", sa.Text),
    sa.Column("detail", sa.JSON, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("audit_entries_by_time", "at"),
    sa.Index("audit_entries_by_step", "step"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("workflow_id", sa.String(200), primary_key=True),
    sa.Column("message_key", sa.String(200), primary_key=True),
    sa.Column("channel", sa.String(40), nullable=False),
    sa.Column("provider_message_id", sa.String(200), nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
)

# A send about to reach a provider that cannot be asked to de-duplicate (Twilio): written
# before the request, so a retry knows an earlier attempt's outcome is unknown when
# ``deliveries`` has no row for the same message.
send_attempts = sa.Table(
    "send_attempts",
    metadata,
    sa.Column("workflow_id", sa.String(200), primary_key=True),
    sa.Column("message_key", sa.String(200), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
)

access_log = sa.Table(
    "access_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(80), nullable=False),
    sa.Column("target", sa.Text, nullable=False),
    sa.Column("at", UtcDateTime, nullable=False),
)

# Each one-click email link works once: its nonce is written here when it is used.
used_links = sa.Table(
    "used_links",
    metadata,
    sa.Column("jti", sa.String(64), primary_key=True),
    sa.Column("workflow_id", sa.String(200), nullable=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("used_at", UtcDateTime, nullable=False),
)

# Signed heads of each follow-up's chain (aftercare.trail.checkpoints), one per appended batch:
# apart from the entries, so deleting or re-sealing entries shows.
audit_checkpoints = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("workflow_id", sa.String(200), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("closed", sa.Boolean, nullable=False),
    sa.Column("signed_at", UtcDateTime, nullable=False),
    sa.Column("key_id", sa.String(80), nullable=False),
    sa.Column("signature", sa.String(64), nullable=False),
)

# Staff free text (workflows.models.StaffNote), sealed with the payload keys: kept out of the
# trail, which exports claim carries no PHI, yet readable by an authorised auditor.
staff_notes = sa.Table(
    "staff_notes",
    metadata,
    sa.Column("workflow_id", sa.String(200), primary_key=True),
    sa.Column("audit_seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(40), primary_key=True),
    sa.Column("staff_id", sa.String(80), nullable=False),
    sa.Column("sealed_text", sa.LargeBinary, nullable=False),
    sa.Column("recorded_at", UtcDateTime, nullable=False),
)

# Twilio's webhooks, kept before they are passed to Temporal: a replay of one is recognised
# by its key, and one Temporal could not take is passed on later. The request is sealed
# with the payload keys (a client's number and words are PHI) and dropped once delivered.
inbound_webhooks = sa.Table(
    "inbound_webhooks",
    metadata,
    sa.Column("message_key", sa.String(200), primary_key=True),
    sa.Column("received_at", UtcDateTime, nullable=False),
    sa.Column("sealed_request", sa.LargeBinary),
    sa.Column("claimed_until", UtcDateTime),
    sa.Column("delivered_at", UtcDateTime),
    sa.Index("inbound_webhooks_waiting", "delivered_at", "received_at"),
)

# What people read about each follow-up (workflows.models.FollowUpView), written with the
# trail's batches: the newest revision only. The client's reply for review is sealed apart.
followup_views = sa.Table(
    "followup_views",
    metadata,
    sa.Column("workflow_id", sa.String(200), primary_key=True),
    sa.Column("clinic_id", sa.String(OPAQUE_ID_MAX_LENGTH), nullable=False),
    sa.Column("phase", sa.String(40), nullable=False),
    sa.Column("is_open", sa.Boolean, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False),
    sa.Column("view", sa.JSON, nullable=False),
    sa.Column("sealed_reply", sa.LargeBinary),
    sa.Index("followup_views_of_clinic", "clinic_id", "is_open", "updated_at"),
)

APPEND_ONLY_TABLES = ("audit_entries", "deliveries", "access_log")

# Staff console sign-in: one row per code sent (or being sent). A challenge is usable only
# once its code went out (``sent_at``), for a few ``tries``, once (``used_at``).
sign_in_challenges = sa.Table(
    "sign_in_challenges",
    metadata,
    sa.Column("challenge_id", sa.String(64), primary_key=True),
    sa.Column("clinic_id", sa.String(80), nullable=False),
    sa.Column("staff_id", sa.String(80), nullable=False),
    sa.Column("code_mac", sa.String(64), nullable=False),
    sa.Column("issued_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("sent_at", UtcDateTime),
    sa.Column("tries", sa.Integer, nullable=False, default=0),
    sa.Column("used_at", UtcDateTime),
    sa.Index("sign_in_challenges_by_staff", "clinic_id", "staff_id", "issued_at"),
)

# Staff console sessions, so that signing out ends one on the server, not just in the browser.
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("started_at", UtcDateTime, nullable=False),
    sa.Column("expires_at", UtcDateTime, nullable=False),
    sa.Column("ended_at", UtcDateTime),
)

# When a session last saw a follow-up's contact details: a page that refreshes itself is one
# view in the access log, not one per refresh.
contact_views = sa.Table(
    "contact_views",
    metadata,
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("workflow_id", sa.String(200), primary_key=True),
    sa.Column("last_seen_at", UtcDateTime, nullable=False),
)
