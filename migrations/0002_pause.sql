-- 0002: pause and resume (docs/schema.md, "Sandbox state machine").
-- Two transitional states, `pausing` and `resuming`, bracket the worker's
-- freeze and thaw so that a pause racing a kill (or a retried command)
-- always ends in one state; the lifecycle a create asked for (what a
-- timeout does: kill, or pause) is kept per sandbox.

ALTER TABLE sandboxes DROP CONSTRAINT sandboxes_state_check;
ALTER TABLE sandboxes ADD CONSTRAINT sandboxes_state_check CHECK (state IN
	('starting', 'running', 'pausing', 'paused', 'resuming', 'killing', 'killed',
	 'timed_out', 'failed'));

-- on_timeout: 'kill' (E2B's default) or 'pause' (autoPause: true).
-- auto_resume: E2B's autoResume.enabled: traffic through warren-proxy wakes
-- the paused sandbox (docs/api.md).
ALTER TABLE sandboxes
	ADD COLUMN on_timeout text NOT NULL DEFAULT 'kill' CHECK (on_timeout IN ('kill', 'pause')),
	ADD COLUMN auto_resume boolean NOT NULL DEFAULT false;

INSERT INTO sandbox_state_transitions VALUES
	('running', 'pausing'),
	('pausing', 'paused'), ('pausing', 'running'), ('pausing', 'killing'),
	('pausing', 'killed'), ('pausing', 'failed'),
	('paused', 'resuming'),
	('resuming', 'running'), ('resuming', 'paused'), ('resuming', 'killing'),
	('resuming', 'killed'), ('resuming', 'failed');
