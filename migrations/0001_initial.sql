-- 0001_initial: warren's source of truth (docs/schema.md describes every
-- table and the sandbox state machine). Applied by `warren migrate` inside
-- one transaction; never edit this file once applied, add 0002_... instead.

-- Plan table of docs/e2b-compatibility.md ("Limits"): the defaults a team gets from its
-- tier. Enterprise is "custom" there: it starts from these values and an
-- admin changes them per team (`warren admin team set-limit`).
CREATE TABLE tiers (
	name text PRIMARY KEY CHECK (name IN ('hobby', 'pro', 'enterprise')),
	lifecycle_requests integer NOT NULL CHECK (lifecycle_requests > 0),
	lifecycle_window_s integer NOT NULL CHECK (lifecycle_window_s > 0),
	sandbox_operations integer NOT NULL CHECK (sandbox_operations > 0),
	sandbox_operations_window_s integer NOT NULL CHECK (sandbox_operations_window_s > 0),
	concurrent_sandboxes integer NOT NULL CHECK (concurrent_sandboxes > 0),
	creation_rate_per_s integer NOT NULL CHECK (creation_rate_per_s > 0),
	egress_connections integer NOT NULL CHECK (egress_connections > 0),
	max_timeout_s integer NOT NULL CHECK (max_timeout_s > 0)
);

INSERT INTO tiers VALUES
	('hobby',      20000, 30, 40000, 60,   20, 1, 2500,  3600),
	('pro',        20000, 30, 40000, 60,  100, 5, 2500, 86400),
	('enterprise', 20000, 30, 40000, 60, 1100, 5, 2500, 86400);

CREATE TABLE teams (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	name text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'),
	tier text NOT NULL DEFAULT 'hobby' REFERENCES tiers(name)
		CHECK (tier IN ('hobby', 'pro', 'enterprise')),
	-- Per-team limits (defaults: the hobby row of tiers; storage copies the
	-- team's tier row on create and on a tier change).
	lifecycle_requests integer NOT NULL DEFAULT 20000 CHECK (lifecycle_requests > 0),
	lifecycle_window_s integer NOT NULL DEFAULT 30 CHECK (lifecycle_window_s > 0),
	sandbox_operations integer NOT NULL DEFAULT 40000 CHECK (sandbox_operations > 0),
	sandbox_operations_window_s integer NOT NULL DEFAULT 60
		CHECK (sandbox_operations_window_s > 0),
	concurrent_sandboxes integer NOT NULL DEFAULT 20 CHECK (concurrent_sandboxes > 0),
	creation_rate_per_s integer NOT NULL DEFAULT 1 CHECK (creation_rate_per_s > 0),
	egress_connections integer NOT NULL DEFAULT 2500 CHECK (egress_connections > 0),
	max_timeout_s integer NOT NULL DEFAULT 3600 CHECK (max_timeout_s > 0),
	created_at timestamptz NOT NULL DEFAULT now(),
	-- Pro goes up to 1,100 concurrent sandboxes with add-ons; above that
	-- is enterprise ("custom").
	CONSTRAINT teams_concurrency_within_tier
		CHECK (tier = 'enterprise' OR concurrent_sandboxes <= 1100)
);

-- API keys: only the SHA-256 of the key is stored (docs/e2b-compatibility.md, "REST API").
CREATE TABLE api_keys (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	team_id uuid NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
	key_hash text NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
	prefix text NOT NULL CHECK (length(prefix) BETWEEN 1 AND 16),
	created_at timestamptz NOT NULL DEFAULT now(),
	last_used_at timestamptz,
	revoked_at timestamptz
);
CREATE INDEX api_keys_team ON api_keys (team_id);

CREATE TABLE templates (
	id text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9._-]{0,127}$'),
	agent_version text NOT NULL CHECK (length(agent_version) BETWEEN 1 AND 64),
	image_path text NOT NULL CHECK (length(image_path) BETWEEN 1 AND 4096),
	content_hash text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- Worker hosts. The id appears in Kafka topic names
-- (warren.host.<id>.commands), hence Kafka's topic alphabet.
CREATE TABLE hosts (
	id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9._-]{1,64}$'),
	address text NOT NULL CHECK (length(address) BETWEEN 1 AND 255),
	runtime text NOT NULL CHECK (runtime IN ('vm', 'jail')),
	capacity integer NOT NULL CHECK (capacity >= 0),
	running integer NOT NULL DEFAULT 0 CHECK (running >= 0),
	state text NOT NULL DEFAULT 'ready' CHECK (state IN ('ready', 'draining', 'down')),
	registered_at timestamptz NOT NULL DEFAULT now(),
	heartbeat_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sandboxes (
	id text PRIMARY KEY CHECK (id ~ '^i[a-z0-9]{20}$'),
	team_id uuid NOT NULL REFERENCES teams(id),
	template_id text NOT NULL REFERENCES templates(id),
	-- request_id of the create command: the idempotency key (a redelivered
	-- command finds this row instead of creating a second sandbox).
	request_id uuid NOT NULL UNIQUE,
	state text NOT NULL DEFAULT 'starting' CHECK (state IN
		('starting', 'running', 'paused', 'killing', 'killed', 'timed_out', 'failed')),
	host_id text REFERENCES hosts(id),
	slot_index integer CHECK (slot_index >= 0),
	slot_address inet,
	created_at timestamptz NOT NULL DEFAULT now(),
	started_at timestamptz,
	end_at timestamptz NOT NULL,
	-- Egress policy as given to the API ({allowOut, denyOut,
	-- allowPublicTraffic, maskRequestHost, ...}); never secrets. Env vars
	-- and tokens are not stored: tokens are derived (docs/e2b-compatibility.md).
	network jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(network) = 'object'),
	metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
	secure boolean NOT NULL DEFAULT false,
	allow_public_traffic boolean NOT NULL DEFAULT true,
	mask_request_host text CHECK (length(mask_request_host) <= 255),
	failure_reason text CHECK (length(failure_reason) <= 1024),
	updated_at timestamptz NOT NULL DEFAULT now(),
	-- E2B: allowPublicTraffic=false requires secure=true.
	CONSTRAINT sandboxes_private_traffic_needs_secure CHECK (allow_public_traffic OR secure)
);
CREATE INDEX sandboxes_team_state ON sandboxes (team_id, state);
CREATE INDEX sandboxes_team_page ON sandboxes (team_id, created_at DESC, id DESC);
CREATE INDEX sandboxes_host_state ON sandboxes (host_id, state) WHERE host_id IS NOT NULL;
CREATE INDEX sandboxes_running_end ON sandboxes (host_id, end_at) WHERE state = 'running';
CREATE INDEX sandboxes_active_team ON sandboxes (team_id) WHERE state IN ('starting', 'running');
CREATE INDEX sandboxes_metadata ON sandboxes USING gin (metadata jsonb_path_ops);
CREATE INDEX sandboxes_created ON sandboxes (created_at);

-- The sandbox state machine (docs/schema.md): every allowed edge. A
-- trigger refuses any other change of sandboxes.state with check_violation.
CREATE TABLE sandbox_state_transitions (
	from_state text NOT NULL,
	to_state text NOT NULL,
	PRIMARY KEY (from_state, to_state)
);
INSERT INTO sandbox_state_transitions VALUES
	('starting', 'running'), ('starting', 'failed'), ('starting', 'killing'),
	('starting', 'killed'),
	('running', 'paused'), ('running', 'killing'), ('running', 'killed'),
	('running', 'timed_out'), ('running', 'failed'),
	('paused', 'starting'), ('paused', 'killing'), ('paused', 'killed'),
	('paused', 'failed'),
	('killing', 'killed'), ('killing', 'failed');

CREATE FUNCTION warren_sandbox_state_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.state IS DISTINCT FROM OLD.state AND NOT EXISTS (
		SELECT 1 FROM sandbox_state_transitions
		WHERE from_state = OLD.state AND to_state = NEW.state) THEN
		RAISE EXCEPTION 'sandbox %: state % -> % is not a transition', OLD.id, OLD.state,
			NEW.state USING ERRCODE = 'check_violation';
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER sandboxes_state_guard BEFORE UPDATE OF state ON sandboxes
	FOR EACH ROW EXECUTE FUNCTION warren_sandbox_state_guard();

-- Append-only history of every sandbox.
CREATE TABLE sandbox_events (
	id bigserial PRIMARY KEY,
	sandbox_id text NOT NULL REFERENCES sandboxes(id),
	type text NOT NULL CHECK (type ~ '^[a-z_]{1,64}$'),
	payload jsonb NOT NULL DEFAULT '{}',
	at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sandbox_events_sandbox ON sandbox_events (sandbox_id, id);

CREATE FUNCTION warren_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP
		USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER sandbox_events_append_only BEFORE UPDATE OR DELETE ON sandbox_events
	FOR EACH ROW EXECUTE FUNCTION warren_append_only();

-- API requests by idempotency key (the request_id of the Kafka contract).
CREATE TABLE requests (
	request_id uuid PRIMARY KEY,
	team_id uuid NOT NULL REFERENCES teams(id),
	type text NOT NULL CHECK (type ~ '^[a-z_]{1,64}$'),
	sandbox_id text CHECK (sandbox_id ~ '^i[a-z0-9]{20}$'),
	status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
	result jsonb,
	created_at timestamptz NOT NULL DEFAULT now(),
	finished_at timestamptz,
	CONSTRAINT requests_finished_iff_not_pending
		CHECK ((status = 'pending') = (finished_at IS NULL))
);
CREATE INDEX requests_team_created ON requests (team_id, created_at);

-- Rate-limit state, generic per key (e.g. "lifecycle:<team>",
-- "ops-ip:<addr>"): tat_ms is a GCRA theoretical arrival time (or any
-- single-number state a limiter chooses), changed by compare-and-set.
CREATE TABLE rate_limits (
	key text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
	tat_ms bigint NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- Rejections per team, limit and minute, for the admin view.
CREATE TABLE rate_limit_rejections (
	team_id uuid NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
	limit_name text NOT NULL CHECK (limit_name ~ '^[a-z_]{1,64}$'),
	minute timestamptz NOT NULL,
	count bigint NOT NULL DEFAULT 0 CHECK (count >= 0),
	PRIMARY KEY (team_id, limit_name, minute)
);

-- Admit a new sandbox only while the team's starting+running count is
-- below its concurrent_sandboxes limit (docs/e2b-compatibility.md, "Limits"). The team
-- row lock serializes admissions of one team across every API instance;
-- each statement below takes a fresh snapshot (READ COMMITTED, volatile
-- function), so the count sees every admission committed before the lock
-- was granted. Idempotent by request_id: a known request returns its row.
-- enforce_limit = false inserts without the check (internal callers).
CREATE FUNCTION warren_sandbox_admit(
	p_id text, p_team_id uuid, p_template_id text, p_request_id uuid, p_timeout_s integer,
	p_network jsonb, p_metadata jsonb, p_secure boolean, p_allow_public_traffic boolean,
	p_mask_request_host text, p_enforce_limit boolean,
	OUT admitted boolean, OUT existing boolean, OUT active_count integer,
	OUT concurrency_limit integer, OUT sandbox_id text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	found_id text;
	found_team uuid;
BEGIN
	SELECT concurrent_sandboxes INTO concurrency_limit FROM teams WHERE id = p_team_id
		FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'team % does not exist', p_team_id
			USING ERRCODE = 'foreign_key_violation';
	END IF;
	SELECT s.id, s.team_id INTO found_id, found_team FROM sandboxes s
		WHERE s.request_id = p_request_id;
	SELECT count(*) INTO active_count FROM sandboxes s
		WHERE s.team_id = p_team_id AND s.state IN ('starting', 'running');
	IF found_id IS NOT NULL THEN
		IF found_team <> p_team_id THEN
			RAISE EXCEPTION 'request % belongs to another team', p_request_id
				USING ERRCODE = 'unique_violation';
		END IF;
		admitted := true;
		existing := true;
		sandbox_id := found_id;
		RETURN;
	END IF;
	existing := false;
	IF p_enforce_limit AND active_count >= concurrency_limit THEN
		admitted := false;
		RETURN;
	END IF;
	INSERT INTO sandboxes (id, team_id, template_id, request_id, end_at, network, metadata,
			       secure, allow_public_traffic, mask_request_host)
		VALUES (p_id, p_team_id, p_template_id, p_request_id,
			now() + make_interval(secs => p_timeout_s), coalesce(p_network, '{}'),
			coalesce(p_metadata, '{}'), p_secure, p_allow_public_traffic,
			p_mask_request_host);
	INSERT INTO sandbox_events (sandbox_id, type, payload)
		VALUES (p_id, 'state_changed', jsonb_build_object('to', 'starting'));
	admitted := true;
	active_count := active_count + 1;
	sandbox_id := p_id;
END
$$;

-- Admin views (docs/admin.md).
CREATE VIEW admin_running_sandboxes AS
	SELECT t.id AS team_id, t.name AS team, t.tier, t.concurrent_sandboxes AS concurrency_limit,
	       count(s.id) FILTER (WHERE s.state = 'starting') AS starting,
	       count(s.id) FILTER (WHERE s.state = 'running') AS running,
	       count(s.id) FILTER (WHERE s.state = 'paused') AS paused
	FROM teams t LEFT JOIN sandboxes s
		ON s.team_id = t.id AND s.state IN ('starting', 'running', 'paused')
	GROUP BY t.id, t.name, t.tier, t.concurrent_sandboxes;

CREATE VIEW admin_creations_per_minute AS
	SELECT date_trunc('minute', s.created_at) AS minute, t.name AS team, count(*) AS creations
	FROM sandboxes s JOIN teams t ON t.id = s.team_id
	GROUP BY 1, 2;

CREATE VIEW admin_rate_limit_rejections AS
	SELECT r.minute, t.name AS team, r.limit_name, r.count AS rejections
	FROM rate_limit_rejections r JOIN teams t ON t.id = r.team_id;
