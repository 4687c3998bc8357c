/*
 * keyholder_proto.c - encoding and decoding of the key holder's messages
 * (the protocol is specified in keyholder_proto.h) and the key id.
 *
 * RFCs: none. Untrusted input: every packet received, in both
 * directions; the decoder reads fixed fields through the bounded wire
 * reader and never past the packet. Privilege: unprivileged TLS workers
 * and key holder.
 */
#include "keyholder_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/objects.h>
#include <openssl/x509.h>

#include "../lib/log.h"
#include "../lib/safeio.h"
#include "../lib/wire.h"

#define KEYHOLDER_DIR "private"

void keyholder_msg_encode(const struct keyholder_msg *m, buf_t *out)
{
	struct wire_writer w = { out, out->len + KEYHOLDER_MSG_MAX, "keyholder_msg_encode" };
	if (m->len > KEYHOLDER_DATA_MAX)
		log_panic("keyholder_msg_encode: %zu bytes of data", m->len);
	wire_put_u8(&w, (uint8_t)m->type);
	wire_put_u32(&w, m->seq);
	switch (m->type) {
	case KEYHOLDER_SIGN:
		if (m->len == 0)
			log_panic("keyholder_msg_encode: nothing to sign");
		wire_put_bytes(&w, m->key_id, KEYHOLDER_ID_LEN);
		wire_put_u8(&w, (uint8_t)m->op);
		break;
	case KEYHOLDER_SIGNED:
		if (m->status != KEYHOLDER_OK && m->len != 0)
			log_panic("keyholder_msg_encode: data with a failure");
		wire_put_u8(&w, (uint8_t)m->status);
		break;
	default:
		log_panic("keyholder_msg_encode: type %d", (int)m->type);
	}
	wire_put_u16(&w, (uint16_t)m->len);
	wire_put_bytes(&w, m->data, m->len);
}

static bool op_known(unsigned op)
{
	return op == KEYHOLDER_OP_RSA_RAW || op == KEYHOLDER_OP_RSA_PKCS1 ||
	       op == KEYHOLDER_OP_ECDSA;
}

static bool status_known(unsigned status)
{
	return status == KEYHOLDER_OK || status == KEYHOLDER_UNKNOWN_KEY ||
	       status == KEYHOLDER_FAILED;
}

int keyholder_msg_decode(const void *data, size_t len, struct keyholder_msg *m,
			 const char **err_r)
{
	struct wire_reader r = wire_reader_init(data, len);
	const unsigned char *p;

	memset(m, 0, offsetof(struct keyholder_msg, data));
	if (len > KEYHOLDER_MSG_MAX) {
		*err_r = "message too long";
		return -1;
	}
	unsigned type = wire_get_u8(&r);
	m->seq = wire_get_u32(&r);
	if (type == KEYHOLDER_SIGN) {
		if (wire_take(&r, KEYHOLDER_ID_LEN, &p))
			memcpy(m->key_id, p, KEYHOLDER_ID_LEN);
		unsigned op = wire_get_u8(&r);
		if (r.err == NULL && !op_known(op))
			wire_fail(&r, "unknown operation");
		m->op = (enum keyholder_op)op;
	} else if (type == KEYHOLDER_SIGNED) {
		unsigned status = wire_get_u8(&r);
		if (r.err == NULL && !status_known(status))
			wire_fail(&r, "unknown status");
		m->status = (enum keyholder_status)status;
	} else {
		wire_fail(&r, "unknown message type");
	}
	m->type = (enum keyholder_msg_type)type;
	size_t n = wire_get_u16(&r);
	if (r.err == NULL && n > KEYHOLDER_DATA_MAX)
		wire_fail(&r, "data too long");
	if (r.err == NULL && type == KEYHOLDER_SIGN && n == 0)
		wire_fail(&r, "nothing to sign");
	if (r.err == NULL && type == KEYHOLDER_SIGNED && m->status != KEYHOLDER_OK && n != 0)
		wire_fail(&r, "data with a failure");
	if (r.err == NULL && wire_take(&r, n, &p)) {
		memcpy(m->data, p, n);
		m->len = n;
	}
	if (r.err == NULL && wire_left(&r) != 0)
		wire_fail(&r, "bytes left over");
	if (r.err != NULL) {
		*err_r = r.err;
		return -1;
	}
	return 0;
}

int keyholder_key_id(const EVP_PKEY *pkey, unsigned char id_r[KEYHOLDER_ID_LEN])
{
	unsigned char *der = NULL;
	int n = i2d_PUBKEY(pkey, &der);
	if (n <= 0)
		return -1;
	unsigned int out_len = 0;
	int ok = EVP_Digest(der, (size_t)n, id_r, &out_len, EVP_sha256(), NULL);
	OPENSSL_free(der);
	return ok == 1 && out_len == KEYHOLDER_ID_LEN ? 0 : -1;
}

const char *keyholder_key_type_name(int type)
{
	const char *name = type != EVP_PKEY_NONE ? OBJ_nid2sn(type) : NULL;
	return name != NULL ? name : "none";
}

char *keyholder_socket_dir(const char *spool_dir)
{
	return safeio_path_join(spool_dir, KEYHOLDER_DIR);
}

char *keyholder_socket_path(const char *dir, const unsigned char id[KEYHOLDER_ID_LEN])
{
	char name[sizeof("keyholder-.sock") + 2 * KEYHOLDER_NAME_ID_BYTES];
	int n = snprintf(name, sizeof(name), "keyholder-");
	for (size_t i = 0; i < KEYHOLDER_NAME_ID_BYTES; i++)
		n += snprintf(name + n, sizeof(name) - (size_t)n, "%02x", id[i]);
	snprintf(name + n, sizeof(name) - (size_t)n, ".sock");
	return safeio_path_join(dir, name);
}
