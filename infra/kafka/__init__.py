"""A real Apache Kafka broker (KRaft, one combined node) run from Maven Central jars."""
