"""Consent records, their capture and revocation, and their append-only history."""
