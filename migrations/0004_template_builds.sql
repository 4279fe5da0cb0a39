-- 0004_template_builds: custom templates built from the SDK's Template
-- builder (docs/templates.md). A team owns the templates it built; the
-- `templates` table of 0001 keeps listing what a worker can start (a
-- built template is upserted there when its build is ready).

-- One row per custom template: its id is also its name (alias), so
-- Sandbox.create('<alias>') and Sandbox.create('<templateID>') are the
-- same thing. A deleted template keeps its row (deleted_at) because
-- sandboxes rows keep referring to its `templates` row; the same team can
-- build the name again.
CREATE TABLE team_templates (
	id text PRIMARY KEY CHECK (id ~ '^[a-z0-9_][a-z0-9_-]{0,62}$'),
	team_id uuid NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
	cpu_count integer NOT NULL CHECK (cpu_count BETWEEN 1 AND 64),
	memory_mb integer NOT NULL CHECK (memory_mb BETWEEN 64 AND 1048576),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	deleted_at timestamptz
);
CREATE INDEX team_templates_team ON team_templates (team_id);

-- One row per build. status: waiting (created, no steps yet), building
-- (steps posted and queued, or in hand of a worker), ready, error.
-- attempts counts how often a worker claimed it: a worker that dies
-- mid-build leaves the Kafka command uncommitted; the next claim retries,
-- and past the limit the build ends in error (never stuck in building).
CREATE TABLE template_builds (
	id uuid PRIMARY KEY,
	template_id text NOT NULL REFERENCES team_templates(id) ON DELETE CASCADE,
	team_id uuid NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
	status text NOT NULL DEFAULT 'waiting'
		CHECK (status IN ('waiting', 'building', 'ready', 'error')),
	spec jsonb,
	cpu_count integer NOT NULL,
	memory_mb integer NOT NULL,
	host_id text,
	attempts integer NOT NULL DEFAULT 0,
	reason text,
	reason_step text,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	finished_at timestamptz
);
CREATE INDEX template_builds_template ON template_builds (template_id, created_at);

-- The build's log, in order: the SDK polls it with an offset (seq).
CREATE TABLE template_build_logs (
	build_id uuid NOT NULL REFERENCES template_builds(id) ON DELETE CASCADE,
	seq integer NOT NULL,
	at timestamptz NOT NULL DEFAULT clock_timestamp(),
	level text NOT NULL CHECK (level IN ('debug', 'info', 'warn', 'error')),
	step text,
	message text NOT NULL,
	PRIMARY KEY (build_id, seq)
);
