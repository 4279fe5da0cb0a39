-- 0009_host_drain: an operator's drain of a worker host (`warren admin
-- host drain ID`, docs/deploy.md "Drain a worker host"). While set, the
-- host's heartbeat keeps its state `draining`: the API and the other
-- workers send it no create, its worker leaves the shared create topic's
-- group, and its sandboxes run on until they end. It survives a worker
-- restart; `warren admin host undrain ID` clears it. Online: a constant
-- default makes this a catalog-only change.
ALTER TABLE hosts ADD COLUMN drain_requested boolean NOT NULL DEFAULT false;
