"""A plugin module that cannot be imported."""

raise ImportError("a dependency of the plugin is missing")
