"""Aftercare's side of Temporal: the connection, the payload codec and its endpoint for the
Web UI, the search attributes, and the checks a service makes on connecting."""
