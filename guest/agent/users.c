/* users: who a request acts as. envd resolves the user from the request
 * (username query, Basic auth) or the /init default, and runs processes
 * and file operations as that user. */
#include "server.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
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

bool users__resolve(const char *name, struct agent_user *out)
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
	snprintf(out->name, sizeof(out->name), "%s", name);
	if (getpwnam_r(name, &pw, buf, sizeof(buf), &result) == 0 && result &&
	    fill_from_passwd(result, out))
		return true;
	/* Never another identity (least of all ours, root): the caller
	 * answers 400. out->name keeps the name for the message. */
	out->uid = (uid_t)-1;
	out->gid = (gid_t)-1;
	return false;
}

bool users__for_request(struct MHD_Connection *connection, const char *username,
			bool signed_request, struct agent_user *out)
{
	char basic[64];
	const char *authorization;

	if (username && *username)
		return users__resolve(username, out);
	/* A signed URL names its user in the signed parameters; a header the
	 * URL's holder adds must not choose another one. */
	if (signed_request)
		return users__resolve(NULL, out);
	authorization =
	    MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	if (wire__parse_basic_auth_user(authorization, basic, sizeof(basic)))
		return users__resolve(basic, out);
	return users__resolve(NULL, out);
}

/* setgroups(2) of the calling thread only: the raw system call, not glibc's
 * wrapper, which applies it to every thread of the process. */
static int thread_setgroups(int count, const gid_t *groups)
{
	return (int)syscall(SYS_setgroups, (size_t)count, groups);
}

void users__fs_enter(const struct agent_user *user, struct fs_identity *saved)
{
	memset(saved, 0, sizeof(*saved));
	if (geteuid() != 0 || (user->uid == 0 && user->gid == 0))
		return;
	saved->switched = true;
	/* Supplementary groups first (needs CAP_SETGID, which the fsuid
	 * switch below does not drop). The agent's own groups (root's) must
	 * not lend the user their rights; the user's own list applies. When
	 * either step fails the thread keeps no groups at all. */
	saved->group_count = getgroups(AGENT_MAX_GROUPS, saved->groups);
	if (saved->group_count < 0 || thread_setgroups(user->group_count, user->groups) < 0) {
		if (saved->group_count < 0)
			saved->group_count = 0;
		if (thread_setgroups(0, NULL) < 0)
			log_error("cannot drop supplementary groups: %s", strerror(errno));
	}
	saved->gid = (gid_t)setfsgid(user->gid);
	saved->uid = (uid_t)setfsuid(user->uid);
}

void users__fs_leave(const struct fs_identity *saved)
{
	if (!saved->switched)
		return;
	setfsuid(saved->uid);
	setfsgid(saved->gid);
	thread_setgroups(saved->group_count, saved->groups);
}
