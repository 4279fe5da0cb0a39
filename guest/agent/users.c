/* users: who a request acts as. envd resolves the user from the request
 * (username query, Basic auth) or the /init default, and runs processes
 * and file operations as that user. */
#include "agent.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/fsuid.h>
#include <unistd.h>

#include "warren/log.h"

static void fill_groups(struct agent_user *out)
{
	int count = (int)(sizeof(out->groups) / sizeof(out->groups[0]));

	if (getgrouplist(out->name, out->gid, out->groups, &count) < 0) {
		/* More groups than we keep: the primary one is enough. */
		out->groups[0] = out->gid;
		count = 1;
	}
	out->group_count = count;
}

static bool fill_from_passwd(const struct passwd *pw, struct agent_user *out)
{
	if (strlen(pw->pw_name) >= sizeof(out->name) || strlen(pw->pw_dir) >= sizeof(out->home))
		return false;
	snprintf(out->name, sizeof(out->name), "%s", pw->pw_name);
	snprintf(out->home, sizeof(out->home), "%s", pw->pw_dir[0] == '/' ? pw->pw_dir : "/");
	out->uid = pw->pw_uid;
	out->gid = pw->pw_gid;
	fill_groups(out);
	return true;
}

static void fill_self(struct agent_user *out)
{
	struct passwd pw, *result = NULL;
	char buf[4096];

	memset(out, 0, sizeof(*out));
	if (getpwuid_r(geteuid(), &pw, buf, sizeof(buf), &result) == 0 && result &&
	    fill_from_passwd(result, out))
		return;
	/* No passwd entry for ourselves (a bare busybox rootfs): uid only. */
	snprintf(out->name, sizeof(out->name), "%u", (unsigned)geteuid());
	snprintf(out->home, sizeof(out->home), "/");
	out->uid = geteuid();
	out->gid = getegid();
	out->groups[0] = out->gid;
	out->group_count = 1;
}

/* The last unknown name we logged, so the fallback is logged once. */
static pthread_mutex_t warned_lock = PTHREAD_MUTEX_INITIALIZER;
static char warned_name[64];

void users__resolve(const char *name, struct agent_user *out)
{
	struct passwd pw, *result = NULL;
	char buf[4096], fallback[64];

	if (!name || !*name) {
		pthread_mutex_lock(&agent.lock);
		snprintf(fallback, sizeof(fallback), "%s",
			 agent.default_user[0] ? agent.default_user : AGENT_DEFAULT_USERNAME);
		pthread_mutex_unlock(&agent.lock);
		name = fallback;
	}
	memset(out, 0, sizeof(*out));
	if (getpwnam_r(name, &pw, buf, sizeof(buf), &result) == 0 && result &&
	    fill_from_passwd(result, out))
		return;
	fill_self(out);
	pthread_mutex_lock(&warned_lock);
	if (strcmp(warned_name, name) == 0) {
		pthread_mutex_unlock(&warned_lock);
		return;
	}
	snprintf(warned_name, sizeof(warned_name), "%s", name);
	pthread_mutex_unlock(&warned_lock);
	log_info("user '%.64s' not in /etc/passwd, acting as the agent's own user '%s' (uid %u)",
		 name, out->name, (unsigned)out->uid);
}

void users__for_request(struct MHD_Connection *connection, const char *username,
			struct agent_user *out)
{
	char basic[64];
	const char *authorization;

	if (username && *username) {
		users__resolve(username, out);
		return;
	}
	authorization = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_AUTHORIZATION);
	if (wire__parse_basic_auth_user(authorization, basic, sizeof(basic))) {
		users__resolve(basic, out);
		return;
	}
	users__resolve(NULL, out);
}

void users__fs_enter(const struct agent_user *user, struct fs_identity *saved)
{
	memset(saved, 0, sizeof(*saved));
	if (geteuid() != 0 || (user->uid == 0 && user->gid == 0))
		return;
	saved->switched = true;
	saved->gid = (gid_t)setfsgid(user->gid);
	saved->uid = (uid_t)setfsuid(user->uid);
}

void users__fs_leave(const struct fs_identity *saved)
{
	if (!saved->switched)
		return;
	setfsuid(saved->uid);
	setfsgid(saved->gid);
}
