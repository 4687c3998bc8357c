/*
 * version.h - postern's version, for `postern version` and the fields
 * postern writes into messages (X-Spam-Status: ... version=postern-V).
 */
#ifndef POSTERN_VERSION_H
#define POSTERN_VERSION_H

#define POSTERN_VERSION "0.1.0"

#endif
