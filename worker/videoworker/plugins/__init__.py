"""The plugin host: the manager that loads plugins, the façade that calls them, and the types hooks exchange."""
