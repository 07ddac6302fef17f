"""Infrastructure: the local stack (Kafka broker now; later SMTP capture, Redis, PostgreSQL)."""
