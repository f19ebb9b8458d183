"""OpenRouter: the HTTP client, how its answers are read, streamed downloads, typed data and the models cache."""
