/*
 * spam_rules_expr.c - the expressions of SpamAssassin rule files: the
 * right-hand side of "meta NAME expr" and the condition of "if expr",
 * compiled to a postfix program once at load and evaluated per message.
 *
 * Grammar (Perl's precedence, which SpamAssassin inherits by handing the
 * text to Perl; postern parses it itself and accepts only this):
 *   or    := and { "||" and }
 *   and   := eq { "&&" eq }
 *   eq    := rel { ("==" | "!=") rel }
 *   rel   := add { ("<" | ">" | "<=" | ">=") add }
 *   add   := mul { ("+" | "-") mul }
 *   mul   := unary { ("*" | "/") unary }
 *   unary := ("!" | "-" | "+") unary | primary
 *   primary := NUMBER | NAME | NAME "(" text ")" | "(" or ")"
 * NAME and calls are resolved by the caller (rule names for meta;
 * version, plugin(...), can(...) for if). && and || yield the deciding
 * operand's value, as in Perl.
 *
 * Input: a line of a rule file, bounded (SPAM_EXPR_TOKENS_MAX tokens,
 * SPAM_EXPR_DEPTH_MAX nesting): recursion cannot run away. Runs in the
 * scan master at load; evaluation is a loop over the program.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/xalloc.h"
#include "spam_rules_impl.h"

struct expr_parser {
	const char *s;
	size_t pos;
	unsigned tokens;
	unsigned depth;
	const struct spam_expr_resolver *r;
	struct spam_expr *out;
	char *err;
	size_t errlen;
	bool failed;
};

static void fail(struct expr_parser *p, const char *fmt, ...) PRINTF_LIKE(2, 3);

static void fail(struct expr_parser *p, const char *fmt, ...)
{
	if (p->failed)
		return;
	p->failed = true;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->err, p->errlen, fmt, ap);
	va_end(ap);
}

void spam_expr_push(struct spam_expr *e, enum spam_expr_opcode op, uint32_t rule, double num)
{
	if (e->count == e->cap) {
		e->cap = e->cap ? e->cap * 2 : 16;
		e->ops = xreallocarray(e->ops, e->cap, sizeof(*e->ops));
	}
	e->ops[e->count++] = (struct spam_expr_op){ op, rule, num };
}

void spam_expr_free(struct spam_expr *e)
{
	xfree(&e->ops);
	e->count = e->cap = 0;
}

static void skip_space(struct expr_parser *p)
{
	while (p->s[p->pos] == ' ' || p->s[p->pos] == '\t')
		p->pos++;
}

/* Is the operator op next (after spaces)? Takes it if so. Two-character
 * operators are not mistaken for their first character. */
static bool take(struct expr_parser *p, const char *op)
{
	skip_space(p);
	size_t n = strlen(op);
	if (strncmp(p->s + p->pos, op, n) != 0)
		return false;
	char next = p->s[p->pos + n];
	if (n == 1 && (op[0] == '<' || op[0] == '>' || op[0] == '!' || op[0] == '=') && next == '=')
		return false;
	if (n == 1 && (op[0] == '&' || op[0] == '|'))
		return false;  /* bitwise operators are not part of the language */
	p->pos += n;
	if (++p->tokens > SPAM_EXPR_TOKENS_MAX)
		fail(p, "more than %d tokens", SPAM_EXPR_TOKENS_MAX);
	return true;
}

static void parse_or(struct expr_parser *p);

static bool is_name_start(char c)
{
	return isalpha((unsigned char)c) || c == '_';
}

static bool is_name_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == ':';
}

static void parse_call(struct expr_parser *p, const char *name, size_t len)
{
	/* NAME ( argument ): the argument is handed over as text. */
	p->pos++;  /* ( */
	size_t start = p->pos;
	int nest = 1;
	while (p->s[p->pos] != '\0' && nest > 0) {
		if (p->s[p->pos] == '(')
			nest++;
		else if (p->s[p->pos] == ')')
			nest--;
		if (nest > 0)
			p->pos++;
	}
	if (p->s[p->pos] != ')') {
		fail(p, "\"%.*s(\" is not closed", (int)len, name);
		return;
	}
	size_t end = p->pos++;
	while (start < end && (p->s[start] == ' ' || p->s[start] == '\t'))
		start++;
	while (end > start && (p->s[end - 1] == ' ' || p->s[end - 1] == '\t'))
		end--;
	if (p->r->call == NULL) {
		fail(p, "\"%.*s(...)\" is not allowed here", (int)len, name);
		return;
	}
	if (p->r->call(p->r->ctx, name, len, p->s + start, end - start, p->out, p->err,
		       p->errlen) < 0)
		p->failed = true;
}

static void parse_primary(struct expr_parser *p)
{
	skip_space(p);
	if (++p->tokens > SPAM_EXPR_TOKENS_MAX) {
		fail(p, "more than %d tokens", SPAM_EXPR_TOKENS_MAX);
		return;
	}
	const char *s = p->s + p->pos;
	if (*s == '(') {
		p->pos++;
		parse_or(p);
		if (!take(p, ")"))
			fail(p, "\")\" expected at \"%.20s\"", p->s + p->pos);
		return;
	}
	if (isdigit((unsigned char)*s) || (*s == '.' && isdigit((unsigned char)s[1]))) {
		char *end;
		double v = strtod(s, &end);
		if (!isfinite(v) || is_name_char(*end)) {
			fail(p, "bad number \"%.20s\"", s);
			return;
		}
		p->pos += (size_t)(end - s);
		spam_expr_push(p->out, SPAM_OP_NUM, 0, v);
		return;
	}
	if (is_name_start(*s)) {
		size_t n = 0;
		while (is_name_char(s[n]))
			n++;
		p->pos += n;
		skip_space(p);
		if (p->s[p->pos] == '(') {
			parse_call(p, s, n);
			return;
		}
		if (p->r->name(p->r->ctx, s, n, p->out, p->err, p->errlen) < 0)
			p->failed = true;
		return;
	}
	if (*s == '\0')
		fail(p, "the expression ends too early");
	else
		fail(p, "unexpected \"%.20s\"", s);
}

/* Each parenthesis and unary operator goes one level deeper (the
 * precedence levels under it are a fixed number of frames more). */
static void parse_unary(struct expr_parser *p)
{
	if (p->failed)
		return;
	if (++p->depth > SPAM_EXPR_DEPTH_MAX) {
		fail(p, "nested more than %d deep", SPAM_EXPR_DEPTH_MAX);
		return;
	}
	if (take(p, "!")) {
		parse_unary(p);
		spam_expr_push(p->out, SPAM_OP_NOT, 0, 0);
	} else if (take(p, "-")) {
		parse_unary(p);
		spam_expr_push(p->out, SPAM_OP_NEG, 0, 0);
	} else if (take(p, "+")) {
		parse_unary(p);
	} else {
		parse_primary(p);
	}
	p->depth--;
}

struct binop {
	const char *text;
	enum spam_expr_opcode op;
};

/* One precedence level: next { op next }. */
static void parse_level(struct expr_parser *p, const struct binop *ops, size_t nops,
			void (*next)(struct expr_parser *))
{
	if (p->failed)
		return;
	next(p);
	while (!p->failed) {
		size_t i;
		for (i = 0; i < nops; i++)
			if (take(p, ops[i].text))
				break;
		if (i == nops)
			break;
		next(p);
		spam_expr_push(p->out, ops[i].op, 0, 0);
	}
}

static void parse_mul(struct expr_parser *p)
{
	static const struct binop ops[] = { { "*", SPAM_OP_MUL }, { "/", SPAM_OP_DIV } };
	parse_level(p, ops, ARRAY_LEN(ops), parse_unary);
}

static void parse_add(struct expr_parser *p)
{
	static const struct binop ops[] = { { "+", SPAM_OP_ADD }, { "-", SPAM_OP_SUB } };
	parse_level(p, ops, ARRAY_LEN(ops), parse_mul);
}

static void parse_rel(struct expr_parser *p)
{
	static const struct binop ops[] = {
		{ "<=", SPAM_OP_LE }, { ">=", SPAM_OP_GE }, { "<", SPAM_OP_LT }, { ">", SPAM_OP_GT },
	};
	parse_level(p, ops, ARRAY_LEN(ops), parse_add);
}

static void parse_eq(struct expr_parser *p)
{
	static const struct binop ops[] = { { "==", SPAM_OP_EQ }, { "!=", SPAM_OP_NE } };
	parse_level(p, ops, ARRAY_LEN(ops), parse_rel);
}

static void parse_and(struct expr_parser *p)
{
	static const struct binop ops[] = { { "&&", SPAM_OP_AND } };
	parse_level(p, ops, ARRAY_LEN(ops), parse_eq);
}

static void parse_or(struct expr_parser *p)
{
	static const struct binop ops[] = { { "||", SPAM_OP_OR } };
	parse_level(p, ops, ARRAY_LEN(ops), parse_and);
}

int spam_expr_compile(const char *text, const struct spam_expr_resolver *r,
		      struct spam_expr *out, char *err, size_t errlen)
{
	struct expr_parser p = { .s = text, .r = r, .out = out, .err = err, .errlen = errlen };
	out->count = 0;
	parse_or(&p);
	skip_space(&p);
	if (!p.failed && text[p.pos] != '\0')
		fail(&p, "unexpected \"%.20s\"", text + p.pos);
	if (!p.failed && out->count == 0)
		fail(&p, "empty expression");
	return p.failed ? -1 : 0;
}

static bool truthy(double v)
{
	return v != 0 && !isnan(v);
}

double spam_expr_eval(const struct spam_expr *e, const double *values)
{
	/* The program has at most one push per token, so its length bounds
	 * the stack. A small fixed stack serves nearly every rule. */
	double small[64];
	double *st = e->count <= ARRAY_LEN(small) ? small : xcalloc(e->count, sizeof(double));
	size_t sp = 0;
	bool bad = false;
	for (size_t i = 0; i < e->count && !bad; i++) {
		const struct spam_expr_op *o = &e->ops[i];
		if (o->op == SPAM_OP_NUM) {
			st[sp++] = o->num;
			continue;
		}
		if (o->op == SPAM_OP_RULE) {
			st[sp++] = values[o->rule];
			continue;
		}
		if (o->op == SPAM_OP_NOT || o->op == SPAM_OP_NEG) {
			if (sp < 1) {
				bad = true;
				break;
			}
			st[sp - 1] = o->op == SPAM_OP_NOT ? (truthy(st[sp - 1]) ? 0 : 1) : -st[sp - 1];
			continue;
		}
		if (sp < 2) {
			bad = true;
			break;
		}
		double b = st[--sp], a = st[sp - 1], v = 0;
		switch (o->op) {
		case SPAM_OP_ADD: v = a + b; break;
		case SPAM_OP_SUB: v = a - b; break;
		case SPAM_OP_MUL: v = a * b; break;
		case SPAM_OP_DIV:
			if (b == 0)
				bad = true;  /* Perl dies; SpamAssassin's meta then does not hit */
			else
				v = a / b;
			break;
		case SPAM_OP_LT: v = a < b; break;
		case SPAM_OP_GT: v = a > b; break;
		case SPAM_OP_LE: v = a <= b; break;
		case SPAM_OP_GE: v = a >= b; break;
		case SPAM_OP_EQ: v = a == b; break;
		case SPAM_OP_NE: v = a != b; break;
		case SPAM_OP_AND: v = truthy(a) ? b : a; break;
		case SPAM_OP_OR: v = truthy(a) ? a : b; break;
		default: bad = true; break;
		}
		st[sp - 1] = v;
	}
	double result = (!bad && sp == 1 && isfinite(st[0])) ? st[0] : 0;
	if (st != small)
		free(st);
	return result;
}
