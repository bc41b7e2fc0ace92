"""MQTT: topic names, the durable outbox and the publisher that drains it."""
