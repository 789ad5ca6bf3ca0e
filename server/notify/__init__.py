"""Notification delivery (SPEC §7): the outbox dispatcher, channels, templates, in-app inbox."""
