/*
 * antivirus.c - placeholder of the antivirus stage (scan.h): the real one
 * comes from the antivirus branch, which replaces this file at the merge.
 * Privilege: unprivileged scan master, `postern scan`.
 */
#include "scan.h"

int scan_antivirus_stage_new(const struct config *cfg, struct scan_stage *stage_r,
			     char **err_r)
{
	(void)cfg;
	(void)stage_r;
	(void)err_r;
	return 1; /* not configured */
}
