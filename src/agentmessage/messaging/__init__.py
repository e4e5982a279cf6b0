"""SMS in and out: the outbox and its dispatcher, providers (sandbox, Twilio),
inbound handling, STOP/START/HELP keywords and the double opt-in flow."""
