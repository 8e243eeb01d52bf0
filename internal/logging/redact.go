package logging

import (
	"fmt"
	"log/slog"
	"net/url"

	"github.com/confiture-io/confiture-worker/internal/redact"
)

// redactAttr is every sink's ReplaceAttr. It runs for every attribute of every record, so its
// common path (an attribute with nothing to hide) does no allocation and no regexp.
//
//   - An attribute whose key holds "password", "secret" or "token" (any case) has its value
//     replaced entirely, unless it is a number, a bool, a duration or a time: such a key names
//     a secret, not a string that may contain one.
//   - Any string, error or URL value (the message included) has the password of a URL and
//     the value of a password=... pair replaced, as package redact does, whatever its key, so
//     an error that quotes a connection string is caught too. Keys holding "dsn" or "url" are
//     redacted the same way even when their value is some other type (it is printed first).
func redactAttr(_ []string, a slog.Attr) slog.Attr {
	v := a.Value
	switch v.Kind() {
	case slog.KindString:
		if maskedKey(a.Key) && v.String() != "" {
			return slog.String(a.Key, redact.Mask)
		}
		if r := redact.String(v.String()); r != v.String() {
			a.Value = slog.StringValue(r)
		}
	case slog.KindAny:
		if maskedKey(a.Key) {
			return slog.String(a.Key, redact.Mask)
		}
		switch x := v.Any().(type) {
		case *url.URL:
			if x != nil {
				a.Value = slog.StringValue(redact.String(x.Redacted()))
			}
		case url.URL:
			a.Value = slog.StringValue(redact.String(x.Redacted()))
		case error:
			s := x.Error()
			if r := redact.String(s); r != s {
				a.Value = slog.StringValue(r)
			}
		default:
			if connKey(a.Key) && x != nil {
				a.Value = slog.StringValue(redact.String(fmt.Sprint(x)))
			}
		}
	}
	return a
}

// maskedKey reports whether key names a secret outright.
func maskedKey(key string) bool {
	return redact.ContainsFold(key, "password") || redact.ContainsFold(key, "secret") || redact.ContainsFold(key, "token")
}

// connKey reports whether key names a connection string or address.
func connKey(key string) bool {
	return redact.ContainsFold(key, "dsn") || redact.ContainsFold(key, "url")
}
