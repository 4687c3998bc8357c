/*
 * spam_token.h - what the tokenizer (spam_token.c) offers beyond
 * spam_tokenize (spam.h): the hash of one token's text, for the tests
 * and for looking a token up by hand.
 */
#ifndef POSTERN_SCAN_SPAM_TOKEN_H
#define POSTERN_SCAN_SPAM_TOKEN_H

#include <stdint.h>

/* The token spam_tokenize makes of the text prefix + text ("S:" "cheap"). */
uint64_t spam_token_hash(const char *prefix, const char *text);

#endif
