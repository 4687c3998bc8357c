/*
 * capture_dir.h - the folder of the capture switch (src/queue/capture.h),
 * made and checked by the supervisor of "postern serve" before each
 * generation starts, and checked by check-config.
 *
 * capture_dir belongs to `user` (the smtp workers write it), its group is
 * capture_group and its mode 2750: the set-group-ID bit gives every file
 * created in it that group, so the files (mode 0640) are readable by the
 * administrators of that group and nobody else, without the workers
 * being members of it. Only capture_dir itself is created, never the
 * folders above it.
 *
 * Untrusted input: none (the administrator's configuration and paths;
 * an existing folder is never changed, a symbolic link is refused).
 * Privilege: root supervisor (or the invoking user), check-config.
 */
#ifndef POSTERN_CAPTURE_DIR_H
#define POSTERN_CAPTURE_DIR_H

#include <stdbool.h>
#include <stdio.h>

#include "../lib/config.h"
#include "privsep.h"

/*
 * When capture can be on (config_capture_possible): capture_group must
 * name a group, capture_dir's parent must exist, and capture_dir must be
 * a real folder (not a link) owned by user, of group capture_group, mode
 * 2750 (the group may not write, others nothing). Missing, it is created
 * so when `create`; without `create` (check-config) a missing capture_dir
 * is fine. Problems are printed as "FILE:LINE: key ...: message"; returns
 * their number.
 */
int capture_dir_prepare(const struct config *cfg, const struct privsep *ps, bool create,
			FILE *errors);

#endif
