"""Development tools for videoworker: the OpenRouter simulator, the demo, and a local RabbitMQ starter."""
