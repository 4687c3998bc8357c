/*
 * milter_proto.c - packets of the milter protocol version 6 (see
 * milter_proto.h): framing, the MTA's commands, and a strict decoder of
 * the filter's replies.
 *
 * Untrusted input: every reply packet (a filter is another program, maybe
 * on another host). Bounds: MILTER_PACKET_MAX per packet, every string
 * NUL-terminated inside the packet and at most MILTER_FIELD_MAX long, no
 * bytes left over. Pure code; unprivileged smtp worker.
 */
#include "milter_proto.h"

#include <stdio.h>
#include <string.h>

/* ---- framing ------------------------------------------------------------------ */

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_u32(buf_t *out, uint32_t v)
{
	unsigned char b[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16),
			       (unsigned char)(v >> 8), (unsigned char)v };
	buf_append(out, b, 4);
}

int milter_frame(const void *data, size_t len, uint32_t *packet_len_r)
{
	if (len < 4)
		return 1;
	uint32_t n = get_u32(data);
	if (n == 0 || n > MILTER_PACKET_MAX)
		return -1;
	*packet_len_r = n;
	return len - 4 < n ? 1 : 0;
}

/* ---- encoding ------------------------------------------------------------------ */

void milter_put_packet(buf_t *out, char cmd, const void *data, size_t len)
{
	put_u32(out, (uint32_t)(len + 1));
	buf_putc(out, cmd);
	if (len > 0)
		buf_append(out, data, len);
}

/* A string field with its NUL. */
static void put_string(buf_t *b, const char *s)
{
	buf_append(b, s, strlen(s) + 1);
}

void milter_encode_optneg(buf_t *out, uint32_t version, uint32_t actions, uint32_t protocol)
{
	buf_t d = BUF_INIT;
	put_u32(&d, version);
	put_u32(&d, actions);
	put_u32(&d, protocol);
	milter_put_packet(out, MILTER_CMD_OPTNEG, d.data, d.len);
	buf_free(&d);
}

void milter_encode_macros(buf_t *out, char cmd, const char *const *names,
			  const char *const *values, size_t count)
{
	buf_t d = BUF_INIT;
	buf_putc(&d, cmd);
	for (size_t i = 0; i < count; i++) {
		put_string(&d, names[i]);
		put_string(&d, values[i]);
	}
	milter_put_packet(out, MILTER_CMD_MACRO, d.data, d.len);
	buf_free(&d);
}

void milter_encode_connect(buf_t *out, const char *hostname, char family, uint16_t port,
			   const char *address)
{
	buf_t d = BUF_INIT;
	put_string(&d, hostname);
	buf_putc(&d, family);
	if (family != 'U') {
		unsigned char p[2] = { (unsigned char)(port >> 8), (unsigned char)port };
		buf_append(&d, p, 2);
		put_string(&d, address);
	}
	milter_put_packet(out, MILTER_CMD_CONNECT, d.data, d.len);
	buf_free(&d);
}

void milter_encode_helo(buf_t *out, const char *helo)
{
	milter_put_packet(out, MILTER_CMD_HELO, helo, strlen(helo) + 1);
}

void milter_encode_envelope(buf_t *out, char cmd, const char *path, const char *const *params,
			    size_t param_count)
{
	buf_t d = BUF_INIT;
	put_string(&d, path);
	for (size_t i = 0; i < param_count; i++)
		put_string(&d, params[i]);
	milter_put_packet(out, cmd, d.data, d.len);
	buf_free(&d);
}

void milter_encode_header(buf_t *out, const char *name, const char *value)
{
	buf_t d = BUF_INIT;
	put_string(&d, name);
	put_string(&d, value);
	milter_put_packet(out, MILTER_CMD_HEADER, d.data, d.len);
	buf_free(&d);
}

void milter_encode_body(buf_t *out, const void *data, size_t len)
{
	milter_put_packet(out, MILTER_CMD_BODY, data, len);
}

void milter_encode_unknown(buf_t *out, const char *line)
{
	milter_put_packet(out, MILTER_CMD_UNKNOWN, line, strlen(line) + 1);
}

void milter_encode_simple(buf_t *out, char cmd)
{
	milter_put_packet(out, cmd, NULL, 0);
}

/* ---- decoding ------------------------------------------------------------------ */

/* A reader over a packet's data. */
struct reader {
	const unsigned char *p;
	size_t left;
	const char *err;
};

static bool read_u32(struct reader *rd, uint32_t *v)
{
	if (rd->left < 4) {
		rd->err = "packet too short for a number";
		return false;
	}
	*v = get_u32(rd->p);
	rd->p += 4;
	rd->left -= 4;
	return true;
}

static const char *read_string(struct reader *rd)
{
	const unsigned char *nul = memchr(rd->p, '\0', rd->left);
	if (nul == NULL) {
		rd->err = "string field not terminated";
		return NULL;
	}
	size_t n = (size_t)(nul - rd->p);
	if (n > MILTER_FIELD_MAX) {
		rd->err = "string field too long";
		return NULL;
	}
	const char *s = (const char *)rd->p;
	rd->p += n + 1;
	rd->left -= n + 1;
	return s;
}

static bool at_end(struct reader *rd)
{
	if (rd->left != 0) {
		rd->err = "unexpected bytes after the reply's fields";
		return false;
	}
	return true;
}

/* A header field name (RFC 5322 2.2: printable ASCII but ':'). */
static bool valid_header_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (*s <= ' ' || *s >= 127 || *s == ':')
			return false;
	return true;
}

/* No control characters other than folding (CR, LF, TAB). */
static bool valid_header_value(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c < ' ' && c != '\t' && c != '\r' && c != '\n') || c == 127)
			return false;
	}
	return true;
}

/* An address of an envelope change: not empty (but "<>" for CHGFROM),
 * printable, no white space outside what a quoted local part may hold. */
static bool valid_address(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < ' ' || c == 127)
			return false;
	}
	return true;
}

/* "d.d.d" with 1 digit, then 1-3, then 1-3 (RFC 3463), class 4 or 5. */
static size_t status_len(const char *s, char class_digit)
{
	const char *p = s;
	if (*p != class_digit || p[1] != '.')
		return 0;
	p += 2;
	for (int part = 0; part < 2; part++) {
		size_t n = 0;
		while (p[n] >= '0' && p[n] <= '9')
			n++;
		if (n == 0 || n > 3)
			return 0;
		p += n;
		if (part == 0) {
			if (*p != '.')
				return 0;
			p++;
		}
	}
	return (size_t)(p - s);
}

/*
 * "550 5.7.1 text" or several lines "550-5.7.1 a\r\n550 5.7.1 b": one code
 * (4xx or 5xx) on every line, '-' on all lines but the last. The texts go
 * to text (joined with '\n', cut at MILTER_REPLY_TEXT_MAX).
 */
static const char *parse_replycode(const char *s, struct milter_reply *r, char *text)
{
	size_t tlen = 0;
	r->status[0] = '\0';
	r->code = 0;
	text[0] = '\0';
	for (bool first = true;; first = false) {
		if (!(s[0] == '4' || s[0] == '5') || s[1] < '0' || s[1] > '9' || s[2] < '0' ||
		    s[2] > '9')
			return "reply code is not 4xx or 5xx";
		int code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
		if (!first && code != r->code)
			return "reply lines with different codes";
		r->code = code;
		char sep = s[3];
		if (sep != ' ' && sep != '-' && sep != '\0')
			return "reply code not followed by a space";
		const char *p = sep == '\0' ? s + 3 : s + 4;
		size_t sl = status_len(p, s[0]);
		if (sl > 0 && (p[sl] == ' ' || p[sl] == '\0' || p[sl] == '\r')) {
			if (first && sl < sizeof(r->status)) {
				memcpy(r->status, p, sl);
				r->status[sl] = '\0';
			}
			p += sl;
			if (*p == ' ')
				p++;
		}
		const char *eol = strstr(p, "\r\n");
		size_t n = eol != NULL ? (size_t)(eol - p) : strlen(p);
		if (sep == '-' && eol == NULL)
			return "reply line marked as continued is the last";
		if (sep != '-' && eol != NULL)
			return "reply continues after its last line";
		for (size_t i = 0; i < n; i++)
			if (p[i] == '\r' || p[i] == '\n')
				return "bare CR or LF in a reply text";
		if (!first && tlen < MILTER_REPLY_TEXT_MAX)
			text[tlen++] = '\n';
		size_t room = MILTER_REPLY_TEXT_MAX - tlen;
		size_t take = n < room ? n : room;
		memcpy(text + tlen, p, take);
		tlen += take;
		text[tlen] = '\0';
		if (eol == NULL)
			return NULL;
		s = eol + 2;
	}
}

static int decode_optneg(struct reader *rd, struct milter_reply *r)
{
	if (!read_u32(rd, &r->version) || !read_u32(rd, &r->actions) ||
	    !read_u32(rd, &r->protocol))
		return -1;
	while (rd->left > 0) {
		uint32_t stage;
		if (!read_u32(rd, &stage))
			return -1;
		const char *list = read_string(rd);
		if (list == NULL)
			return -1;
		if (stage >= MILTER_MACRO_STAGES) {
			rd->err = "macro list for an unknown stage";
			return -1;
		}
		if (r->macros[stage] != NULL) {
			rd->err = "two macro lists for one stage";
			return -1;
		}
		r->macros[stage] = list;
	}
	return 0;
}

static int decode_header_change(struct reader *rd, struct milter_reply *r, bool indexed)
{
	if (indexed && !read_u32(rd, &r->index))
		return -1;
	r->name = read_string(rd);
	r->value = r->name != NULL ? read_string(rd) : NULL;
	if (r->value == NULL || !at_end(rd))
		return -1;
	if (!valid_header_name(r->name)) {
		rd->err = "bad header field name";
		return -1;
	}
	if (!valid_header_value(r->value)) {
		rd->err = "control character in a header value";
		return -1;
	}
	return 0;
}

/* An address and, for the _PAR and CHGFROM forms, optional arguments. */
static int decode_address(struct reader *rd, struct milter_reply *r, bool may_have_args)
{
	r->address = read_string(rd);
	if (r->address == NULL)
		return -1;
	if (may_have_args && rd->left > 0) {
		r->args = read_string(rd);
		if (r->args == NULL)
			return -1;
		for (const char *p = r->args; *p != '\0'; p++)
			if ((unsigned char)*p < ' ' || *p == 127) {
				rd->err = "control character in ESMTP arguments";
				return -1;
			}
	}
	if (!at_end(rd))
		return -1;
	if (!valid_address(r->address)) {
		rd->err = "bad address";
		return -1;
	}
	return 0;
}

int milter_decode_reply(const unsigned char *packet, size_t len, struct milter_reply *r,
			char *text_buf, const char **err_r)
{
	memset(r, 0, sizeof(*r));
	text_buf[0] = '\0';
	if (len == 0 || len > MILTER_PACKET_MAX) {
		*err_r = "packet length out of bounds";
		return -1;
	}
	r->kind = (char)packet[0];
	struct reader rd = { packet + 1, len - 1, NULL };
	int rc = 0;
	switch (r->kind) {
	case MILTER_REP_ACCEPT:
	case MILTER_REP_CONTINUE:
	case MILTER_REP_DISCARD:
	case MILTER_REP_REJECT:
	case MILTER_REP_TEMPFAIL:
	case MILTER_REP_SKIP:
	case MILTER_REP_PROGRESS:
	case MILTER_REP_SHUTDOWN:
	case MILTER_REP_CONN_FAIL:
		rc = at_end(&rd) ? 0 : -1;
		break;
	case MILTER_REP_OPTNEG:
		rc = decode_optneg(&rd, r);
		break;
	case MILTER_REP_REPLYCODE: {
		const char *s = read_string(&rd);
		if (s == NULL || !at_end(&rd)) {
			rc = -1;
			break;
		}
		rd.err = parse_replycode(s, r, text_buf);
		rc = rd.err != NULL ? -1 : 0;
		break;
	}
	case MILTER_REP_ADDHEADER:
		rc = decode_header_change(&rd, r, false);
		break;
	case MILTER_REP_INSHEADER:
	case MILTER_REP_CHGHEADER:
		rc = decode_header_change(&rd, r, true);
		break;
	case MILTER_REP_ADDRCPT:
	case MILTER_REP_DELRCPT:
		rc = decode_address(&rd, r, false);
		break;
	case MILTER_REP_ADDRCPT_PAR:
	case MILTER_REP_CHGFROM:
		rc = decode_address(&rd, r, true);
		break;
	case MILTER_REP_QUARANTINE:
		r->value = read_string(&rd);
		rc = r->value != NULL && at_end(&rd) ? 0 : -1;
		if (rc == 0 && !valid_header_value(r->value)) {
			rd.err = "control character in the quarantine reason";
			rc = -1;
		}
		break;
	case MILTER_REP_REPLBODY:
		r->body = rd.p;
		r->body_len = rd.left;
		break;
	default:
		rd.err = "unknown reply";
		rc = -1;
		break;
	}
	if (rc != 0)
		*err_r = rd.err != NULL ? rd.err : "malformed reply";
	return rc;
}

bool milter_reply_is_final(char c)
{
	return c == MILTER_REP_ACCEPT || c == MILTER_REP_CONTINUE || c == MILTER_REP_DISCARD ||
	       c == MILTER_REP_REJECT || c == MILTER_REP_TEMPFAIL || c == MILTER_REP_REPLYCODE ||
	       c == MILTER_REP_SKIP || c == MILTER_REP_SHUTDOWN || c == MILTER_REP_CONN_FAIL;
}

const char *milter_reply_name(char c)
{
	switch (c) {
	case MILTER_REP_ADDRCPT: return "addrcpt";
	case MILTER_REP_DELRCPT: return "delrcpt";
	case MILTER_REP_ADDRCPT_PAR: return "addrcpt_par";
	case MILTER_REP_SHUTDOWN: return "shutdown";
	case MILTER_REP_ACCEPT: return "accept";
	case MILTER_REP_REPLBODY: return "replbody";
	case MILTER_REP_CONTINUE: return "continue";
	case MILTER_REP_DISCARD: return "discard";
	case MILTER_REP_CHGFROM: return "chgfrom";
	case MILTER_REP_CONN_FAIL: return "connfail";
	case MILTER_REP_ADDHEADER: return "addheader";
	case MILTER_REP_INSHEADER: return "insheader";
	case MILTER_REP_SETSYMLIST: return "setsymlist";
	case MILTER_REP_CHGHEADER: return "chgheader";
	case MILTER_REP_PROGRESS: return "progress";
	case MILTER_REP_QUARANTINE: return "quarantine";
	case MILTER_REP_REJECT: return "reject";
	case MILTER_REP_SKIP: return "skip";
	case MILTER_REP_TEMPFAIL: return "tempfail";
	case MILTER_REP_REPLYCODE: return "replycode";
	case MILTER_REP_OPTNEG: return "optneg";
	default: return "unknown";
	}
}
