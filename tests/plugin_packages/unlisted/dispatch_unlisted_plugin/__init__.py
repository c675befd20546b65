"""Importing this module is a test failure: its distribution is never allowed."""

raise AssertionError("a plugin that is not listed must not be imported")
