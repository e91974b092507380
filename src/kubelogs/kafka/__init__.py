"""What the `kafka` sink and the `kafka` source share: the client settings (brokers, SASL,
TLS, extra librdkafka options) and the Kafka metrics.

The client is confluent-kafka (librdkafka), chosen by measurement (changelog.d/kafka.README.md):
it is imported only when a Kafka component is built, so an agent without one never loads it.
"""
