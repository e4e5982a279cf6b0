"""Consents in and out of files: CSV import and CSV/JSON Lines export."""
