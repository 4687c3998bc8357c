/*
 * rules.c - placeholder of the content rules stage (scan.h): the real one
 * comes from the rules branch, which replaces this file at the merge.
 * Privilege: unprivileged scan master, `postern scan`.
 */
#include "scan.h"

int scan_rules_stage_new(const struct config *cfg, struct scan_stage *stage_r, char **err_r)
{
	(void)cfg;
	(void)stage_r;
	(void)err_r;
	return 1; /* not configured */
}
