"""The shovel: the sidecar that places staged data into a stack's volume and heartbeats to RabbitMQ."""
