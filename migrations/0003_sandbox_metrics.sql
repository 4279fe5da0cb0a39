-- Resource samples of running sandboxes, taken by the worker that runs
-- them every few seconds (the sandbox's cgroup and its writable layer),
-- served by GET /sandboxes/{id}/metrics and GET /sandboxes/metrics
-- (docs/api.md). A bounded window: workers delete samples older than
-- their setting metrics_retention_s.
CREATE TABLE sandbox_metrics (
	sandbox_id text NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
	at timestamptz NOT NULL,
	cpu_count integer NOT NULL CHECK (cpu_count >= 0),
	cpu_used_pct real NOT NULL CHECK (cpu_used_pct >= 0),
	mem_used bigint NOT NULL CHECK (mem_used >= 0),
	mem_total bigint NOT NULL CHECK (mem_total >= 0),
	mem_cache bigint NOT NULL CHECK (mem_cache >= 0),
	disk_used bigint NOT NULL CHECK (disk_used >= 0),
	disk_total bigint NOT NULL CHECK (disk_total >= 0),
	PRIMARY KEY (sandbox_id, at)
);
CREATE INDEX sandbox_metrics_at ON sandbox_metrics (at);
