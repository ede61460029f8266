"""Integration tests against the real RabbitMQ and MongoDB-wire server."""
