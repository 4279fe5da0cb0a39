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

-- Log lines of sandboxes (GET /sandboxes/{id}/logs, /v2/...): what the
-- sandbox's agent printed (its console), copied by the worker that runs
-- it, at most sandbox_log_max_lines per sandbox. Lifecycle lines are not
-- stored here: they are read from sandbox_events. Workers delete the lines
-- of sandboxes that ended more than sandbox_log_retention_s ago.
CREATE TABLE sandbox_logs (
	id bigserial PRIMARY KEY,
	sandbox_id text NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
	at timestamptz NOT NULL,
	level text NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
	message text NOT NULL CHECK (length(message) <= 4096)
);
CREATE INDEX sandbox_logs_sandbox_at ON sandbox_logs (sandbox_id, at, id);
