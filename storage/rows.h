/* storage rows: the column lists every statement selects, and the
 * decoders that turn one result row into a public struct. Keep each list
 * and its decoder in the same order. */
#ifndef WARREN_STORAGE_ROWS_H
#define WARREN_STORAGE_ROWS_H

#include "internal.h"

#define TEAM_COLUMNS                                                                               \
	"teams.id, teams.name, teams.tier, teams.lifecycle_requests, teams.lifecycle_window_s,"    \
	" teams.sandbox_operations, teams.sandbox_operations_window_s,"                            \
	" teams.concurrent_sandboxes, teams.creation_rate_per_s, teams.egress_connections,"        \
	" teams.max_timeout_s, " STORAGE_SQL_MS("teams.created_at")

#define API_KEY_COLUMNS                                                                            \
	"id, team_id, prefix, " STORAGE_SQL_MS("created_at") ", " STORAGE_SQL_MS(                  \
	    "last_used_at") ", " STORAGE_SQL_MS("revoked_at")

#define TEMPLATE_COLUMNS                                                                           \
	"id, agent_version, image_path, content_hash, " STORAGE_SQL_MS(                            \
	    "created_at") ", " STORAGE_SQL_MS("updated_at")

#define HOST_COLUMNS                                                                               \
	"id, address, runtime, capacity, running, state, " STORAGE_SQL_MS(                         \
	    "registered_at") ", " STORAGE_SQL_MS("heartbeat_at") ", protocol_version, "            \
								 "drain_requested"

/* The last column is created_at in microseconds, for page tokens. */
#define SANDBOX_COLUMNS                                                                            \
	"id, team_id, template_id, request_id, state, host_id, slot_index,"                        \
	" host(slot_address), " STORAGE_SQL_MS("created_at") ", " STORAGE_SQL_MS(                  \
	    "started_at") ", " STORAGE_SQL_MS("end_at") ", " STORAGE_SQL_MS("updated_at") ", "     \
											  "networ" \
											  "k, "    \
											  "metada" \
											  "ta, "   \
											  "secure" \
											  ", "     \
											  "allow_" \
											  "public" \
											  "_traff" \
											  "ic,"    \
											  " mask_" \
											  "reques" \
											  "t_"     \
											  "host, " \
											  "failur" \
											  "e_"     \
											  "reason" \
											  ","      \
											  " ("     \
											  "extrac" \
											  "t("     \
											  "epoch " \
											  "from "  \
											  "create" \
											  "d_at) " \
											  "* "     \
											  "100000" \
											  "0)::"   \
											  "int8, " \
											  "on_"    \
											  "timeou" \
											  "t, "    \
											  "auto_"  \
											  "resume"
#define SANDBOX_COLUMN_CREATED_US 18

#define REQUEST_COLUMNS                                                                            \
	"request_id, team_id, type, sandbox_id, status, result, " STORAGE_SQL_MS(                  \
	    "created_at") ", " STORAGE_SQL_MS("finished_at")

void storage__team_from_row(const PGresult *result, int row, struct storage_team *out);
void storage__api_key_from_row(const PGresult *result, int row, struct storage_api_key *out);
void storage__template_from_row(const PGresult *result, int row, struct storage_template *out);
void storage__host_from_row(const PGresult *result, int row, struct storage_host *out);
/* out's JSON members are new references (storage__sandbox_clear). */
void storage__sandbox_from_row(const PGresult *result, int row, struct storage_sandbox *out);
void storage__request_from_row(const PGresult *result, int row, struct storage_request *out);

#endif
