"""What is done to a follow-up from outside it: start it, read its state, pass it a client's
reply, acknowledge, resolve or cancel it as staff, and find it by sender or page code. The
API, the staff console and the CLI are shells over these."""
