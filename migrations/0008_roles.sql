-- 0008_roles: one group role per component with only the grants it needs
-- (docs/transport-security.md, "Roles"). The group roles cannot log in;
-- the deployment creates one login role per component with a password and
-- makes it a member (warren_api IN ROLE warren_role_api, ...). Roles are
-- cluster-wide, so they are created only when missing (concurrent runs on
-- other databases of the same server may race: a duplicate is no error).
-- The admin role that runs `warren migrate` owns every table; it needs
-- CREATEROLE when the group roles do not exist yet. A later migration that
-- adds a table grants it here too.
DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['warren_role_api', 'warren_role_worker', 'warren_role_proxy'] LOOP
		IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) THEN
			BEGIN
				EXECUTE format('CREATE ROLE %I NOLOGIN', r);
			EXCEPTION WHEN duplicate_object OR unique_violation THEN
				NULL;
			WHEN insufficient_privilege THEN
				RAISE EXCEPTION 'role % is missing and % may not create roles', r, current_user
					USING HINT = 'create the warren_role_* roles as a superuser, or grant '
						'CREATEROLE to the role that runs warren migrate';
			END;
		END IF;
	END LOOP;
END
$$;

-- Admission locks the team row (FOR UPDATE needs UPDATE on teams, which
-- would let a component change its own limits): the function runs with its
-- owner's rights instead, on a fixed search_path.
ALTER FUNCTION warren_sandbox_admit(text, uuid, text, uuid, integer, jsonb, jsonb, boolean,
	boolean, text, boolean) SECURITY DEFINER SET search_path = public, pg_temp;
REVOKE EXECUTE ON FUNCTION warren_sandbox_admit(text, uuid, text, uuid, integer, jsonb, jsonb,
	boolean, boolean, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION warren_sandbox_admit(text, uuid, text, uuid, integer, jsonb, jsonb,
	boolean, boolean, text, boolean) TO warren_role_api, warren_role_worker;

-- warren-api: authenticates keys (and stamps last_used_at), admits and
-- tracks sandboxes, requests, templates, builds, volumes and snapshots of
-- the calling team, and the shared rate limits. Never: tiers or team
-- limits, hosts, the state machine, schema_migrations.
GRANT SELECT ON tiers, teams, hosts, sandbox_state_transitions, sandbox_metrics, sandbox_logs
	TO warren_role_api;
-- deleting a team's template removes its templates row when nothing else uses it
GRANT SELECT, DELETE ON templates TO warren_role_api;
GRANT SELECT, UPDATE (last_used_at) ON api_keys TO warren_role_api;
GRANT SELECT, INSERT ON sandbox_events TO warren_role_api;
GRANT SELECT, INSERT, UPDATE ON sandboxes, rate_limits, rate_limit_rejections TO warren_role_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON requests, team_templates, template_builds,
	template_build_logs, volumes, snapshots TO warren_role_api;

-- warren-worker: runs sandboxes and builds on its host. Never: api_keys,
-- rate limits, team limits.
GRANT SELECT ON tiers, teams, sandbox_state_transitions TO warren_role_worker;
GRANT SELECT, INSERT ON sandbox_events TO warren_role_worker;
GRANT SELECT, INSERT, UPDATE ON hosts, sandboxes, requests, template_builds, volumes,
	snapshots, team_templates TO warren_role_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON templates, sandbox_metrics, sandbox_logs,
	template_build_logs TO warren_role_worker;

-- warren-proxy: finds a sandbox's route and keeps the shared per-IP limit.
GRANT SELECT ON sandboxes, hosts TO warren_role_proxy;
GRANT SELECT, INSERT, UPDATE ON rate_limits, rate_limit_rejections TO warren_role_proxy;

GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO warren_role_api, warren_role_worker;
