/*
 * policy.c - the ordered check lists of each SMTP stage (see policy.h).
 */
#include "policy.h"

#include <stddef.h>

typedef enum policy_verdict policy_check_fn(const struct policy_env *env,
					     const struct policy_request *req,
					     struct policy_reply *reply_r);

/* One list per stage, cheapest check first. */
static policy_check_fn *const rcpt_checks[] = { policy_check_recipient, NULL };
static policy_check_fn *const empty_checks[] = { NULL };

static policy_check_fn *const *const stage_checks[POLICY_STAGE_COUNT] = {
	[POLICY_CONNECT] = empty_checks,
	[POLICY_HELO] = empty_checks,
	[POLICY_MAIL] = empty_checks,
	[POLICY_RCPT] = rcpt_checks,
	[POLICY_DATA] = empty_checks,
	[POLICY_END_OF_DATA] = empty_checks,
};

enum policy_verdict policy_check(const struct policy_env *env,
				 const struct policy_request *req,
				 struct policy_reply *reply_r)
{
	for (policy_check_fn *const *check = stage_checks[req->stage]; *check != NULL; check++) {
		enum policy_verdict v = (*check)(env, req, reply_r);
		if (v != POLICY_DUNNO)
			return v;
	}
	return POLICY_DUNNO;
}
