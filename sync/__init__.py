"""Sync over MQTT between the gates and central: the contract both ends share (topics,
codec, schemas, receipts, key lists), the gate's side, and `central/`."""
