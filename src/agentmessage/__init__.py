"""AgentMessage Consent: the system of record for SMS consent."""

__version__ = "0.1.0"
