#!/bin/sh
# demo-setup.sh - what "make run" needs besides the build: the system users
# the roles run as when started as root (postern for the SMTP workers and
# the queue manager, vmail for local delivery, as Dovecot names it), the
# users file readable by root only (it holds password hashes), and a
# self-signed certificate for STARTTLS in var/tls/.
set -eu
if [ "$(id -u)" = 0 ]; then
	for account in postern vmail; do
		if ! getent passwd "$account" >/dev/null; then
			useradd --system --no-create-home --home-dir /nonexistent \
				--shell /usr/sbin/nologin "$account"
			echo "demo-setup: created system user $account"
		fi
	done
	# Maildirs written by an older demo (delivery ran as postern then).
	if [ -d var/mail ] && [ "$(stat -c %U var/mail)" != vmail ]; then
		chown -R vmail: var/mail
		echo "demo-setup: gave var/mail to vmail, the new mail_owner"
	fi
fi
chmod 600 etc/users
if [ ! -f var/tls/demo.crt ]; then
	mkdir -p var/tls
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=mx.example.test" \
		-keyout var/tls/demo.key -out var/tls/demo.crt 2>/dev/null
	chmod 600 var/tls/demo.key
	echo "demo-setup: created self-signed certificate var/tls/demo.crt"
fi
