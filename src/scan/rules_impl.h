/*
 * rules_impl.h - the compiled form of a rules file, shared by its parser
 * (rules_parse.c) and its judge (rules.c). Not for other modules: they
 * use rules.h.
 */
#ifndef POSTERN_SCAN_RULES_IMPL_H
#define POSTERN_SCAN_RULES_IMPL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/cidr.h"
#include "../lib/strutil.h"

enum rule_action {
	RULE_REJECT,
	RULE_TEMPFAIL,
	RULE_DISCARD,
	RULE_QUARANTINE,
	RULE_WARN,
	RULE_TAG,
};

/* What a test looks at. */
enum rule_subject {
	/* one part (an attachment, a body, the message itself) */
	SUBJ_EXTENSION,
	SUBJ_DOUBLE_EXTENSION,
	SUBJ_FILENAME,
	SUBJ_TRAILING_DOT_OR_SPACE,
	SUBJ_SIZE,
	SUBJ_TYPE,            /* declared or detected */
	SUBJ_DECLARED_TYPE,
	SUBJ_DETECTED_TYPE,
	SUBJ_ENCRYPTED_ARCHIVE,
	SUBJ_UNREADABLE_ARCHIVE,
	/* header fields */
	SUBJ_HEADER,          /* the message's own header section */
	SUBJ_ANY_HEADER,      /* every header section: message, parts, attached messages */
	/* the envelope */
	SUBJ_SENDER,
	SUBJ_RECIPIENT,
	SUBJ_CLIENT,
	SUBJ_HELO,
};

/* How it is compared. */
enum rule_compare {
	CMP_WORDS,       /* one of words (per subject: extension, name, type, address) */
	CMP_REGEX,
	CMP_CIDRS,
	CMP_SIZE_RANGE,  /* min <= n <= max */
	CMP_LONGER_THAN, /* strlen(raw value) > min */
	CMP_FLAG,        /* the subject's condition holds (no value) */
};

struct rule_test {
	enum rule_subject subject;
	enum rule_compare compare;
	bool in_archive;       /* name tests on the names inside archives */
	bool raw;              /* header regexes: the value as written, not decoded */
	char *header_name;     /* header tests; NULL = any field ("*") */
	strlist_t words;       /* lower case where the comparison ignores case */
	pcre2_code *regex;
	char *regex_text;      /* as written, for logs */
	cidr_list_t cidrs;
	uint64_t min, max;
	unsigned line;
};

struct rule {
	char *name;
	unsigned line;
	struct rule_test *tests;
	size_t test_count;
	enum rule_action action;
	char *text;            /* reply text or tag field; NULL = the default */
	bool has_action;
	unsigned action_line;
};

struct scan_rules {
	char *path;
	struct rule *rules;
	size_t count;
	pcre2_match_context *match_ctx;  /* the limits of every match */
	pcre2_match_data *match_data;    /* one match at a time (one thread) */
	pcre2_jit_stack *jit_stack;
};

/* Is this a part test (true), or a header/envelope test (false)? */
bool rules_subject_is_part(enum rule_subject s);
const char *rules_action_word(enum rule_action a);
const char *rules_subject_word(enum rule_subject s);

#endif
