/*
 * testutil.h - helpers shared by the unit tests: private temporary
 * folders under /tmp and their removal.
 */
#ifndef POSTERN_TESTUTIL_H
#define POSTERN_TESTUTIL_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline int testutil_rm_entry(const char *path, const struct stat *st, int flag,
				    struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Remove a folder and everything below it; 0 on success. */
static inline int testutil_rmtree(const char *path)
{
	return nftw(path, testutil_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
