/*
 * table_watch.c - stat signatures of the table files (see table_watch.h).
 * Privilege: the supervisor; no file is opened or read here.
 */
#include "table_watch.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../lib/xalloc.h"

static struct table_sig signature(const char *path)
{
	struct table_sig s;
	struct stat st;
	memset(&s, 0, sizeof(s));
	if (path == NULL || stat(path, &st) != 0)
		return s;
	s.exists = true;
	s.dev = (uint64_t)st.st_dev;
	s.ino = (uint64_t)st.st_ino;
	s.size = (uint64_t)st.st_size;
	s.mtime_sec = (int64_t)st.st_mtim.tv_sec;
	s.mtime_nsec = (int64_t)st.st_mtim.tv_nsec;
	s.ctime_sec = (int64_t)st.st_ctim.tv_sec;
	s.ctime_nsec = (int64_t)st.st_ctim.tv_nsec;
	return s;
}

static bool same(const struct table_sig *a, const struct table_sig *b)
{
	return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino &&
	       a->size == b->size && a->mtime_sec == b->mtime_sec &&
	       a->mtime_nsec == b->mtime_nsec && a->ctime_sec == b->ctime_sec &&
	       a->ctime_nsec == b->ctime_nsec;
}

void table_watch_free(struct table_watch *w)
{
	for (size_t i = 0; i < TABLE_WATCH_FILES; i++)
		xfree(&w->paths[i]);
	memset(w, 0, sizeof(*w));
}

void table_watch_take(struct table_watch *w, const struct config *cfg)
{
	const char *paths[TABLE_WATCH_FILES] = { cfg->users_file, cfg->aliases_file,
						 cfg->domains_file };
	table_watch_free(w);
	for (size_t i = 0; i < TABLE_WATCH_FILES; i++) {
		if (paths[i] == NULL || paths[i][0] == '\0')
			continue;
		w->paths[i] = xstrdup(paths[i]);
		w->sigs[i] = signature(paths[i]);
	}
}

void table_watch_move(struct table_watch *dst, struct table_watch *src)
{
	table_watch_free(dst);
	*dst = *src;
	memset(src, 0, sizeof(*src));
}

bool table_watch_changed(struct table_watch *w, const char **which_r)
{
	bool changed = false;
	*which_r = NULL;
	for (size_t i = 0; i < TABLE_WATCH_FILES; i++) {
		if (w->paths[i] == NULL)
			continue;
		struct table_sig now = signature(w->paths[i]);
		if (same(&now, &w->sigs[i]))
			continue;
		w->sigs[i] = now;
		if (!changed)
			*which_r = w->paths[i];
		changed = true;
	}
	return changed;
}
