#!/bin/sh
# demo-setup.sh - what "make run" needs besides the build: the unprivileged
# system user the workers run as (when started as root) and a self-signed
# certificate for STARTTLS in var/tls/.
set -eu
if [ "$(id -u)" = 0 ] && ! getent passwd postern >/dev/null; then
	useradd --system --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin postern
	echo "demo-setup: created system user postern"
fi
if [ ! -f var/tls/demo.crt ]; then
	mkdir -p var/tls
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=mx.example.test" \
		-keyout var/tls/demo.key -out var/tls/demo.crt 2>/dev/null
	chmod 600 var/tls/demo.key
	echo "demo-setup: created self-signed certificate var/tls/demo.crt"
fi
