/* outputs: Jupyter iopub messages mapped to the NDJSON lines that
 * @e2b/code-interpreter parses from POST /execute (one JSON object per
 * line, "type" = stdout | stderr | result | error | number_of_executions |
 * end_of_execution). Pure: no sockets. docs/code-interpreter.md. */
#ifndef WARREN_INTERPRETER_OUTPUTS_H
#define WARREN_INTERPRETER_OUTPUTS_H

#include <jansson.h>
#include <stdbool.h>

/* The line for one iopub message of the execution (stream, execute_result,
 * display_data, error); NULL for types that produce no line (status,
 * execute_input, clear_output...) or malformed content. New reference. */
json_t *outputs__from_iopub(const char *msg_type, const json_t *content);
/* A "result" line from a MIME bundle: text/plain -> text, text/html ->
 * html, image/png -> png (base64 as sent), ... ; other MIME types keep their
 * name as the key (the SDK files them under Result.extra). */
json_t *outputs__result(const json_t *data, bool is_main_result);
/* An "error" line: name, value, traceback (the frames joined by "\n"). */
json_t *outputs__error(const char *name, const char *value, const json_t *traceback);
json_t *outputs__execution_count(long long count);
json_t *outputs__end(void);
/* The line as bytes: compact JSON + "\n" (malloc'ed, NULL on failure).
 * Steals the reference to line. */
char *outputs__serialize(json_t *line);

#endif
