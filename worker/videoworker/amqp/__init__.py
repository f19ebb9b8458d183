"""AMQP: the only code that imports aio-pika. The broker connection, the request consumer, and a producer."""
