/*
 * milter_proto.h - the Sendmail mail filter ("milter") protocol, version
 * 6, as the MTA speaks it: packet framing, an encoder for every command
 * the MTA sends and a decoder for every reply a filter may send.
 *
 * A packet is a 32-bit length in network byte order, then that many
 * bytes: one command or reply letter and its data. Strings in the data
 * end with a NUL byte; numbers are 32-bit (16-bit for a port) in network
 * byte order.
 *
 * Untrusted input: everything a filter sends. The decoder trusts no
 * length and no field: a packet longer than MILTER_PACKET_MAX or empty
 * is refused before it is buffered, every string must end inside the
 * packet, every reply must have exactly the fields of its kind, header
 * names must be printable words and reply codes 4xx or 5xx. Pure code,
 * no I/O; runs in the unprivileged smtp worker.
 */
#ifndef POSTERN_MILTER_PROTO_H
#define POSTERN_MILTER_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../lib/buf.h"

#define MILTER_VERSION 6
/* The oldest version whose replies we understand. */
#define MILTER_VERSION_MIN 2
/* The largest packet we take from a filter (a body replacement chunk may
 * be up to 1 MB after the MDS_1M negotiation; we offer no more). */
#define MILTER_PACKET_MAX (1024 * 1024 + 64)
/* The most content bytes in one body packet we send. */
#define MILTER_CHUNK_MAX 65535
/* The longest string field we accept from a filter (a header value, a
 * reply text, a macro list). */
#define MILTER_FIELD_MAX 65535

/* Commands (MTA to filter). */
enum milter_command {
	MILTER_CMD_ABORT = 'A',
	MILTER_CMD_BODY = 'B',
	MILTER_CMD_CONNECT = 'C',
	MILTER_CMD_MACRO = 'D',
	MILTER_CMD_BODYEOB = 'E',
	MILTER_CMD_HELO = 'H',
	MILTER_CMD_QUIT_NC = 'K',
	MILTER_CMD_HEADER = 'L',
	MILTER_CMD_MAIL = 'M',
	MILTER_CMD_EOH = 'N',
	MILTER_CMD_OPTNEG = 'O',
	MILTER_CMD_QUIT = 'Q',
	MILTER_CMD_RCPT = 'R',
	MILTER_CMD_DATA = 'T',
	MILTER_CMD_UNKNOWN = 'U',
};

/* Replies (filter to MTA). */
enum milter_reply_kind {
	MILTER_REP_ADDRCPT = '+',
	MILTER_REP_DELRCPT = '-',
	MILTER_REP_ADDRCPT_PAR = '2',
	MILTER_REP_SHUTDOWN = '4',
	MILTER_REP_ACCEPT = 'a',
	MILTER_REP_REPLBODY = 'b',
	MILTER_REP_CONTINUE = 'c',
	MILTER_REP_DISCARD = 'd',
	MILTER_REP_CHGFROM = 'e',
	MILTER_REP_CONN_FAIL = 'f',
	MILTER_REP_ADDHEADER = 'h',
	MILTER_REP_INSHEADER = 'i',
	MILTER_REP_SETSYMLIST = 'l',
	MILTER_REP_CHGHEADER = 'm',
	MILTER_REP_PROGRESS = 'p',
	MILTER_REP_QUARANTINE = 'q',
	MILTER_REP_REJECT = 'r',
	MILTER_REP_SKIP = 's',
	MILTER_REP_TEMPFAIL = 't',
	MILTER_REP_REPLYCODE = 'y',
	MILTER_REP_OPTNEG = 'O',
};

/* Actions a filter may take (the negotiation's second number). */
#define MILTER_ACT_ADDHDRS 0x001u
#define MILTER_ACT_CHGBODY 0x002u
#define MILTER_ACT_ADDRCPT 0x004u
#define MILTER_ACT_DELRCPT 0x008u
#define MILTER_ACT_CHGHDRS 0x010u
#define MILTER_ACT_QUARANTINE 0x020u
#define MILTER_ACT_CHGFROM 0x040u
#define MILTER_ACT_ADDRCPT_PAR 0x080u
#define MILTER_ACT_SETSYMLIST 0x100u
#define MILTER_ACT_ALL 0x1ffu

/* Protocol steps a filter may leave out or not answer (the third). */
#define MILTER_P_NOCONNECT 0x000001u
#define MILTER_P_NOHELO 0x000002u
#define MILTER_P_NOMAIL 0x000004u
#define MILTER_P_NORCPT 0x000008u
#define MILTER_P_NOBODY 0x000010u
#define MILTER_P_NOHDRS 0x000020u
#define MILTER_P_NOEOH 0x000040u
#define MILTER_P_NR_HDR 0x000080u
#define MILTER_P_NOUNKNOWN 0x000100u
#define MILTER_P_NODATA 0x000200u
#define MILTER_P_SKIP 0x000400u
#define MILTER_P_RCPT_REJ 0x000800u
#define MILTER_P_NR_CONN 0x001000u
#define MILTER_P_NR_HELO 0x002000u
#define MILTER_P_NR_MAIL 0x004000u
#define MILTER_P_NR_RCPT 0x008000u
#define MILTER_P_NR_DATA 0x010000u
#define MILTER_P_NR_UNKN 0x020000u
#define MILTER_P_NR_EOH 0x040000u
#define MILTER_P_NR_BODY 0x080000u
#define MILTER_P_HDR_LEADSPC 0x100000u
#define MILTER_P_ALL 0x1fffffu

/* The stages a filter may name in a macro list (SETSYMLIST). */
enum milter_macro_stage {
	MILTER_MACROS_CONNECT,
	MILTER_MACROS_HELO,
	MILTER_MACROS_MAIL,
	MILTER_MACROS_RCPT,
	MILTER_MACROS_DATA,
	MILTER_MACROS_EOM,
	MILTER_MACROS_EOH,
	MILTER_MACRO_STAGES
};

/* ---- framing ------------------------------------------------------------------ */

/*
 * Look at the start of received bytes: 0 when a whole packet is there,
 * 1 when more bytes are needed, -1 when the length is 0 or over
 * MILTER_PACKET_MAX (the filter is broken: give up on it). Once the four
 * length bytes are there, *packet_len_r is the packet's length (letter
 * and data, not counting the length field).
 */
int milter_frame(const void *data, size_t len, uint32_t *packet_len_r);

/* ---- encoding (MTA to filter) ---------------------------------------------- */

/* One packet: letter cmd and len bytes of data. */
void milter_put_packet(buf_t *out, char cmd, const void *data, size_t len);
/* Option negotiation: version, the actions and protocol steps offered. */
void milter_encode_optneg(buf_t *out, uint32_t version, uint32_t actions, uint32_t protocol);
/* Macros for the command cmd: count name/value pairs (names given without
 * or with braces, as they are to be sent). */
void milter_encode_macros(buf_t *out, char cmd, const char *const *names,
			  const char *const *values, size_t count);
/* Connection: the client's host name, and its address family
 * ('4', '6', 'L' or 'U'), port and address text (ignored for 'U'). */
void milter_encode_connect(buf_t *out, const char *hostname, char family, uint16_t port,
			   const char *address);
/* HELO/EHLO argument. */
void milter_encode_helo(buf_t *out, const char *helo);
/* MAIL or RCPT (cmd): "<address>", then each ESMTP parameter. */
void milter_encode_envelope(buf_t *out, char cmd, const char *path, const char *const *params,
			    size_t param_count);
/* One header field: name and value (value as it follows the colon). */
void milter_encode_header(buf_t *out, const char *name, const char *value);
/* A body chunk (len at most MILTER_CHUNK_MAX). */
void milter_encode_body(buf_t *out, const void *data, size_t len);
/* An unknown SMTP command line. */
void milter_encode_unknown(buf_t *out, const char *line);
/* Commands without data: ABORT, EOH, end of body, QUIT, DATA. */
void milter_encode_simple(buf_t *out, char cmd);

/* ---- decoding (filter to MTA) ---------------------------------------------- */

/* A decoded reply; pointers are into the packet (valid while it is). */
struct milter_reply {
	char kind;                  /* enum milter_reply_kind */
	/* OPTNEG */
	uint32_t version, actions, protocol;
	/* OPTNEG's macro lists: a space-separated list per stage, or NULL */
	const char *macros[MILTER_MACRO_STAGES];
	/* REPLYCODE: the code, its enhanced status ("" if none), and the text
	 * of every line joined with '\n' (written to text_buf) */
	int code;
	char status[12];
	/* INSHEADER, CHGHEADER */
	uint32_t index;
	/* ADDHEADER, INSHEADER, CHGHEADER: name; value ("" = remove for CHGHEADER) */
	const char *name;
	const char *value;
	/* ADDRCPT, ADDRCPT_PAR, DELRCPT, CHGFROM: the address (as sent, maybe
	 * with <>); args: the ESMTP arguments or NULL; QUARANTINE: the reason
	 * in value */
	const char *address;
	const char *args;
	/* REPLBODY */
	const unsigned char *body;
	size_t body_len;
};

/* The longest reply text we keep (joined lines). */
#define MILTER_REPLY_TEXT_MAX 512

/*
 * Decode one packet (letter and data, as milter_frame measured it) into
 * *r. text_buf (MILTER_REPLY_TEXT_MAX + 1 bytes) receives REPLYCODE's text.
 * Returns 0, or -1 with *err_r set to a static text naming what is wrong.
 */
int milter_decode_reply(const unsigned char *packet, size_t len, struct milter_reply *r,
			char *text_buf, const char **err_r);

/* Is c a reply letter that ends the filter's answer to a command
 * (accept, continue, discard, reject, tempfail, replycode, skip,
 * shutdown, connection failure)? */
bool milter_reply_is_final(char c);
/* A name for the log: "continue", "reject", ... */
const char *milter_reply_name(char c);

#endif
