"""The audit database: each follow-up's hash-chained trail and its signed checkpoints, the
schema and its migrations, verifying, exporting and replaying a trail, and the inbox that
keeps Twilio's webhooks until Temporal has them."""
