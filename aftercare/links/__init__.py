"""Signed links: one-click actions in a client's or staff member's email, and a staff page's
short link to its escalation in the staff console."""
