/*
 * testutil.h - helpers shared by the unit tests: private temporary
 * folders under /tmp and their removal, and the group fixtures of a test
 * file that keeps its files in one such folder.
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

/* Defines `dir`, the test file's private folder
 * (/tmp/postern-test-TAG-XXXXXX), and the group fixtures `setup`, which
 * creates it, and `teardown`, which removes it with what it holds. */
#define TESTUTIL_PRIVATE_DIR(tag)                                                     \
	static char dir[] = "/tmp/postern-test-" tag "-XXXXXX";                       \
	static int setup(void **state)                                                \
	{                                                                             \
		(void)state;                                                          \
		return mkdtemp(dir) == NULL ? -1 : 0;                                 \
	}                                                                             \
	static int teardown(void **state)                                             \
	{                                                                             \
		(void)state;                                                          \
		return testutil_rmtree(dir);                                          \
	}

#endif
