package logging

import (
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"

	"github.com/confiture-io/confiture-worker/internal/target"
)

// mask replaces a secret.
const mask = "xxxxx"

// anyURLPasswordRe finds the password of user information in a URL of any scheme
// (nats://u:pw@host, https://...). target.Redact covers the PostgreSQL ones and key=value
// connection strings.
var anyURLPasswordRe = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@`)

// redactAttr is every sink's ReplaceAttr. It runs for every attribute of every record, so its
// common path (an attribute with nothing to hide) does no allocation and no regexp.
//
//   - An attribute whose key holds "password", "secret" or "token" (any case) has its value
//     replaced entirely, unless it is a number, a bool, a duration or a time: such a key names
//     a secret, not a string that may contain one.
//   - Any string, error or URL value (the message included) has the password of a URL and
//     the value of a password=... pair replaced, as target.Redact does, whatever its key, so
//     an error that quotes a connection string is caught too. Keys holding "dsn" or "url" are
//     redacted the same way even when their value is some other type (it is printed first).
func redactAttr(_ []string, a slog.Attr) slog.Attr {
	v := a.Value
	switch v.Kind() {
	case slog.KindString:
		if maskedKey(a.Key) && v.String() != "" {
			return slog.String(a.Key, mask)
		}
		if s := v.String(); mayHoldSecret(s) {
			a.Value = slog.StringValue(redactString(s))
		}
	case slog.KindAny:
		if maskedKey(a.Key) {
			return slog.String(a.Key, mask)
		}
		switch x := v.Any().(type) {
		case *url.URL:
			if x != nil {
				a.Value = slog.StringValue(redactString(x.Redacted()))
			}
		case url.URL:
			a.Value = slog.StringValue(redactString(x.Redacted()))
		case error:
			if s := x.Error(); mayHoldSecret(s) {
				a.Value = slog.StringValue(redactString(s))
			}
		default:
			if connKey(a.Key) && x != nil {
				a.Value = slog.StringValue(redactString(fmt.Sprint(x)))
			}
		}
	}
	return a
}

// redactString removes the passwords of URLs and of key=value connection strings in s.
func redactString(s string) string {
	s = target.Redact(s, "")
	return anyURLPasswordRe.ReplaceAllString(s, "${1}"+mask+"@")
}

// mayHoldSecret is the cheap test before the regexps: a URL password needs "://" and "@", a
// key=value one needs "password" then "=" (a message such as "password authentication failed"
// does not).
func mayHoldSecret(s string) bool {
	if strings.Contains(s, "://") && strings.Contains(s, "@") {
		return true
	}
	for {
		i := indexFold(s, "password")
		if i < 0 {
			return false
		}
		s = s[i+len("password"):]
		if strings.HasPrefix(strings.TrimLeft(s, " \t\n\f\r"), "=") { // \s in the regexp
			return true
		}
	}
}

// maskedKey reports whether key names a secret outright.
func maskedKey(key string) bool {
	return containsFold(key, "password") || containsFold(key, "secret") || containsFold(key, "token")
}

// connKey reports whether key names a connection string or address.
func connKey(key string) bool {
	return containsFold(key, "dsn") || containsFold(key, "url")
}

// containsFold reports whether s contains the lower-case ASCII word sub, in any case, without
// allocating.
func containsFold(s, sub string) bool { return indexFold(s, sub) >= 0 }

// indexFold is the index of the first instance of the lower-case ASCII word sub in s, in any
// case, or -1.
func indexFold(s, sub string) int {
	n := len(sub)
outer:
	for i := 0; i+n <= len(s); i++ {
		for j := 0; j < n; j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				continue outer
			}
		}
		return i
	}
	return -1
}
