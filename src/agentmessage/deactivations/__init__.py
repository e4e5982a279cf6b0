"""Carrier deactivation feeds: a consent given by a number's previous owner stops counting."""
