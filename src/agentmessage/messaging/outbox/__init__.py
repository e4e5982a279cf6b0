"""The outbox: outbound messages are rows, queued in the transaction that decided
to send them, and a dispatcher sends them after commit."""
