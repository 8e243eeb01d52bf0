#!/bin/sh
# Example Confiture plugin, dependency-free (POSIX sh and sed).
# Protocol: one confiture.plugin-request/v1 JSON line on stdin; one confiture.plugin-result/v1
# JSON object on stdout; anything for humans goes to stderr, which the worker logs.
set -eu

request=$(cat)

# field NAME: the value of a top-level string field, still JSON-escaped (so that it can be put
# back into JSON as it is). The worker writes the request compactly, on one line.
field() {
	printf '%s\n' "$request" | sed -n "s/.*\"$1\":\"\\([^\"\\\\]*\\(\\\\.[^\"\\\\]*\\)*\\)\".*/\\1/p"
}

schema=$(field schema)
if [ "$schema" != "confiture.plugin-request/v1" ]; then
	printf "notify: unsupported request schema '%s'\n" "$schema" >&2
	exit 2
fi

migration=$(field migration)
phase=$(field phase)
key=$(field idempotency_key)
message=$(field message) # the only string parameter, params.message

# Real plugins do their work here, using the target's connection string from
# $CONFITURE_TARGET_DSN (never from arguments), and record $key with it so that a retry of
# the phase does not repeat work that already committed.
printf 'notify: %s (migration %s, phase %s, key %s)\n' "$message" "$migration" "$phase" "$key" >&2

printf '{"schema":"confiture.plugin-result/v1","success":true,"rows_affected":0,"stats":{"notify.messages":1},"message":"%s (%s, %s)"}\n' \
	"$message" "$migration" "$phase"
