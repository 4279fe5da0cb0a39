-- 0006_snapshots: a sandbox's files captured as a template of its team
-- (docs/api.md, createSnapshot). The snapshot is a team_templates row (so
-- POST /sandboxes with its id starts from it and DELETE /templates/{id}
-- removes it) plus this row: where it came from and the bytes it holds on
-- its host, which count against the team's snapshot_quota_bytes.
CREATE TABLE snapshots (
	id text PRIMARY KEY REFERENCES team_templates(id) ON DELETE CASCADE,
	team_id uuid NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
	sandbox_id text NOT NULL,
	name text CHECK (name IS NULL OR length(name) <= 128),
	host_id text,
	bytes bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX snapshots_team ON snapshots (team_id);
