"""videoworker's built-in plugins, registered through the ``videoworker`` entry-point group like any other."""
