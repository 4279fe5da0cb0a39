/* storage statements: every SQL statement warren runs outside migrations,
 * prepared once per pooled connection. Tables: migrations/0001_initial.sql
 * and docs/schema.md. Column lists are shared with the row decoders. */
#include "internal.h"
#include "rows.h"

#define MS STORAGE_SQL_MS

const struct storage_statement storage_statements[STMT_COUNT] = {
    /* ---- teams ---- */
    [STMT_TEAM_CREATE] =
	{"team_create",
	 "INSERT INTO teams (name, tier, lifecycle_requests, lifecycle_window_s,"
	 " sandbox_operations, sandbox_operations_window_s, concurrent_sandboxes,"
	 " creation_rate_per_s, egress_connections, max_timeout_s)"
	 " SELECT $1, t.name, t.lifecycle_requests, t.lifecycle_window_s,"
	 " t.sandbox_operations, t.sandbox_operations_window_s, t.concurrent_sandboxes,"
	 " t.creation_rate_per_s, t.egress_connections, t.max_timeout_s"
	 " FROM tiers t WHERE t.name = $2 RETURNING " TEAM_COLUMNS,
	 2, false},
    [STMT_PING] = {"ping", "SELECT 1", 0, true},

    /* ---- sandbox metrics (migrations/0003_sandbox_metrics_and_logs.sql) ---- */
    [STMT_METRICS_INSERT] =
	{"metrics_insert",
	 "INSERT INTO sandbox_metrics (sandbox_id, at, cpu_count, cpu_used_pct, mem_used,"
	 " mem_total, mem_cache, disk_used, disk_total) VALUES ($1,"
	 " 'epoch'::timestamptz + $2::int8 * interval '1 millisecond', $3::int, $4::real,"
	 " $5::int8, $6::int8, $7::int8, $8::int8, $9::int8)"
	 " ON CONFLICT (sandbox_id, at) DO NOTHING",
	 9, true},
    [STMT_METRICS_LIST] =
	{"metrics_list",
	 "SELECT m.sandbox_id, " MS(
	     "m.at") ", m.cpu_count, m.cpu_used_pct, m.mem_used,"
		     " m.mem_total, m.mem_cache, m.disk_used, m.disk_total"
		     " FROM sandbox_metrics m JOIN sandboxes s ON s.id = m.sandbox_id"
		     " WHERE m.sandbox_id = $1 AND s.team_id = $2::uuid"
		     " AND m.at >= 'epoch'::timestamptz + $3::int8 * interval '1 millisecond'"
		     " AND m.at <= 'epoch'::timestamptz + $4::int8 * interval '1 millisecond'"
		     " ORDER BY m.at LIMIT $5::int",
	 5, true},
    [STMT_METRICS_LATEST] =
	{"metrics_latest",
	 "SELECT DISTINCT ON (m.sandbox_id) m.sandbox_id, " MS(
	     "m.at") ", m.cpu_count,"
		     " m.cpu_used_pct, m.mem_used, m.mem_total, m.mem_cache, m.disk_used, "
		     "m.disk_total"
		     " FROM sandbox_metrics m JOIN sandboxes s ON s.id = m.sandbox_id"
		     " WHERE s.team_id = $1::uuid AND m.sandbox_id = ANY ($2::text[])"
		     " AND s.state IN ('starting', 'running', 'paused', 'killing')"
		     " ORDER BY m.sandbox_id, m.at DESC",
	 2, true},
    [STMT_SANDBOX_COUNT_BY_STATE] = {"sandbox_count_by_state",
				     "SELECT state, count(*) FROM sandboxes WHERE state IN"
				     " ('starting', 'running', 'paused', 'killing') GROUP BY state",
				     0, true},
    /* ---- sandbox logs: stored console lines + lifecycle lines made from
     * sandbox_events, merged; $3 cursor (ms), $4 forward, $5 limit, $6
     * minimum level, $7 substring (NULL: any) ---- */
    [STMT_LOGS_APPEND] =
	{"logs_append",
	 "INSERT INTO sandbox_logs (sandbox_id, at, level, message)"
	 " SELECT $1, 'epoch'::timestamptz + (e->>'at')::int8 * interval '1 millisecond',"
	 " e->>'level', e->>'message' FROM jsonb_array_elements($2::jsonb) e",
	 2, false},
    [STMT_LOGS_LIST] =
	{"logs_list",
	 "WITH s AS (SELECT id FROM sandboxes WHERE id = $1 AND team_id = $2::uuid),"
	 " lines AS ("
	 "  SELECT l.at, l.id, l.level, 'console' AS source, l.message FROM sandbox_logs l, s"
	 "   WHERE l.sandbox_id = s.id"
	 "  UNION ALL"
	 "  SELECT e.at, e.id, CASE WHEN e.payload->>'to' = 'failed' THEN 'error' ELSE 'info' "
	 "END,"
	 "   'lifecycle', 'sandbox ' || coalesce((e.payload->>'from') || ' -> ', '')"
	 "   || coalesce(e.payload->>'to', e.type) || coalesce(': ' || (e.payload->>'reason'), "
	 "'')"
	 "   FROM sandbox_events e, s WHERE e.sandbox_id = s.id AND e.type = 'state_changed')"
	 " SELECT " MS(
	     "at") ", level, source, message FROM lines"
		   " WHERE (CASE WHEN $4::bool THEN at >= 'epoch'::timestamptz + $3::int8 * "
		   "interval '1 millisecond'"
		   "  ELSE at <= 'epoch'::timestamptz + $3::int8 * interval '1 millisecond' "
		   "END)"
		   " AND array_position(ARRAY['debug','info','warn','error'], level)"
		   "  >= array_position(ARRAY['debug','info','warn','error'], $6::text)"
		   " AND ($7::text IS NULL OR strpos(message, $7::text) > 0)"
		   " ORDER BY CASE WHEN $4::bool THEN at END, CASE WHEN $4::bool THEN source "
		   "END,"
		   "  CASE WHEN $4::bool THEN id END, at DESC, source DESC, id DESC LIMIT "
		   "$5::int",
	 7, true},
    [STMT_LOGS_PRUNE] = {"logs_prune",
			 "DELETE FROM sandbox_logs l USING sandboxes s WHERE l.sandbox_id = s.id"
			 " AND s.state IN ('killed', 'timed_out', 'failed')"
			 " AND s.updated_at < now() - $1::int8 * interval '1 second'",
			 1, true},
    [STMT_SANDBOX_SET_NETWORK] =
	{"sandbox_set_network",
	 "UPDATE sandboxes SET network = network || $3::jsonb, updated_at = now()"
	 " WHERE id = $1 AND team_id = $2::uuid AND state IN ('starting', 'running', 'paused')"
	 " RETURNING id",
	 3, true},
    [STMT_METRICS_PRUNE] =
	{"metrics_prune",
	 "DELETE FROM sandbox_metrics WHERE at < now() - $1::int8 * interval '1 second'", 1, true},
    [STMT_TEAM_GET] = {"team_get", "SELECT " TEAM_COLUMNS " FROM teams WHERE teams.id = $1", 1,
		       true},
    [STMT_TEAM_GET_BY_NAME] = {"team_get_by_name",
			       "SELECT " TEAM_COLUMNS " FROM teams WHERE teams.name = $1", 1, true},
    [STMT_TEAM_LIST] = {"team_list", "SELECT " TEAM_COLUMNS " FROM teams ORDER BY teams.name", 0,
			true},
    [STMT_TEAM_SET_TIER] =
	{"team_set_tier",
	 "UPDATE teams SET tier = t.name, lifecycle_requests = t.lifecycle_requests,"
	 " lifecycle_window_s = t.lifecycle_window_s,"
	 " sandbox_operations = t.sandbox_operations,"
	 " sandbox_operations_window_s = t.sandbox_operations_window_s,"
	 " concurrent_sandboxes = t.concurrent_sandboxes,"
	 " creation_rate_per_s = t.creation_rate_per_s,"
	 " egress_connections = t.egress_connections, max_timeout_s = t.max_timeout_s"
	 " FROM tiers t WHERE teams.id = $1 AND t.name = $2 RETURNING " TEAM_COLUMNS,
	 2, true},
#define SET_LIMIT(column)                                                                          \
	" " column " = CASE WHEN $2 = '" column "' THEN $3::int ELSE " column " END"
    [STMT_TEAM_SET_LIMIT] =
	{"team_set_limit",
	 "UPDATE teams SET" SET_LIMIT("lifecycle_requests") "," SET_LIMIT(
	     "lifecycle_window_"
	     "s") "," SET_LIMIT("sandbox_operations") "," SET_LIMIT("sandbox_operations_window_"
								    "s") "," SET_LIMIT("concurre"
										       "nt_"
										       "sandboxe"
										       "s") "," SET_LIMIT("creation_rate_per_s") "," SET_LIMIT("egr"
																	       "ess"
																	       "_co"
																	       "nne"
																	       "cti"
																	       "on"
																	       "s") "," SET_LIMIT("max_timeout_s") " WHERE teams.id = $1 RETURNING " TEAM_COLUMNS,
	 3, true},
#undef SET_LIMIT

    /* ---- API keys ---- */
    [STMT_API_KEY_CREATE] = {"api_key_create",
			     "INSERT INTO api_keys (team_id, key_hash, prefix) VALUES ($1, $2, $3)"
			     " RETURNING " API_KEY_COLUMNS,
			     3, false},
    /* last_used_at is written at most once a minute per key. */
    [STMT_API_KEY_AUTHENTICATE] = {"api_key_authenticate",
				   "WITH k AS (SELECT id, team_id, last_used_at FROM api_keys"
				   "  WHERE key_hash = $1 AND revoked_at IS NULL),"
				   " touch AS (UPDATE api_keys SET last_used_at = now() FROM k"
				   "  WHERE api_keys.id = k.id AND (k.last_used_at IS NULL"
				   "  OR k.last_used_at < now() - interval '60 seconds'))"
				   " SELECT " TEAM_COLUMNS
				   " FROM teams JOIN k ON teams.id = k.team_id",
				   1, true},
    [STMT_API_KEY_REVOKE] =
	{"api_key_revoke",
	 "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"
	 " RETURNING id",
	 1, true},
    [STMT_API_KEY_REVOKE_BY_HASH] =
	{"api_key_revoke_by_hash",
	 "UPDATE api_keys SET revoked_at = now() WHERE key_hash = $1 AND revoked_at IS NULL"
	 " RETURNING id",
	 1, true},
    [STMT_API_KEY_LIST] = {"api_key_list",
			   "SELECT " API_KEY_COLUMNS " FROM api_keys WHERE team_id = $1"
			   " ORDER BY created_at DESC, id",
			   1, true},

    /* ---- templates ---- */
    [STMT_TEMPLATE_UPSERT] =
	{"template_upsert",
	 "INSERT INTO templates (id, agent_version, image_path, content_hash)"
	 " VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET"
	 " agent_version = EXCLUDED.agent_version, image_path = EXCLUDED.image_path,"
	 " content_hash = EXCLUDED.content_hash, updated_at = now()",
	 4, true},
    [STMT_TEMPLATE_GET] = {"template_get",
			   "SELECT " TEMPLATE_COLUMNS " FROM templates WHERE id = $1", 1, true},
    /* The template when team $1 may use it: not another team's own build,
     * nor a deleted one (storage__team_template_visible, in one trip). */
    [STMT_TEMPLATE_GET_FOR_TEAM] =
	{"template_get_for_team",
	 "SELECT " TEMPLATE_COLUMNS " FROM templates WHERE id = $2 AND NOT EXISTS ("
	 "SELECT 1 FROM team_templates WHERE id = $2"
	 " AND (team_id::text IS DISTINCT FROM $1 OR deleted_at IS NOT NULL))",
	 2, true},
    [STMT_TEMPLATE_LIST] = {"template_list",
			    "SELECT " TEMPLATE_COLUMNS " FROM templates ORDER BY id", 0, true},

    /* ---- hosts ---- */
    [STMT_HOST_HEARTBEAT] =
	{"host_heartbeat",
	 "INSERT INTO hosts (id, address, runtime, capacity, running, state, protocol_version)"
	 " VALUES ($1, $2, $3, $4::int, $5::int, $6, $7::int) ON CONFLICT (id) DO UPDATE SET"
	 " address = EXCLUDED.address, runtime = EXCLUDED.runtime,"
	 " capacity = EXCLUDED.capacity, running = EXCLUDED.running,"
	 " state = EXCLUDED.state, protocol_version = EXCLUDED.protocol_version,"
	 " heartbeat_at = now()",
	 7, true},
    [STMT_HOST_LIST] = {"host_list", "SELECT " HOST_COLUMNS " FROM hosts ORDER BY id", 0, true},
    /* not retried: a second run would find nothing, and say nothing */
    [STMT_HOST_DECLARE_LOST] =
	{"host_declare_lost",
	 "UPDATE hosts SET state = 'down' WHERE state <> 'down'"
	 " AND heartbeat_at < now() - $1::int8 * interval '1 second' RETURNING id",
	 1, false},
    /* the heartbeat, answering the state the row had before it */
    [STMT_HOST_HEARTBEAT_WAS] =
	{"host_heartbeat_was",
	 "WITH before AS (SELECT state FROM hosts WHERE id = $1)"
	 " INSERT INTO hosts (id, address, runtime, capacity, running, state, protocol_version)"
	 " VALUES ($1, $2, $3, $4::int, $5::int, $6, $7::int) ON CONFLICT (id) DO UPDATE SET"
	 " address = EXCLUDED.address, runtime = EXCLUDED.runtime,"
	 " capacity = EXCLUDED.capacity, running = EXCLUDED.running,"
	 " state = CASE WHEN hosts.drain_requested AND EXCLUDED.state = 'ready'"
	 " THEN 'draining' ELSE EXCLUDED.state END,"
	 " protocol_version = EXCLUDED.protocol_version, heartbeat_at = now()"
	 " RETURNING coalesce((SELECT state FROM before), ''), drain_requested",
	 7, true},
    /* an operator's drain (0009): the state follows at once, the
     * heartbeat keeps it */
    [STMT_HOST_SET_DRAIN] = {"host_set_drain",
			     "UPDATE hosts SET drain_requested = $2::bool, state = CASE"
			     " WHEN $2::bool AND state = 'ready' THEN 'draining'"
			     " WHEN NOT $2::bool AND state = 'draining' THEN 'ready' ELSE state END"
			     " WHERE id = $1 RETURNING state",
			     2, true},

    /* ---- sandboxes ---- */
    /* Admission and idempotency live in warren_sandbox_admit (0001). */
    [STMT_SANDBOX_ADMIT] =
	{"sandbox_admit",
	 "SELECT admitted, existing, active_count, concurrency_limit, sandbox_id"
	 " FROM warren_sandbox_admit($1, $2::uuid, $3, $4::uuid, $5::int, $6::jsonb,"
	 " $7::jsonb, $8::bool, $9::bool, $10, $11::bool)",
	 11, true},
    [STMT_SANDBOX_GET] = {"sandbox_get",
			  "SELECT " SANDBOX_COLUMNS
			  " FROM sandboxes WHERE id = $1 AND team_id = $2::uuid",
			  2, true},
    [STMT_SANDBOX_GET_INTERNAL] = {"sandbox_get_internal",
				   "SELECT " SANDBOX_COLUMNS " FROM sandboxes WHERE id = $1", 1,
				   true},
    /* Compare-and-set on state; the trigger sandboxes_state_guard refuses
     * edges outside the state machine; the event is appended atomically. */
    [STMT_SANDBOX_TRANSITION] =
	{"sandbox_transition",
	 "WITH changed AS (UPDATE sandboxes SET state = $3::text,"
	 "  host_id = coalesce($4, host_id),"
	 "  slot_index = coalesce($5::int, slot_index),"
	 "  slot_address = coalesce($6::inet, slot_address),"
	 "  failure_reason = coalesce($7, failure_reason),"
	 "  started_at = CASE WHEN $3::text = 'running' AND started_at IS NULL"
	 "   THEN now() ELSE started_at END,"
	 "  updated_at = now()"
	 "  WHERE id = $1 AND state = $2::text AND ($8::uuid IS NULL OR team_id = $8::uuid)"
	 "  RETURNING *),"
	 " event AS (INSERT INTO sandbox_events (sandbox_id, type, payload)"
	 "  SELECT id, 'state_changed', jsonb_build_object('from', $2::text, 'to', $3::text)"
	 "   || CASE WHEN $7::text IS NULL THEN '{}'::jsonb"
	 "      ELSE jsonb_build_object('reason', $7::text) END FROM changed)"
	 " SELECT " SANDBOX_COLUMNS " FROM changed",
	 8, true},
    [STMT_SANDBOX_SET_TIMEOUT] =
	{"sandbox_set_timeout",
	 "UPDATE sandboxes SET end_at = now() + make_interval(secs => $3::int),"
	 " updated_at = now() WHERE id = $1 AND team_id = $2::uuid"
	 " AND state IN ('starting', 'running', 'paused', 'pausing', 'resuming')"
	 " RETURNING " MS("end_at"),
	 3, true},
    [STMT_SANDBOX_SET_LIFECYCLE] =
	{"sandbox_set_lifecycle",
	 "UPDATE sandboxes SET on_timeout = $2, auto_resume = $3::bool, updated_at = now()"
	 " WHERE id = $1 RETURNING id",
	 3, true},
    /* Keyset pagination over (created_at DESC, id DESC); $4 is the last
     * row's created_at in microseconds since the epoch (exact). */
    [STMT_SANDBOX_LIST] =
	{"sandbox_list",
	 "SELECT " SANDBOX_COLUMNS " FROM sandboxes WHERE team_id = $1::uuid"
	 " AND state = ANY ($2::text[]) AND metadata @> $3::jsonb"
	 " AND ($4::int8 IS NULL OR (NOT $9::bool AND (created_at, id) <"
	 "  ('epoch'::timestamptz + $4::int8 * interval '1 microsecond', $5::text))"
	 "  OR ($9::bool AND (created_at, id) >"
	 "  ('epoch'::timestamptz + $4::int8 * interval '1 microsecond', $5::text)))"
	 " AND ($7::text IS NULL OR template_id = $7::text)"
	 " AND ($8::int8 IS NULL OR created_at >= 'epoch'::timestamptz + $8::int8 * interval "
	 "'1 millisecond')"
	 " AND ($10::int8 IS NULL OR created_at <= 'epoch'::timestamptz + $10::int8 * interval "
	 "'1 millisecond')"
	 " ORDER BY CASE WHEN $9::bool THEN created_at END, CASE WHEN $9::bool THEN id END,"
	 "  created_at DESC, id DESC LIMIT $6::int",
	 10, true},
    [STMT_SANDBOX_COUNT_ACTIVE] = {"sandbox_count_active",
				   "SELECT count(*) FROM sandboxes WHERE team_id = $1::uuid"
				   " AND state IN ('starting', 'running')",
				   1, true},
    [STMT_SANDBOX_LIST_BY_HOST] =
	{"sandbox_list_by_host",
	 "SELECT " SANDBOX_COLUMNS " FROM sandboxes WHERE host_id = $1"
	 " AND state = ANY ($2::text[]) ORDER BY created_at, id LIMIT 100000",
	 2, true},
    [STMT_SANDBOX_LIST_EXPIRED] =
	{"sandbox_list_expired",
	 "SELECT " SANDBOX_COLUMNS " FROM sandboxes WHERE host_id = $1"
	 " AND state = 'running' AND end_at <= now() ORDER BY end_at LIMIT $2::int",
	 2, true},

    /* ---- events ---- */
    [STMT_EVENT_APPEND] = {"event_append",
			   "INSERT INTO sandbox_events (sandbox_id, type, payload)"
			   " VALUES ($1, $2, coalesce($3::jsonb, '{}')) RETURNING id",
			   3, false},
    [STMT_EVENT_LIST] =
	{"event_list",
	 "SELECT id, type, payload, " MS(
	     "at") " FROM sandbox_events"
		   " WHERE sandbox_id = $1 AND id > $2::int8 ORDER BY id LIMIT $3::int",
	 3, true},

    /* ---- requests ---- */
    [STMT_REQUEST_BEGIN] =
	{"request_begin",
	 "WITH ins AS (INSERT INTO requests (request_id, team_id, type, sandbox_id)"
	 "  VALUES ($1::uuid, $2::uuid, $3, $4) ON CONFLICT (request_id) DO NOTHING"
	 "  RETURNING " REQUEST_COLUMNS ")"
	 " SELECT *, true FROM ins UNION ALL"
	 " SELECT " REQUEST_COLUMNS ", false FROM requests WHERE request_id = $1::uuid"
	 "  AND NOT EXISTS (SELECT 1 FROM ins)",
	 4, true},
    [STMT_REQUEST_FINISH] =
	{"request_finish",
	 "UPDATE requests SET status = $2, result = $3::jsonb, finished_at = now()"
	 " WHERE request_id = $1::uuid AND status = 'pending' RETURNING request_id",
	 3, true},
    /* The same, and the outcome's event ($4) to the listeners of
     * warren_results at commit (storage__request_finish_notify). */
    [STMT_REQUEST_FINISH_NOTIFY] =
	{"request_finish_notify",
	 "WITH done AS (UPDATE requests SET status = $2, result = $3::jsonb, finished_at = now()"
	 " WHERE request_id = $1::uuid AND status = 'pending' RETURNING request_id)"
	 " SELECT request_id, pg_notify('" STORAGE_RESULTS_CHANNEL "', $4) FROM done",
	 4, true},
    [STMT_REQUEST_GET] = {"request_get",
			  "SELECT " REQUEST_COLUMNS " FROM requests WHERE request_id = $1::uuid", 1,
			  true},

    /* ---- rate limits ---- */
    [STMT_RATE_LIMIT_LOAD] = {"rate_limit_load", "SELECT tat_ms FROM rate_limits WHERE key = $1", 1,
			      true},
    [STMT_RATE_LIMIT_INSERT] = {"rate_limit_insert",
				"INSERT INTO rate_limits (key, tat_ms) VALUES ($1, $2::int8)"
				" ON CONFLICT (key) DO NOTHING RETURNING key",
				2, true},
    [STMT_RATE_LIMIT_UPDATE] = {"rate_limit_update",
				"UPDATE rate_limits SET tat_ms = $3::int8, updated_at = now()"
				" WHERE key = $1 AND tat_ms = $2::int8 RETURNING key",
				3, true},
    [STMT_RATE_LIMIT_REJECTION] =
	{"rate_limit_rejection",
	 "INSERT INTO rate_limit_rejections (team_id, limit_name, minute, count)"
	 " VALUES ($1::uuid, $2, date_trunc('minute', now()), 1)"
	 " ON CONFLICT (team_id, limit_name, minute)"
	 " DO UPDATE SET count = rate_limit_rejections.count + 1",
	 2, false},

    /* ---- admin views ---- */
    [STMT_ADMIN_RUNNING] = {"admin_running",
			    "SELECT team, tier, concurrency_limit, starting, running, paused"
			    " FROM admin_running_sandboxes ORDER BY team",
			    0, true},
    [STMT_ADMIN_REJECTIONS] = {"admin_rejections",
			       "SELECT " MS("minute") ", team, limit_name, rejections"
						      " FROM admin_rate_limit_rejections"
						      " WHERE minute >= date_trunc('minute', "
						      "now()) - make_interval(mins => $1::int)"
						      " ORDER BY minute DESC, team, limit_name",
			       1, true},
};
