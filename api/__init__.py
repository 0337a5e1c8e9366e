"""The HTTP intake service: departure events in, replies and staff actions to follow-ups."""
