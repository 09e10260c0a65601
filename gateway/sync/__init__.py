"""Catch-up sync: bring an account's index in Redis up to date with the upstream."""
