"""Avro schemas of contactstream (one .avsc per record)."""
