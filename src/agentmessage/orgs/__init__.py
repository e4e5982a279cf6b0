"""Organizations (businesses), their plans and their sender numbers."""
