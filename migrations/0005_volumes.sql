-- 0005_volumes: persistent volumes of a team (docs/volumes.md). One ext4
-- image file per volume on the host that holds it; a sandbox mounts it
-- read-write at mount_path. One writer at a time: sandbox_id names the
-- sandbox that mounts it, and the volume is in use while that sandbox is
-- in a live state (so a crashed worker or a lost result never leaves a
-- volume held: the sandbox's final state releases it).
CREATE TABLE volumes (
	id text PRIMARY KEY CHECK (id ~ '^vol_[a-z0-9]{20}$'),
	team_id uuid NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
	name text NOT NULL CHECK (name ~ '^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$'),
	size_bytes bigint NOT NULL CHECK (size_bytes > 0),
	-- the sandbox that mounted it last, and where; in use while that
	-- sandbox is starting, running, pausing, paused, resuming or killing
	sandbox_id text,
	mount_path text CHECK (length(mount_path) <= 1024),
	-- the host whose volumes_dir holds the image (set at the first mount)
	host_id text,
	created_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (team_id, name)
);
CREATE INDEX volumes_sandbox ON volumes (sandbox_id) WHERE sandbox_id IS NOT NULL;
