"""Adapters to other libraries; each is imported explicitly (``lrne.integrations.evosax``)."""
