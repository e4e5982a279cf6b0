"""Hosted consent forms: a signed link to a public page where a contact opts in."""
