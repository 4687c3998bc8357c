/*
 * milter_session.h - the conversations of "postern milter" with the MTA
 * (private to src/milter/): libmilter's callbacks (milter_session_desc),
 * one conversation per libmilter thread. Per message: the envelope, a
 * trace field standing for the MTA's own Received:, the header fields and
 * the body go to a private spool file (milter_spool.h); at its end the
 * scan master judges it (milter_scan.h) and the verdict becomes the reply
 * (see milter_server.h for the mapping and the bounds). One log line per
 * message keyed by the MTA's queue id, and the metrics
 * postern_milter_conversations_total, postern_milter_messages_total.
 *
 * Untrusted input: what the MTA relays; the verdicts. Privilege: the
 * milter process (`user`).
 */
#ifndef POSTERN_MILTER_SESSION_H
#define POSTERN_MILTER_SESSION_H

#include <libmilter/mfapi.h>
#include <stdbool.h>

#include "../lib/config.h"

/* The filter to give smfi_register (after milter_session_setup). */
extern struct smfiDesc milter_session_desc;

/* Before libmilter starts: the settings every conversation reads (cfg
 * must outlive them); scan false: every message is accepted unjudged. */
void milter_session_setup(const struct config *cfg, bool scan);

/* Wait until no conversation is open, at most seconds; how many are left. */
unsigned milter_session_wait(unsigned seconds);
/* How many conversations are open now. */
unsigned milter_session_count(void);

/* At the end, no conversation being served any more (or the process
 * exiting anyway): write the captured copies still waiting, free the rest. */
void milter_session_end(void);

#endif
