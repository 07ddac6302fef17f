"""Services: the Kafka-facing stages (ingestion now; later offers, delivery, feedback)."""
