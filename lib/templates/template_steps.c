/* template_steps: parsing and validation of a template build plan
 * (warren/template_steps.h, docs/templates.md). */
#include "warren/template_steps.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "warren/templates.h"

static const char *const step_names[] = {"RUN", "COPY", "ENV", "WORKDIR", "USER"};

const char *template_step__name(enum template_step_kind kind)
{
	return kind <= TEMPLATE_STEP_USER ? step_names[kind] : "?";
}

bool template_step__user_valid(const char *user)
{
	size_t len = user ? strlen(user) : 0;

	if (len == 0 || len > 32 || user[0] == '-')
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = user[i];

		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return false;
	}
	return true;
}

bool template_step__env_name_valid(const char *name)
{
	size_t len = name ? strlen(name) : 0;

	if (len == 0 || len > 128 || (name[0] >= '0' && name[0] <= '9'))
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return false;
	}
	return true;
}

/* True when tag is version, or version followed by '.' or '-' and more
 * ("12", "12.5", "12-slim"). */
static bool template_plan__tag_is(const char *tag, const char *version)
{
	size_t n = strlen(version);

	return !strncmp(tag, version, n) && (tag[n] == '\0' || tag[n] == '.' || tag[n] == '-');
}

const char *template_plan__image_base(const char *image)
{
	if (!image)
		return NULL;
	/* fromBaseImage() */
	if (!strncmp(image, "e2bdev/base", 11) && (image[11] == '\0' || image[11] == ':'))
		return "base";
	/* `base` is Debian bookworm with its python3 (3.11): only the images
	 * that are that map to it; debian:stable, debian:trixie, python:3,
	 * python:3.12 ... are pulled from their registry like any image. */
	if (!strncmp(image, "debian:", 7))
		return template_plan__tag_is(image + 7, "bookworm") ||
			       template_plan__tag_is(image + 7, "12")
			   ? "base"
			   : NULL;
	if (!strncmp(image, "python:", 7))
		return template_plan__tag_is(image + 7, "3.11") && !strstr(image, "bullseye") &&
			       !strstr(image, "trixie") && !strstr(image, "alpine")
			   ? "base"
			   : NULL;
	return NULL;
}

bool template_plan__image_ref_valid(const char *image)
{
	size_t len = image ? strlen(image) : 0;

	if (len == 0 || len > 255 ||
	    !((image[0] >= 'a' && image[0] <= 'z') || (image[0] >= 'A' && image[0] <= 'Z') ||
	      (image[0] >= '0' && image[0] <= '9')))
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = image[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-' || c == '/' || c == ':' || c == '@'))
			return false;
	}
	return !strstr(image, "//") && image[len - 1] != '/' && image[len - 1] != ':';
}

/* A string without NUL bytes, or NULL. */
static const char *string_or_null(const json_t *v)
{
	return json_is_string(v) && strlen(json_string_value(v)) == json_string_length(v)
		   ? json_string_value(v)
		   : NULL;
}

/* fromImageRegistry: null/absent, or {type: "registry", username,
 * password} (the SDK's fromImage credentials). AWS/GCP registries are
 * refused. */
static int registry__parse(const json_t *spec, struct template_plan *plan, char *err,
			   size_t err_len)
{
	const json_t *reg = json_object_get(spec, "fromImageRegistry");
	const char *type;

	if (!reg || json_is_null(reg))
		return 0;
	type = string_or_null(json_object_get(reg, "type"));
	if (!json_is_object(reg) || !type || strcmp(type, "registry")) {
		snprintf(err, err_len,
			 "fromImageRegistry: only {type: \"registry\", username, password} is "
			 "supported (no AWS/GCP registries)");
		return -EINVAL;
	}
	if (!plan->from_image) {
		snprintf(err, err_len, "fromImageRegistry needs fromImage");
		return -EINVAL;
	}
	plan->registry_username = string_or_null(json_object_get(reg, "username"));
	plan->registry_password = string_or_null(json_object_get(reg, "password"));
	if (!plan->registry_username || !plan->registry_password ||
	    strlen(plan->registry_username) > 256 || strlen(plan->registry_password) > 4096 ||
	    strchr(plan->registry_username, ':')) {
		snprintf(
		    err, err_len,
		    "fromImageRegistry needs a username (no ':') and a password, both strings");
		return -EINVAL;
	}
	return 0;
}

static bool is_hex64(const char *s)
{
	if (!s || strlen(s) != 64)
		return false;
	for (size_t i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool is_octal_mode(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > 4)
		return false;
	for (size_t i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '7')
			return false;
	return true;
}

static bool is_clean_path(const char *s, bool absolute)
{
	size_t len = s ? strlen(s) : 0;

	if (len == 0 || len > 1024 || (absolute && s[0] != '/'))
		return false;
	return !strchr(s, '\n') && !strchr(s, '\r');
}

/* Validates the args of one step against its kind. 0 or -EINVAL. */
static int step__check(const struct template_step *step, size_t index, char *err, size_t err_len)
{
	const char **a = (const char **)step->args;
	size_t n = step->arg_count;

	switch (step->kind) {
	case TEMPLATE_STEP_RUN:
		if (n < 1 || n > 2 || !a[0][0] || strlen(a[0]) > TEMPLATE_CMD_MAX)
			goto bad;
		if (n == 2 && a[1][0] && !template_step__user_valid(a[1]))
			goto bad;
		return 0;
	case TEMPLATE_STEP_COPY:
		if (n < 2 || n > 4 || !is_clean_path(a[0], false) || !is_clean_path(a[1], false) ||
		    (n > 2 && a[2][0] && !template_step__user_valid(a[2])) ||
		    (n > 3 && a[3][0] && !is_octal_mode(a[3])))
			goto bad;
		if (!is_hex64(step->files_hash)) {
			snprintf(err, err_len, "steps[%zu]: COPY needs filesHash (64 hex digits)",
				 index);
			return -EINVAL;
		}
		return 0;
	case TEMPLATE_STEP_ENV:
		if (n < 2 || n % 2)
			goto bad;
		for (size_t i = 0; i < n; i += 2)
			if (!template_step__env_name_valid(a[i]) || strlen(a[i + 1]) > 32768)
				goto bad;
		return 0;
	case TEMPLATE_STEP_WORKDIR:
		if (n != 1 || !is_clean_path(a[0], false))
			goto bad;
		return 0;
	case TEMPLATE_STEP_USER:
		if (n != 1 || !template_step__user_valid(a[0]))
			goto bad;
		return 0;
	}
bad:
	snprintf(err, err_len, "steps[%zu]: invalid arguments for %s", index,
		 template_step__name(step->kind));
	return -EINVAL;
}

/* Fills one step from its JSON object. 0 or -EINVAL. */
static int step__parse(const json_t *item, size_t index, struct template_step *step, char *err,
		       size_t err_len)
{
	const json_t *type = json_object_get(item, "type"), *args = json_object_get(item, "args");
	const json_t *hash = json_object_get(item, "filesHash"),
		     *force = json_object_get(item, "force");
	size_t i;

	memset(step, 0, sizeof(*step));
	if (!json_is_object(item) || !json_is_string(type)) {
		snprintf(err, err_len, "steps[%zu]: an object with a string type is required",
			 index);
		return -EINVAL;
	}
	for (i = 0; i <= TEMPLATE_STEP_USER; i++)
		if (!strcmp(json_string_value(type), step_names[i]))
			break;
	if (i > TEMPLATE_STEP_USER) {
		snprintf(err, err_len, "steps[%zu]: unsupported step type '%.32s'", index,
			 json_string_value(type));
		return -EINVAL;
	}
	step->kind = (enum template_step_kind)i;
	if (args && !json_is_array(args)) {
		snprintf(err, err_len, "steps[%zu]: args must be an array of strings", index);
		return -EINVAL;
	}
	if (json_array_size(args) > TEMPLATE_STEP_ARGS_MAX) {
		snprintf(err, err_len, "steps[%zu]: more than %d args", index,
			 TEMPLATE_STEP_ARGS_MAX);
		return -EINVAL;
	}
	for (i = 0; i < json_array_size(args); i++) {
		const json_t *arg = json_array_get(args, i);

		if (!json_is_string(arg) ||
		    strlen(json_string_value(arg)) != json_string_length(arg)) {
			snprintf(err, err_len, "steps[%zu]: args must be strings without NUL",
				 index);
			return -EINVAL;
		}
		step->args[step->arg_count++] = json_string_value(arg);
	}
	if (hash && !json_is_null(hash))
		step->files_hash = json_is_string(hash) ? json_string_value(hash) : "";
	step->force = json_is_true(force);
	return step__check(step, index, err, err_len);
}

/* An optional non-empty string field (NULL when absent/null/empty). */
static int optional_string(const json_t *spec, const char *key, size_t max, const char **out,
			   char *err, size_t err_len)
{
	const json_t *v = json_object_get(spec, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v) || json_string_length(v) > max ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		snprintf(err, err_len, "%s must be a string of at most %zu bytes", key, max);
		return -EINVAL;
	}
	if (json_string_length(v))
		*out = json_string_value(v);
	return 0;
}

int template_plan__parse(const json_t *spec, struct template_plan *plan, char *err, size_t err_len)
{
	const char *from_template, *base;
	const json_t *steps;

	memset(plan, 0, sizeof(*plan));
	if (!json_is_object(spec)) {
		snprintf(err, err_len, "the body must be a JSON object");
		return -EINVAL;
	}
	if (optional_string(spec, "fromTemplate", 64, &from_template, err, err_len) ||
	    optional_string(spec, "fromImage", 512, &plan->from_image, err, err_len) ||
	    optional_string(spec, "startCmd", TEMPLATE_CMD_MAX, &plan->start_cmd, err, err_len) ||
	    optional_string(spec, "readyCmd", TEMPLATE_CMD_MAX, &plan->ready_cmd, err, err_len))
		return -EINVAL;
	if (!!from_template == !!plan->from_image) {
		snprintf(err, err_len, "exactly one of fromImage or fromTemplate must be given");
		return -EINVAL;
	}
	if (registry__parse(spec, plan, err, err_len))
		return -EINVAL;
	if (from_template) {
		if (!templates__name_valid(from_template)) {
			snprintf(err, err_len, "fromTemplate '%.64s' is not a template name",
				 from_template);
			return -EINVAL;
		}
		base = from_template;
	} else if (plan->registry_username ||
		   !(base = template_plan__image_base(plan->from_image))) {
		if (!template_plan__image_ref_valid(plan->from_image)) {
			snprintf(err, err_len,
				 "fromImage '%.200s' is not an image reference "
				 "([registry/]name[:tag][@sha256:digest])",
				 plan->from_image);
			return -EINVAL;
		}
		plan->oci = true;
		base = "";
	}
	snprintf(plan->base, sizeof(plan->base), "%s", base);
	plan->force = json_is_true(json_object_get(spec, "force"));
	steps = json_object_get(spec, "steps");
	if (steps && !json_is_null(steps) && !json_is_array(steps)) {
		snprintf(err, err_len, "steps must be an array");
		return -EINVAL;
	}
	if (json_array_size(steps) > TEMPLATE_STEPS_MAX) {
		snprintf(err, err_len, "at most %d steps", TEMPLATE_STEPS_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < json_array_size(steps); i++)
		if (step__parse(json_array_get(steps, i), i, &plan->steps[i], err, err_len))
			return -EINVAL;
	plan->step_count = json_array_size(steps);
	return 0;
}
