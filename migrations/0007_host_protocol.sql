-- 0007_host_protocol: the Kafka event protocol version each worker host
-- speaks (the highest `version` of docs/events it understands; it
-- understands every version from 1 up to it), written by its heartbeat.
-- The API sends a create only where its own version is understood
-- (docs/operations.md, "Rolling upgrades"). Online: a constant default
-- makes this a catalog-only change (a brief exclusive lock on the small
-- hosts table); workers built before it leave the column at 1, which is
-- what they speak.
ALTER TABLE hosts ADD COLUMN protocol_version integer NOT NULL DEFAULT 1
	CHECK (protocol_version >= 1);
